"""The server stage: an optax step on the pseudo-gradient, where the round syncs."""
import jax
import jax.numpy as jnp
import optax

from fedxr_jax.core import trees


def step(optimizer: optax.GradientTransformation, shared: dict, opt_state, target: dict,
         sync) -> tuple:
  """(new shared, new optimizer state): descend along `shared - target`.

  sgd(1.0) makes the target the new global model (FedAvg); any optax
  optimizer gives FedOpt. Where `sync` is False (a hierarchical edge
  round) nothing moves, the optimizer state included.
  """
  pseudo_grad = jax.tree.map(jnp.subtract, shared, target)
  updates, new_opt_state = optimizer.update(pseudo_grad, opt_state, shared)
  new_shared = trees.where_tree(sync, optax.apply_updates(shared, updates), shared)
  return new_shared, trees.where_tree(sync, new_opt_state, opt_state)


def scatter(population_tree, cohort, cohort_tree):
  """Writes the cohort's rows back into a tree stacked over the population."""
  return jax.tree.map(lambda all_, new: all_.at[cohort].set(new), population_tree, cohort_tree)


def gather(population_tree, cohort):
  return jax.tree.map(lambda x: x[cohort], population_tree)
