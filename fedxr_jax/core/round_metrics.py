"""The metrics stage: the round's scalars, reduced over the client axis.

They stay on the device; the host fetches them in one transfer when it
logs (see `training.loop`).
"""
import jax.numpy as jnp


def training_metrics(stats: dict) -> dict:
  """Example-weighted loss, examples, mean local steps and participation."""
  n = stats['examples']
  return {
      'train/loss': jnp.sum(n * stats['loss']) / jnp.maximum(jnp.sum(n), 1.0),
      'train/examples': jnp.sum(n),
      'train/mean_local_steps': jnp.mean(stats['steps'].astype(jnp.float32)),
      'train/participation': jnp.mean(stats['available']),
  }


def transform_metrics(summed: dict, cohort_size: int) -> dict:
  """Update-transform statistics as means over the cohort ('update/<name>')."""
  return {f'update/{k}': v / cohort_size for k, v in summed.items()}
