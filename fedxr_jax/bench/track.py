"""A benchmark track: what every entry must share, and what it may choose.

A track freezes part of the run config (dotted key -> value: the scenario,
the model, the budget) and opens another part (dotted key -> limits: the
method's own knobs). An entry runs every seed of the track. The registry
(`fedxr_jax.bench.tracks`) lists them; `index` turns any list of tracks into
the {(id, version): Track} mapping the validator and the leaderboard take.
"""
import dataclasses
import math
import re
from typing import Any, Iterable, Mapping, Optional, Union

from fedxr_jax.bench import canonical
from fedxr_jax.bench.errors import SubmissionError, TrackError

ID_PATTERN = re.compile(r'^[a-z0-9][a-z0-9_-]{0,63}$')
KEY_PATTERN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$')
METRIC_PATTERN = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_./:-]{0,127}$')
PLATFORMS = ('cpu', 'gpu', 'tpu')   # `requires` entries the hardware record can check


def _brief(value) -> str:
  text = repr(value)
  return text if len(text) <= 80 else text[:80] + '...'


@dataclasses.dataclass(frozen=True)
class OneOf:
  """The value must equal one of `values` (as JSON: a tuple equals a list)."""
  values: tuple

  def problem(self, value) -> Optional[str]:
    if any(canonical.equal(value, v) for v in self.values):
      return None
    return f'is {_brief(value)}, not one of {self.describe()}'

  def describe(self) -> str:
    return '{' + ', '.join(repr(v) for v in self.values) + '}'


@dataclasses.dataclass(frozen=True)
class Between:
  """A number in [low, high]; an integer there with `integer`."""
  low: float
  high: float
  integer: bool = False

  def problem(self, value) -> Optional[str]:
    kind = int if self.integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
      return f'is {_brief(value)}, not {"an integer" if self.integer else "a number"}'
    # isfinite only on floats: a 400-digit int would overflow converting to float.
    if (isinstance(value, float) and not math.isfinite(value)) or not (
        self.low <= value <= self.high):
      return f'is {_brief(value)}, outside {self.describe()}'
    return None

  def describe(self) -> str:
    return f'{"integer " if self.integer else ""}[{self.low!r}, {self.high!r}]'


Limit = Union[OneOf, Between]


@dataclasses.dataclass(frozen=True, eq=False)
class Track:
  id: str
  version: int
  description: str
  frozen: Mapping[str, Any]        # dotted config key -> the value every entry runs
  open: Mapping[str, Limit]        # dotted config key -> what an entry may set it to
  seeds: tuple
  primary_metric: str              # the ranking metric (a final-metrics key)
  higher_is_better: bool = True
  cost_metrics: tuple = ()         # shown beside the primary one; lower is better
  requires: tuple = ()             # e.g. ('gpu',): the platforms an entry may run on

  def __post_init__(self):
    for field in ('seeds', 'cost_metrics', 'requires'):   # lists work too
      object.__setattr__(self, field, tuple(getattr(self, field)))
    for field in ('frozen', 'open'):
      object.__setattr__(self, field, dict(getattr(self, field)))
    name = f'track {self.id!r}'
    if not isinstance(self.id, str) or not ID_PATTERN.match(self.id):
      raise TrackError(f'{name}: an id is 1-64 of a-z 0-9 _ - (starting alphanumeric)')
    if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
      raise TrackError(f'{name}: version must be an integer >= 1, got {self.version!r}')
    if (not self.seeds or len(set(self.seeds)) != len(self.seeds) or
        any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds)):
      raise TrackError(f'{name}: seeds must be distinct integers >= 0, got {self.seeds!r}')
    for key in list(self.frozen) + list(self.open):
      if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise TrackError(f'{name}: {key!r} is not a dotted config key')
    both = sorted(set(self.frozen) & set(self.open))
    if both:
      raise TrackError(f'{name}: {both} are both frozen and open')
    for key, limit in self.open.items():
      if not isinstance(limit, (OneOf, Between)):
        raise TrackError(f'{name}: open key {key!r} needs OneOf(...) or Between(...), '
                         f'got {type(limit).__name__}')
    for metric in (self.primary_metric,) + tuple(self.cost_metrics):
      if not isinstance(metric, str) or not METRIC_PATTERN.match(metric):
        raise TrackError(f'{name}: {metric!r} is not a metric name')
    if self.primary_metric in self.cost_metrics:
      raise TrackError(f'{name}: the primary metric is also a cost metric')
    try:
      canonical.canonical(self.frozen_json)
    except SubmissionError as e:
      raise TrackError(f'{name}: frozen values must be JSON: {e}') from None

  @property
  def key(self) -> tuple:
    return (self.id, self.version)

  @property
  def name(self) -> str:
    return f'{self.id} v{self.version}'

  @property
  def frozen_json(self) -> dict:
    return canonical.to_json(dict(self.frozen), 'frozen')

  @property
  def frozen_sha256(self) -> str:
    return canonical.sha256(self.frozen_json)

  def check_override(self, key: str, value) -> None:
    """Raises TrackError (one line) unless `key=value` is allowed by the open part."""
    if key in self.frozen:
      if canonical.equal(value, self.frozen_json[key]):
        return
      raise TrackError(f'{self.name}: {key} is frozen at {_brief(self.frozen[key])}; '
                       f'{_brief(value)} would leave the track')
    if key not in self.open:
      raise TrackError(f'{self.name}: {key} is not an open key (open: '
                       f'{", ".join(sorted(self.open)) or "none"})')
    problem = self.open[key].problem(value)
    if problem:
      raise TrackError(f'{self.name}: {key} {problem}')

  def check_overrides(self, overrides: Mapping[str, Any]) -> None:
    for key in sorted(overrides):
      self.check_override(key, overrides[key])

  def check_platform(self, platform: str) -> None:
    wanted = [r for r in self.requires if r in PLATFORMS]
    if wanted and platform not in wanted:
      raise TrackError(f'{self.name} requires {" or ".join(wanted)}; this ran on {platform}')


def index(tracks: Union[Iterable[Track], Mapping[Any, Track]]) -> dict:
  """{(id, version): Track} of a list (or a mapping's values); no duplicates."""
  values = tracks.values() if isinstance(tracks, Mapping) else tracks
  out = {}
  for t in values:
    if not isinstance(t, Track):
      raise TrackError(f'the track registry holds a {type(t).__name__}, not a Track')
    if t.key in out:
      raise TrackError(f'track {t.name} is registered twice')
    out[t.key] = t
  return out
