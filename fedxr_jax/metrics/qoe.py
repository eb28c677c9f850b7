r"""Quality of experience: a simulated user survey and behavioural proxies (Table 6).

User-reported QoE (a model of what a survey would collect; its parameters
are assumptions, not fitted to XR user data). For a user u on task t with
accuracy a (share of correct outputs) and latency L against the task's
Table 2 budget B:

  D(L)      = 1 if L <= B, else exp(-(L / B - 1) / tau)
  MOS(a, L) = 1 + 4 a D(L)                          in [1, 5]
  MOS_u     = clip(MOS + b_u, 1, 5),  b_u ~ N(0, bias_std^2) per user
  rating    = clip(round(MOS_u + e), 1, 5),  e ~ N(0, noise_std^2)

Sources: the 1-5 absolute category rating scale (ITU-T P.800); a quality
score combined with a delay/stalling degradation and mapped onto 1 + 4 x
(...), in the style of the parametric opinion models ITU-T G.1070 and
P.1203 (here simplified to one product); the exponential decay of QoE in a
QoS impairment is the IQX hypothesis (Fiedler, Hossfeld and Tran-Gia,
IEEE Network 2010). tau = 1: at twice the budget the latency
factor is e^-1. A rating <= 2 is "poor or worse" (%PoW, ITU-T G.107).

Model-inferred QoE (what the system can observe without asking):
  repetitions = (1 - a) x retry_prob            task redone after a wrong output
  hesitation  = 1 if L > B                      latency-induced hesitation
  abort       = abort_max (1 - exp(-(L / B - 1)_+ / abort_tau))   input aborted
  score       = 1 + 4 (1 - repetitions)(1 - abort)(1 - hesitation_weight x hesitation)
Gaze jitter, Table 6's fourth signal, is not simulated.

Stats are jnp (they can run inside the jitted evaluation) and sum over
(client, task) pairs; the user bias and rating noise come from
fold_in(key, client id), so any chunking of clients draws the same ratings.
"""
import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import stats as stats_lib


@dataclasses.dataclass(frozen=True)
class UserModel:
  tau: float = 1.0          # latency decay past the budget, in budgets
  bias_std: float = 0.3     # per-user rating offset (MOS points)
  noise_std: float = 0.5    # per-rating noise (MOS points)

  def __post_init__(self):
    if self.tau <= 0 or self.bias_std < 0 or self.noise_std < 0:
      raise ConfigError(f'qoe user model needs tau > 0 and stds >= 0, got {self}')


@dataclasses.dataclass(frozen=True)
class BehaviourModel:
  retry_prob: float = 0.5         # a user redoes a task after a wrong output
  abort_max: float = 0.5          # abort probability far past the budget
  abort_tau: float = 1.0          # abort rise past the budget, in budgets
  hesitation_weight: float = 0.2  # score lost to a budget violation

  def __post_init__(self):
    probs = (self.retry_prob, self.abort_max, self.hesitation_weight)
    if not all(0.0 <= p <= 1.0 for p in probs) or self.abort_tau <= 0:
      raise ConfigError(f'qoe behaviour model needs probabilities in [0, 1] and '
                        f'abort_tau > 0, got {self}')


def _over(latency_ms, budget_ms):
  """Latency past the budget, in budgets: (L / B - 1)_+ [C, T]."""
  lat = jnp.asarray(latency_ms, jnp.float32)
  lat = lat[:, None] if lat.ndim == 1 else lat
  return jnp.maximum(lat / jnp.asarray(budget_ms, jnp.float32)[None, :] - 1.0, 0.0)


def latency_factor(latency_ms, budget_ms, tau: float = 1.0):
  return jnp.exp(-_over(latency_ms, budget_ms) / tau)


def expected_mos(accuracy, latency_ms, budget_ms, tau: float = 1.0):
  """MOS(a, L) = 1 + 4 a D(L) per (client, task) [C, T]."""
  return 1.0 + 4.0 * jnp.asarray(accuracy, jnp.float32) * latency_factor(
      latency_ms, budget_ms, tau)


