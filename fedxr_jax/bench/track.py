"""A benchmark track: what every entry must share, and what it may choose.

A track freezes part of the run config (dotted key -> value: the scenario,
the data, the evaluation) and opens another part (dotted key -> limits: the
method's own knobs, the PEFT architecture). From version 2 on a track also
freezes a per-device `Budget` the open architecture must fit, runs >= 3
seeds, and says its tier (cpu: sized for 2 cores; gpu: refused in one line
off an accelerator) and status:
  published    its frozen part is pinned (tests/test_tracks.py);
  provisional  defined on today's configs until its final definition lands:
               it may change without a version bump, and the site says so;
  archived     validates and ranks from a frozen snapshot, takes no new runs.
The registry (`fedxr_jax.bench.tracks`) lists them; `index` turns any list
of tracks into the {(id, version): Track} mapping the validator and the
leaderboard take.
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
ACCELERATORS = ('gpu', 'tpu')
STATUSES = ('published', 'provisional', 'archived')
SIZINGS = ('window', 'stretch')
TIERS = ('cpu', 'gpu')
# OGB and FedScale rank over 10 and 5 seeds; from version 2 on a track runs at least 3.
MIN_SEEDS_FROM_V2 = 3


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


def limit_to_json(limit: Limit) -> dict:
  if isinstance(limit, OneOf):
    return {'one_of': canonical.to_json(list(limit.values), 'one_of')}
  return {'between': [limit.low, limit.high], 'integer': limit.integer}


def limit_from_json(data: Mapping) -> Limit:
  """A limit from `limit_to_json`'s form (lists inside one_of come back as tuples)."""
  tup = lambda v: tuple(tup(x) for x in v) if isinstance(v, list) else v
  if set(data) == {'one_of'}:
    return OneOf(tuple(tup(v) for v in data['one_of']))
  if set(data) == {'between', 'integer'}:
    low, high = data['between']
    return Between(low, high, bool(data['integer']))
  raise TrackError(f'not a limit: {sorted(data)}')


@dataclasses.dataclass(frozen=True)
class Budget:
  """What one device may spend; an entry's open architecture must fit it.

  Numbers of the run itself (the submission's `model_facts` and curves, both
  re-computed by `fedxr-bench verify`): parameters a client trains (shared
  and personal trees), float32 bytes it uploads a round before compression
  (its shared trees), the model's forward FLOPs per example, and the slowest
  device's local-training seconds a round on the cost model's clock
  (`cost/max_compute_s`), which bounds local steps.
  """
  trainable_params: int
  upload_bytes: int
  flops_per_example: float
  compute_s: float

  def to_json(self) -> dict:
    return canonical.to_json(dataclasses.asdict(self), 'budget')

  def problems(self, facts: Mapping, max_compute_s: Optional[float]) -> list:
    """One line per budget the run exceeds (facts: a submission's model_facts)."""
    out = []
    for field, value, unit in (
        ('trainable_params', facts['params_trainable'], 'trainable parameters'),
        ('upload_bytes', facts['upload_bytes_per_round'], 'upload bytes a round'),
        ('flops_per_example', facts['flops_per_example'], 'FLOPs per example')):
      if value > getattr(self, field):
        out.append(f'{value:.6g} {unit} over the budget of {getattr(self, field):.6g}')
    if max_compute_s is not None and max_compute_s > self.compute_s:
      out.append(f'{max_compute_s:.6g} s of local compute in a round over the budget of '
                 f'{self.compute_s:.6g} s (less local work fits: fewer steps, or less work per step)')
    return out


def frozen_hash(frozen: Mapping, budget: Optional[Mapping]) -> str:
  """Over the frozen config part, and the budget where the track has one (a
  track without one keeps version 1's hash: over `frozen` alone)."""
  if budget is None:
    return canonical.sha256(frozen)
  return canonical.sha256({'config': frozen, 'budget': budget})


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
  status: str = 'published'        # published | provisional | archived (see the module doc)
  tier: str = 'cpu'                # cpu | gpu (gpu: requires an accelerator)
  budget: Optional[Budget] = None  # per device; part of the frozen hash
  target: Optional[float] = None   # the primary metric's time-to-accuracy threshold
  reference: str = 'fedavg'        # the method whose curve each page shows beside the entries
  resolved: bool = False           # frozen part over the resolved config (dormant blocks out)
  rounds_rule: str = ''            # how num_rounds was sized (e.g. the plateau rule's result)
  # The rule the rounds were sized by (bench/plateau.py): 'window' on the reference
  # entry's curve (checked on every page), or 'stretch' for a rate decayed over the
  # run (its last rounds anneal: the window always gains; rounds_rule gives the result).
  sizing: str = 'window'
  pretrained: Optional[Mapping] = None   # {'path', 'sha256'}: the checkpoint entries start from
  note: str = ''                   # why provisional or archived; what to run instead
  # Entries with parameters trained on the device outside what the track's guarantee
  # covers (model_facts.personal_training) are ranked in a table of their own, under
  # this heading ('': one ranking).
  rank_apart: str = ''

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
    self._check_rules(name)

  def _check_rules(self, name: str) -> None:
    if self.status not in STATUSES:
      raise TrackError(f'{name}: status must be one of {STATUSES}, got {self.status!r}')
    if self.sizing not in SIZINGS:
      raise TrackError(f'{name}: sizing must be one of {SIZINGS}, got {self.sizing!r}')
    if self.tier not in TIERS:
      raise TrackError(f'{name}: tier must be one of {TIERS}, got {self.tier!r}')
    if self.tier == 'gpu' and not self.requires:
      object.__setattr__(self, 'requires', ACCELERATORS)
    if self.tier == 'gpu' and not set(self.requires) <= set(ACCELERATORS):
      raise TrackError(f'{name}: a gpu-tier track requires an accelerator, not '
                       f'{self.requires}')
    if self.version >= 2 and len(self.seeds) < MIN_SEEDS_FROM_V2:
      raise TrackError(f'{name}: from version 2 on a track runs >= {MIN_SEEDS_FROM_V2} '
                       f'seeds, got {list(self.seeds)}')
    if self.budget is not None and not isinstance(self.budget, Budget):
      raise TrackError(f'{name}: budget must be a Budget, got {type(self.budget).__name__}')

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
  def budget_json(self) -> Optional[dict]:
    return None if self.budget is None else self.budget.to_json()

  @property
  def frozen_sha256(self) -> str:
    return frozen_hash(self.frozen_json, self.budget_json)

  @property
  def runnable(self) -> bool:
    return self.status != 'archived'

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
