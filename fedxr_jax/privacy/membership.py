"""Membership inference: attack scores, reference models, and exact ROC metrics.

Scores are "higher = more likely a member". Attacks:
  loss_score   -loss (Yeom et al. 2018): one global threshold.
  lira_score   LiRA (Carlini et al. 2022): per-example Gaussians fitted to
               reference models' logit-scaled confidences with the example
               IN / OUT of their training set; online = log-likelihood
               ratio, offline = how far above the OUT distribution the
               target model's confidence lies (only OUT models needed).
`reference_losses` trains K reference models with the run's own local
training, vmapped like clients, each on a random half of a data pool.
Metrics (`roc_auc`, `tpr_at_fpr`, host-side numpy in float64) are exact:
ties count 1/2 in the AUC, and TPR at FPR uses the strictest threshold
with FPR <= the target.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

from fedxr_jax.core import problem as problem_lib
from fedxr_jax.errors import ConfigError

# Below this, a loss is a confidence of 1 to float32.
_MIN_LOSS = 1e-7


def roc_auc(member_scores, nonmember_scores) -> float:
  """P(member score > non-member score) + P(equal) / 2 (Mann-Whitney U / n1 n0)."""
  pos = np.asarray(member_scores, np.float64).ravel()
  neg = np.sort(np.asarray(nonmember_scores, np.float64).ravel())
  below = np.searchsorted(neg, pos, side='left')
  not_above = np.searchsorted(neg, pos, side='right')
  return float(np.mean(below + 0.5 * (not_above - below)) / neg.size)


def tpr_at_fpr(member_scores, nonmember_scores, fpr: float) -> float:
  """Largest TPR of a rule 'score > t' whose FPR is <= `fpr` (exact, no interpolation).

  With n0 non-members the threshold is the (floor(fpr n0) + 1)-th largest
  non-member score; below 1 / n0 that is the largest (needs n0 >= 1 / fpr
  to measure a rate that small).
  """
  if not 0.0 <= fpr < 1.0:
    raise ConfigError(f'fpr must be in [0, 1), got {fpr}')
  pos = np.asarray(member_scores, np.float64).ravel()
  neg = np.sort(np.asarray(nonmember_scores, np.float64).ravel())[::-1]
  allowed = math.floor(round(fpr * neg.size, 6))   # false positives allowed
  return float(np.mean(pos > neg[allowed]))


def attack_metrics(member_scores, nonmember_scores) -> dict:
  """{'auc', 'tpr@1%fpr', 'tpr@0.1%fpr'} as floats."""
  return {'auc': roc_auc(member_scores, nonmember_scores),
          'tpr@1%fpr': tpr_at_fpr(member_scores, nonmember_scores, 0.01),
          'tpr@0.1%fpr': tpr_at_fpr(member_scores, nonmember_scores, 0.001)}


def loss_score(losses) -> jax.Array:
  """The loss-threshold attack's score: lower loss, more likely a member."""
  return -jnp.asarray(losses)


def logit_confidence(losses) -> jax.Array:
  """log(p / (1 - p)) of p = exp(-loss), LiRA's near-Gaussian statistic.

  For cross-entropy p is the true label's probability; for a mean over
  tasks it is a monotone rescaling all the same.
  """
  loss = jnp.maximum(jnp.asarray(losses, jnp.float32), _MIN_LOSS)
  return -loss - jnp.log(-jnp.expm1(-loss))


def lira_score(target_losses, reference_losses, reference_in, *, online: bool = True,
               global_variance: bool = False) -> jax.Array:
  """LiRA membership score of each example [N].

  target_losses [N]: the attacked model's per-example losses;
  reference_losses [K, N]: each reference model's; reference_in [K, N]:
  whether the example was in that model's training half. Online needs
  >= 2 IN and >= 2 OUT models per example; offline >= 2 OUT.
  global_variance: one variance per side for all examples (Carlini et al.
  recommend it for few reference models).
  """
  phi = logit_confidence(target_losses)
  ref = logit_confidence(reference_losses)
  inside = jnp.asarray(reference_in, bool)

  def fit(mask):
    n = jnp.sum(mask, 0)
    mean = jnp.sum(jnp.where(mask, ref, 0.0), 0) / jnp.maximum(n, 1)
    sq = jnp.sum(jnp.where(mask, jnp.square(ref - mean), 0.0), 0)
    var = (jnp.sum(sq) / jnp.maximum(jnp.sum(n) - n.size, 1) if global_variance
           else sq / jnp.maximum(n - 1, 1))
    return mean, jnp.sqrt(jnp.maximum(var, 1e-12))

  mu_out, sd_out = fit(~inside)
  if not online:
    return (phi - mu_out) / sd_out
  mu_in, sd_in = fit(inside)
  return stats.norm.logpdf(phi, mu_in, sd_in) - stats.norm.logpdf(phi, mu_out, sd_out)


def random_halves(key, num_models: int, num_examples: int) -> jax.Array:
  """[K, N] bool: each example IN for exactly K/2 models, which ones at random."""
  if num_models < 2 or num_models % 2:
    raise ConfigError(f'membership.num_reference_models must be even and >= 2, '
                      f'got {num_models}')
  ranks = jnp.argsort(jax.random.uniform(key, (num_models, num_examples)), axis=0)
  return ranks < num_models // 2


def subset_data(data: dict, keep) -> dict:
  """Client data restricted to the examples where `keep` [N] (moved first, as the round expects)."""
  keep = jnp.asarray(keep, bool) & (jnp.arange(keep.shape[0]) < data['num_examples'])
  order = jnp.argsort(~keep, stable=True)
  n = jnp.sum(keep).astype(jnp.int32)
  examples = jax.tree.map(lambda x: x[order], data['examples'])
  if isinstance(examples, dict) and 'example_mask' in examples:
    examples = {**examples, 'example_mask': jnp.arange(keep.shape[0]) < n}
  return {**data, 'examples': examples, 'num_examples': n}


def example_losses(problem: problem_lib.FederatedProblem, params: dict, data: dict) -> jax.Array:
  """Each example's loss under `params` [N] (one-example batches of `problem.loss`)."""
  meta = problem_lib.client_meta(data)

  def one(example):
    return problem.loss(params, jax.tree.map(lambda x: x[None], example), meta)[0]

  return jax.vmap(one)(data['examples'])


class ReferenceModels(NamedTuple):
  losses: jax.Array   # [K, N] each reference model's loss on every pool example
  member: jax.Array   # [K, N] bool: the example was in that model's training half


def reference_losses(problem: problem_lib.FederatedProblem, local_update: Callable,
                     trainable: dict, frozen: dict, pool: dict, key, *,
                     num_models: int) -> ReferenceModels:
  """Trains `num_models` reference models on random halves of `pool`, vmapped.

  local_update(params, frozen, data, key) -> (params, stats), as
  `core.local.make_local_update` returns; every model starts from
  `trainable` (e.g. the global model the target was trained from) with
  `frozen` fixed. pool: client data (e.g. a client's training set, or
  candidates mixed from members and held-out examples); only its first
  `num_examples` examples are trained on or meaningful. Jit the call.
  """
  member = random_halves(jax.random.fold_in(key, 0), num_models,
                         jax.tree.leaves(pool['examples'])[0].shape[0])
  keys = jax.random.split(jax.random.fold_in(key, 1), num_models)

  def train_and_score(mask, k):
    params, _ = local_update(trainable, frozen, subset_data(pool, mask), k)
    return example_losses(problem, {**frozen, **params}, pool)

  return ReferenceModels(jax.vmap(train_and_score)(member, keys), member)