@functools.partial(jax.jit, static_argnames='model')
def likert(key, mos, client_ids, model: UserModel = UserModel()):
  """Integer 1-5 ratings [C, T] around `mos` with a per-user bias."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(client_ids))
  k_bias, k_noise = jax.vmap(jax.random.split, out_axes=1)(keys)
  bias = jax.vmap(lambda k: jax.random.normal(k))(k_bias)[:, None] * model.bias_std
  noise = jax.vmap(lambda k: jax.random.normal(k, mos.shape[1:]))(k_noise) * model.noise_std
  user_mos = jnp.clip(mos + bias, 1.0, 5.0)
  return jnp.clip(jnp.round(user_mos + noise), 1.0, 5.0)


def _accuracy(correct, count):
  count = jnp.asarray(count, jnp.float32)
  return jnp.asarray(correct, jnp.float32) / jnp.maximum(count, 1.0), count > 0


@functools.partial(jax.jit, static_argnames='model')
def user_reported_stats(key, correct, count, latency_ms, budget_ms, client_ids,
                        model: UserModel = UserModel()) -> dict:
  """Sums over users of ratings, model MOS and poor-or-worse ratings per task [T].

  correct, count [C, T]: per-client eval stats of the model each user runs;
  latency_ms [C] or [C, T]; budget_ms [T]; client_ids [C] (global ids).
  """
  acc, held = _accuracy(correct, count)
  mos = expected_mos(acc, latency_ms, budget_ms, model.tau)
  ratings = likert(key, mos, client_ids, model)
  w = held.astype(jnp.float32)
  return {'rating_sum': jnp.sum(ratings * w, 0), 'model_mos_sum': jnp.sum(mos * w, 0),
          'poor': jnp.sum((ratings <= 2) * w, 0), 'pairs': jnp.sum(w, 0)}


def user_reported_metrics(sums: Mapping, tasks: Sequence[str]) -> dict:
  pairs = np.asarray(sums['pairs'])
  out = {f'qoe/user_reported/{t}/mos': stats_lib.scalar(v)
         for t, v in zip(tasks, stats_lib.ratio(sums['rating_sum'], pairs))}
  total = pairs.sum()
  for name, key in (('mos', 'rating_sum'), ('model_mos', 'model_mos_sum'),
                    ('poor_or_worse', 'poor')):
    out[f'qoe/user_reported/{name}'] = stats_lib.scalar(
        stats_lib.ratio(np.sum(sums[key]), total))
  return out


@functools.partial(jax.jit, static_argnames='model')
def inferred_stats(correct, count, latency_ms, budget_ms,
                   model: BehaviourModel = BehaviourModel()) -> dict:
  """Sums over users of the behavioural proxies and the inferred score per task [T]."""
  acc, held = _accuracy(correct, count)
  over = _over(latency_ms, budget_ms)
  repetitions = (1.0 - acc) * model.retry_prob
  hesitation = (over > 0).astype(jnp.float32)
  abort = model.abort_max * (1.0 - jnp.exp(-over / model.abort_tau))
  score = 1.0 + 4.0 * ((1.0 - repetitions) * (1.0 - abort)
                       * (1.0 - model.hesitation_weight * hesitation))
  w = held.astype(jnp.float32)
  return {'repetition_sum': jnp.sum(repetitions * w, 0),
          'hesitation_sum': jnp.sum(hesitation * w, 0),
          'abort_sum': jnp.sum(abort * w, 0), 'score_sum': jnp.sum(score * w, 0),
          'pairs': jnp.sum(w, 0)}


def inferred_metrics(sums: Mapping, tasks: Sequence[str]) -> dict:
  pairs = np.asarray(sums['pairs'])
  out = {f'qoe/inferred/{t}/score': stats_lib.scalar(v)
         for t, v in zip(tasks, stats_lib.ratio(sums['score_sum'], pairs))}
  total = pairs.sum()
  for name, key in (('score', 'score_sum'), ('repetition_rate', 'repetition_sum'),
                    ('hesitation_rate', 'hesitation_sum'), ('abort_rate', 'abort_sum')):
    out[f'qoe/inferred/{name}'] = stats_lib.scalar(stats_lib.ratio(np.sum(sums[key]), total))
  return out
