"""The divergence guard inside the compiled round (tiny problem) and its host-side lines."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.configs import default as default_config
from fedxr_jax.core import round_metrics
from fedxr_jax.core import round_plan
from fedxr_jax.training import guards
import tiny
from helpers import assert_trees_equal

PLAN = {'body': 'shared', 'head': 'personal'}


def _guard(factor=0.0, reference=math.nan, skip=False):
  return round_metrics.Guard(factor=jnp.float32(factor), reference=jnp.float32(reference),
                             skip=skip)


def _one_round(setup, guard):
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  plan, _ = setup.plan(0)
  new = jax.jit(fed.round)(server, clients, frozen, setup.world, plan, guard)
  return (server, clients), new


def test_a_nan_round_is_flagged_and_skip_round_keeps_the_old_state():
  setup = tiny.setup(lr=math.nan, plan=PLAN, population=12, cohort=4)
  (server, clients), (new_server, new_clients, metrics) = _one_round(setup, _guard(skip=True))
  assert float(metrics['guard/diverged']) == 1.0
  assert int(new_server.round) == 1   # the round happened: the next one samples anew
  assert_trees_equal(new_server.replace(round=server.round), server)
  assert_trees_equal(new_clients, clients)
  # Without skip the NaN aggregate is kept (the host stops the run instead).
  _, (stopped, _, metrics) = _one_round(setup, _guard(skip=False))
  assert float(metrics['guard/diverged']) == 1.0
  assert np.isnan(np.asarray(stopped.shared['body']['w'])).all()


def test_a_healthy_round_is_not_flagged_and_the_guard_changes_nothing():
  setup = tiny.setup(plan=PLAN, population=12, cohort=4)
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  plan, _ = setup.plan(0)
  plain = jax.jit(fed.round)(server, clients, frozen, setup.world, plan)
  guarded = jax.jit(fed.round)(server, clients, frozen, setup.world, plan, _guard(skip=True))
  assert float(guarded[2]['guard/diverged']) == 0.0
  assert 'guard/diverged' not in plain[2]
  assert_trees_equal(plain[:2], guarded[:2])


def test_a_loss_above_factor_times_the_first_loss_diverges():
  setup = tiny.setup(population=12, cohort=4)
  _, (_, _, metrics) = _one_round(setup, _guard())
  loss = float(metrics['train/loss'])
  for factor, reference, flagged in ((1.0, loss, 0.0),          # loss == the limit
                                     (2.0, loss, 0.0),
                                     (0.5, loss, 1.0),          # loss > 0.5 x loss
                                     (1.0, 0.9 * loss, 1.0),
                                     (1.0, 1.1 * loss, 0.0),
                                     (0.0, 0.01 * loss, 0.0)):  # factor 0: no limit
    _, (_, _, m) = _one_round(setup, _guard(factor, reference))
    assert float(m['guard/diverged']) == flagged, (factor, reference)


def test_no_first_loss_yet_is_minus_inf_on_the_device_and_read_as_unknown():
  # A NaN put on every process's devices fails jax's equal-values check (NaN != NaN):
  # every fresh multi-process run stopped there. -inf reads alike in the round.
  config = default_config.get_config()
  config.divergence_factor = 0.5
  guard = guards.make(config, [])
  assert np.isneginf(guard.reference)
  assert guards.make(config, [{'train/loss': None}, {'train/loss': 2.0}]).reference == 2.0
  setup = tiny.setup(population=12, cohort=4)
  _, (_, _, m) = _one_round(setup, guard)
  assert float(m['guard/diverged']) == 0.0   # no limit while there is no first loss
  loss = round_metrics.next_guard(guard, {'train/loss': jnp.float32(3.0)}).reference
  assert float(loss) == 3.0                   # the first finite loss becomes the reference


def test_k_rounds_carry_the_first_loss_as_the_reference():
  # Round 1 sets the reference; with factor 0.5 every later round whose loss
  # exceeds half of round 1's diverges, as the host computes for one-round calls.
  setup = tiny.setup(population=12, cohort=4, lr=0.05)
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  plans = [setup.plan(r)[0] for r in range(3)]
  _, _, stacked = jax.jit(fed.rounds)(server, clients, frozen, setup.world,
                                      round_plan.stack(plans), _guard(factor=0.5))
  losses = np.asarray(stacked['train/loss'])
  expected = [0.0] + [float(l > 0.5 * losses[0]) for l in losses[1:]]
  assert expected == [0.0, 1.0, 1.0]   # the tiny problem's loss falls by less than half
  np.testing.assert_array_equal(stacked['guard/diverged'], expected)


def _config(**overrides):
  config = default_config.get_config()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    block = config
    for p in parents:
      block = block[p]
    block[leaf] = value
  return config


@pytest.mark.parametrize('overrides, cause', [
    ({'client_optimizer.learning_rate': math.nan},
     'client_optimizer.learning_rate=nan is not finite'),
    ({'client_optimizer.learning_rate': 1e6}, 'client_optimizer.learning_rate=1e+06 is large'),
    ({'privacy.noise_multiplier': 50.0}, 'DP noise (privacy.noise_multiplier=50)'),
    ({'attack.model': 'sign_flip'}, 'an attack (attack.model=sign_flip)'),
    ({}, 'the learning rates (client_optimizer.learning_rate=0.1, '
         'server_optimizer.learning_rate=1)'),
])
def test_the_likely_cause_names_the_setting(overrides, cause):
  assert guards.likely_cause(_config(**overrides)) == cause


def test_the_stop_line_names_the_round_what_diverged_and_the_checkpoint():
  config = _config(divergence_factor=10.0)
  rows = [{'round': 1, 'train/loss': 2.0}, {'round': 2, 'train/loss': 1.5}]
  line = guards.stop_message(config, {'round': 3, 'train/loss': 25.0}, rows, 2, '/w/ckpt')
  assert line.startswith('training diverged at round 3: its training loss 25 exceeds '
                         'divergence_factor=10 x the first loss 2; likely cause: ')
  assert 'the last good checkpoint is round 2 in /w/ckpt' in line and '\n' not in line
  assert 'no checkpoint was saved' in guards.stop_message(
      config, {'round': 1, 'train/loss': None}, [], 0, '/w/ckpt')
  assert guards.what(config, {'round': 2, 'train/loss': 1.0}, rows) == (
      'its new parameters are not finite')


def test_guard_settings_are_checked():
  for bad in ({'on_divergence': 'ignore'}, {'divergence_factor': -1.0}):
    with pytest.raises(ValueError, match='on_divergence|divergence_factor'):
      guards.validate(_config(**bad))
  assert guards.reference([{'train/loss': None}, {'train/loss': 3.0}]) == 3.0
  assert guards.reference([]) == -math.inf
