"""A labeled real dataset in memory: one modality, one classification task."""
import dataclasses
from typing import Optional

import numpy as np

from fedxr_jax.errors import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  name: str               # source name, e.g. 'hapt'
  task: str               # the one task, e.g. 'hapt_activity'
  modality: str           # the one modality, e.g. 'motion'
  x: np.ndarray           # [E, *shape] float32
  y: np.ndarray           # [E] int32 in [0, num_classes)
  class_names: tuple
  token_shape: tuple      # block cut into one model token
  users: Optional[np.ndarray] = None   # [E] natural client of each example
  # [E] examples that must land on the same side of a train/test holdout
  # (overlapping windows of one activity bout); None: every example alone.
  groups: Optional[np.ndarray] = None

  def __post_init__(self):
    e = len(self.x)
    if self.x.dtype != np.float32 or self.y.shape != (e,):
      raise DataError(f'{self.name}: need x float32 [E, ...] and y [E], got '
                      f'{self.x.dtype} {self.x.shape} and {self.y.shape}')
    if e and not 0 <= self.y.min() <= self.y.max() < self.num_classes:
      raise DataError(f'{self.name}: labels outside [0, {self.num_classes})')
    for field in ('users', 'groups'):
      value = getattr(self, field)
      if value is not None and value.shape != (e,):
        raise DataError(f'{self.name}: {field} has shape {value.shape}, want ({e},)')
    if len(self.token_shape) != self.x.ndim - 1 or any(
        s % t for s, t in zip(self.shape, self.token_shape)):
      raise DataError(f'{self.name}: token shape {self.token_shape} does not tile '
                      f'the input shape {self.shape}')

  @property
  def shape(self) -> tuple:
    return tuple(self.x.shape[1:])

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.x)
