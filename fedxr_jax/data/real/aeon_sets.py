"""Three multi-class time-series sets bundled with aeon, read from its wheel.

TRAIN and TEST files are pooled: the federation holds out each client's own
test examples (`federated.py`). Series are resampled to a fixed length
(`ts_format.to_fixed_length`), then every channel is standardized with one
mean and scale over the whole set (a fixed affine map that keeps the
between-series differences in level; gyro channels reach +-20 raw).
"""
import dataclasses
from typing import Optional

import numpy as np

from fedxr_jax.data.real import archives
from fedxr_jax.data.real import dataset as dataset_lib
from fedxr_jax.data.real import ts_format
from fedxr_jax.errors import DataError

ARCHIVE = archives.ARCHIVES['aeon']


@dataclasses.dataclass(frozen=True)
class AeonSet:
  problem: str        # file stem under aeon/datasets/data/
  task: str
  modality: str
  length: int         # fixed series length after resampling
  token_shape: tuple


SETS = {
    # Smart-watch IMU (acc xyz, gyro xyz) at 10 Hz for 10 s; 4 activities.
    'basic_motions': AeonSet('BasicMotions', 'basic_motions', 'motion', 100, (10, 6)),
    # Wiimote z-acceleration of a pick-up gesture; the class is the subject (10).
    'pickup_gesture': AeonSet('PickupGestureWiimoteZ', 'pickup_user', 'motion',
                              64, (8, 1)),
    # 12 LPC cepstrum coefficients of the vowel /ae/; the class is the speaker (9).
    'japanese_vowels': AeonSet('JapaneseVowels', 'vowel_speaker', 'audio',
                               32, (8, 12)),
}


def member(problem: str, split: str) -> str:
  return f'aeon/datasets/data/{problem}/{problem}_{split}.ts'


def from_text(name: str, texts) -> dataset_lib.Dataset:
  """A Dataset from the .ts texts of one set (TRAIN, TEST, ... pooled)."""
  spec = SETS[name]
  parsed = [ts_format.parse(t) for t in texts]
  classes = parsed[0].class_names
  if any(p.class_names != classes for p in parsed):
    raise DataError(f'{spec.problem}: files disagree on the class labels')
  x = ts_format.to_fixed_length([s for p in parsed for s in p.series], spec.length)
  mean = x.mean(axis=(0, 1), keepdims=True)
  scale = x.std(axis=(0, 1), keepdims=True) + 1e-6
  return dataset_lib.Dataset(
      name=name, task=spec.task, modality=spec.modality,
      x=((x - mean) / scale).astype(np.float32),
      y=np.concatenate([p.labels for p in parsed]).astype(np.int32),
      class_names=classes, token_shape=spec.token_shape)


def load(name: str, archive: Optional[str] = None, download: bool = True) -> dataset_lib.Dataset:
  path = archives.fetch(ARCHIVE, path=archive, download=download)
  problem = SETS[name].problem
  return from_text(name, [archives.read_member(path, member(problem, split)).decode(
                              'utf-8', errors='replace')
                          for split in ('TRAIN', 'TEST')])
