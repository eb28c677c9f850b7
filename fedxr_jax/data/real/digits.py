"""sklearn's handwritten digits (UCI optdigits test set): 1797 8x8 images.

Read from `sklearn/datasets/data/digits.csv.gz` inside the pinned
scikit-learn wheel; scikit-learn itself is never installed. A row is 64
pixel counts in 0..16 then the digit. There are no writer ids: clients come
from a Dirichlet label partition.
"""
import gzip
import zlib
from typing import Optional

import numpy as np

from fedxr_jax.data.real import archives
from fedxr_jax.data.real import dataset as dataset_lib
from fedxr_jax.errors import DataError

ARCHIVE = archives.ARCHIVES['scikit-learn']
MEMBER = 'sklearn/datasets/data/digits.csv.gz'
TOKEN_SHAPE = (4, 4, 1)   # 4 patch tokens per image


def from_csv(text: str) -> dataset_lib.Dataset:
  try:
    rows = np.loadtxt(text.splitlines(), delimiter=',', ndmin=2)
  except ValueError as e:
    raise DataError(f'digits.csv is corrupt: {e}') from e
  if rows.shape[1] != 65 or rows[:, :64].min() < 0 or rows[:, :64].max() > 16:
    raise DataError(f'digits.csv rows are not 64 pixels in 0..16 + a label: {rows.shape}')
  return dataset_lib.Dataset(
      name='digits', task='digits', modality='vision',
      x=(rows[:, :64] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32),
      y=rows[:, 64].astype(np.int32), class_names=tuple(str(d) for d in range(10)),
      token_shape=TOKEN_SHAPE)


def load(archive: Optional[str] = None, download: bool = True) -> dataset_lib.Dataset:
  path = archives.fetch(ARCHIVE, path=archive, download=download)
  try:
    text = gzip.decompress(archives.read_member(path, MEMBER)).decode()
  except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
    raise DataError(f'{MEMBER} in {path} is corrupt: {e}') from e
  return from_csv(text)
