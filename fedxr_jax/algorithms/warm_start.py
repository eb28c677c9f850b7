"""Task heads in closed form from the first cohort's features, before round 1.

Over a frozen pretrained base, randomly drawn heads are what PEFT spends its
first rounds undoing. Fed3R (Fani et al., "Accelerating Heterogeneous
Federated Learning with Closed-form Classifiers", ICML 2024) fits them in
closed form instead: each client sends once the sums of what the heads read
against itself and against each task's target
(`FederatedProblem.head_statistics`); the server adds them (a plain sum,
which secure aggregation can hide) and solves one ridge regression per task,
  W = (G + lambda * mean(diag G) * I)^-1 B      (the bias row unregularised),
with a class's one-hot, a target vector or a box's logits as the target
(`objectives.raw_target`). A ridge readout's class scores lie near [0, 1], a
nearly flat softmax: classification heads are scaled by `classifier_scale`.
The clients are round 1's cohort with round 0's training examples, read at
full depth (an early-exit path, `resource_aware`, reads earlier features); a
task no client labels keeps its drawn head.

Each client uploads (d+1)(d+1+K) float32 per task, once: the first row
reports it (`warm_start/upload_bytes_per_client`, `warm_start/clients`).
Refused with DP (the statistics are not privatized: epsilon would not cover
them), with an attack (a sum is not robust), with personal heads (a new user
would start from the drawn ones) and without a server.
"""
import dataclasses

import jax
import jax.numpy as jnp

from fedxr_jax.core import rng
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.errors import ConfigError

MODES = ('none', 'ridge')


@dataclasses.dataclass(frozen=True)
class Settings:
  heads: str = 'none'             # none | ridge: closed-form heads before round 1
  ridge: float = 0.01             # lambda, relative to the Gram matrix's mean diagonal
  classifier_scale: float = 1.0   # classification heads are multiplied by this


def solve(stats: dict, ridge: float):
  """(W [d+1, K], labelled examples) of one task's summed {'gram', 'cross'}."""
  gram, cross = stats['gram'], stats['cross']
  d = gram.shape[0] - 1
  count = gram[d, d]
  lam = ridge * jnp.trace(gram[:d, :d]) / d
  reg = jnp.diag(jnp.concatenate([jnp.full((d,), lam), jnp.zeros((1,))]))
  # No labels: an identity system (a finite W the caller discards).
  empty = jnp.where(count > 0, 0.0, 1.0) * jnp.eye(d + 1)
  return jnp.linalg.solve(gram + reg + empty, cross), count


def summed_statistics(problem, params, source, clients):
  """The clients' `head_statistics` added (one client at a time: memory of one)."""
  def of(c):
    data = problem.client_data(source, c, 'train', jnp.int32(0))
    stats = problem.head_statistics(params, data)
    available = jnp.asarray(data.get('available', True), jnp.float32)
    return jax.tree.map(lambda s: s * available, stats)

  def add(sums, c):
    return jax.tree.map(jnp.add, sums, of(c)), None

  sums, _ = jax.lax.scan(add, of(clients[0]), clients[1:])
  return sums


def make(s: Settings, *, population_size: int, cohort_size: int, task_kinds: dict):
  """(problem, params, source, seed key) -> params with closed-form heads."""
  def warm_start(problem, params, source, seed_key):
    clients = rng.sample_cohort(seed_key, 0, population_size, cohort_size)
    sums = summed_statistics(problem, params, source, clients)

    def head(task, old):
      w, count = solve(sums[task], s.ridge)
      if task_kinds[task] == 'classification':
        w = w * s.classifier_scale
      return jnp.where(count > 0, w, old)

    return problem.map_heads(params, head)
  return warm_start


def contribute(settings, run) -> Contribution:
  """`settings`: the `warm_start` block; `run`: the facts, spec and problem."""
  s = Settings(**dict(settings))
  if s.heads not in MODES:
    raise ConfigError(f'warm_start.heads={s.heads!r} is not one of {MODES}')
  if s.heads == 'none':
    return Contribution('warm_start')
  if not (s.ridge > 0 and s.classifier_scale > 0):
    raise ConfigError('warm_start needs ridge > 0 and classifier_scale > 0, got '
                      f'ridge={s.ridge}, classifier_scale={s.classifier_scale}')
  if run.problem.head_statistics is None:
    raise ConfigError(f'not supported yet: warm_start.heads=ridge with model '
                      f'{run.model.name} (its heads read no one feature vector)')
  facts = run.facts
  if facts.plan.get('heads') == 'personal':
    raise ConfigError('not supported yet: warm_start.heads=ridge with plan.heads=personal '
                      '(a new user would start from the drawn heads)')
  width = run.model.width + 1
  upload = sum(width * (width + td.size) * 4 for td in run.spec.task_defs)
  first_row = {'warm_start/upload_bytes_per_client': float(upload),
               'warm_start/clients': float(facts.cohort_size)}
  return Contribution(
      'warm_start', needs_server='warm_start.heads=ridge', check=_check,
      warm_start=make(s, population_size=facts.population_size,
                      cohort_size=facts.cohort_size,
                      task_kinds=dict(zip(facts.tasks, facts.task_kinds))),
      host_metrics=lambda rounds_done: first_row if rounds_done == 1 else {})


def _check(caps) -> None:
  for c in caps.others:
    if c.feature == 'privacy' and c.info is not None:
      raise ConfigError('not supported yet: warm_start.heads=ridge with DP (its feature '
                        'statistics are not privatized: epsilon would not cover them)')
    if c.feature == 'attack' and c != Contribution('attack'):
      raise ConfigError('not supported yet: warm_start.heads=ridge with an attack (its '
                        'statistics are summed, not robustly aggregated)')
