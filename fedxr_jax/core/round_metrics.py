"""The metrics stage: the round's scalars, reduced over the client axis.

They stay on the device; the host fetches them in one transfer when it
logs (see `training.loop`). The divergence guard is reduced here too, so
the host learns of a NaN from the metrics it fetches anyway, never from a
sync per step.
"""
import flax
import jax
import jax.numpy as jnp

DIVERGED = 'guard/diverged'


def training_metrics(stats: dict) -> dict:
  """Example-weighted loss, examples, mean local steps and participation."""
  n = stats['examples']
  return {
      'train/loss': jnp.sum(n * stats['loss']) / jnp.maximum(jnp.sum(n), 1.0),
      'train/examples': jnp.sum(n),
      'train/mean_local_steps': jnp.mean(stats['steps'].astype(jnp.float32)),
      'train/participation': jnp.mean(stats['available']),
      # An algorithm's own measures (`Algorithm.local_train`), summed over the cohort.
      **{f'algorithm/{k}': jnp.sum(v) for k, v in stats.get('measures', {}).items()},
  }


def transform_metrics(summed: dict, cohort_size: int) -> dict:
  """Update-transform statistics as means over the cohort ('update/<name>')."""
  return {f'update/{k}': v / cohort_size for k, v in summed.items()}


@flax.struct.dataclass
class Guard:
  """What the divergence guard of a round compares against, and what it does.

  A round diverges when its training loss or a tree it produced is not
  finite, or its loss exceeds `factor` x `reference` (the run's first
  finite training loss; -inf (or NaN) until there is one; factor 0: no such limit).
  `skip`: the round keeps its old state where it diverged (static).
  """
  factor: jax.Array
  reference: jax.Array
  skip: bool = flax.struct.field(pytree_node=False, default=False)


def all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def diverged(guard: Guard, loss, produced) -> jax.Array:
  """bool scalar: the round diverged (see `Guard`); `produced`: its new trees."""
  limit = jnp.where((guard.factor > 0) & (guard.reference > 0),
                    guard.factor * guard.reference, jnp.inf)
  return ~(jnp.isfinite(loss) & all_finite(produced)) | (loss > limit)


def next_guard(guard, metrics: dict):
  """The guard of the next round: the reference is the first finite loss."""
  if guard is None:
    return None
  loss = metrics['train/loss']
  known = jnp.isfinite(guard.reference)
  return guard.replace(reference=jnp.where(known | ~jnp.isfinite(loss),
                                           guard.reference, loss))
