"""The client learning rate over the rounds (core/lr_schedule.py)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedxr_jax.compose import experiment
from fedxr_jax.core import lr_schedule
from fedxr_jax.core import round_plan
from fedxr_jax.errors import ConfigError
from helpers import assert_trees_close, assert_trees_equal
import tiny


@pytest.mark.parametrize('kind,round_idx,expected', [
    ('constant', 7, 1.0),
    ('cosine', 0, 1.0),
    ('cosine', 5, 0.2 + 0.8 * 0.5),            # halfway: the mean of the ends
    ('cosine', 10, 0.2), ('cosine', 30, 0.2),  # from the horizon on: the final fraction
    ('cosine', 2, 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.2))),
    ('linear', 0, 1.0), ('linear', 4, 0.2 + 0.8 * 0.6), ('linear', 12, 0.2),
])
def test_factor_at_hand_computed_rounds(kind, round_idx, expected):
  schedule = lr_schedule.make(kind, 10, 0.2)
  assert float(lr_schedule.factor(schedule, round_idx)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('kind,rounds,final,match', [
    ('exponential', 10, 0.0, 'kind must be one of'),
    ('cosine', 0, 0.0, 'rounds must be >= 1'),
    ('linear', 10, 1.5, r'final_fraction must be in \[0, 1\]'),
])
def test_a_bad_schedule_is_one_line(kind, rounds, final, match):
  with pytest.raises(ConfigError, match=match):
    lr_schedule.make(kind, rounds, final)


def test_a_decayed_round_trains_at_the_rate_it_decays_to():
  # Round index 2 of a cosine over 4 rounds to 0.2 of the rate trains as a constant rate
  # of 0.5 x (0.2 + 0.8 (1 + cos(pi / 2)) / 2) = 0.3 does; the base rate stays in the state.
  def round_two(rate, schedule):
    setup = tiny.setup(population=8, cohort=4, lr_schedule=schedule,
                       client_optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=rate))
    fed = setup.federation
    server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
    server = server.replace(round=jnp.int32(2))
    return jax.jit(fed.round)(server, clients, frozen, setup.world, setup.plan(2)[0])[0]
  decayed = round_two(0.5, lr_schedule.make('cosine', 4, 0.2))
  constant = round_two(0.3, None)
  assert_trees_close(decayed.shared, constant.shared, rtol=1e-6, atol=1e-7)
  assert float(decayed.hyperparams['client_optimizer']['learning_rate']) == 0.5


def test_the_config_block_reaches_the_round(config):
  config.client_optimizer.schedule.update(kind='cosine', rounds=4, final_fraction=0.2)
  setup = experiment.build(config).federation.setup
  assert setup.lr_schedule == lr_schedule.Schedule('cosine', 4, 0.2)


def test_the_default_config_builds_no_schedule(config):
  from fedxr_jax.compose import optimizers   # pylint: disable=g-import-not-at-top
  assert not optimizers.schedule(config).active
  config.client_optimizer.schedule.kind = 'linear'
  assert optimizers.schedule(config).rounds == config.num_rounds   # rounds 0: the run's
  config.client_optimizer.schedule.kind = 'step'
  with pytest.raises(ConfigError, match='client_optimizer.schedule.kind must be one of'):
    optimizers.schedule(config)


def test_scanned_rounds_take_each_rounds_rate_as_single_calls_do():
  # Three rounds in one lax.scan call equal three calls, under a linear decay to 0 over 3
  # rounds (factors 1, 2/3, 1/3), and differ from the constant rate's.
  injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
  made = lambda schedule: tiny.setup(population=12, cohort=4, client_optimizer=injected,
                                     lr_schedule=schedule)
  setup = made(lr_schedule.make('linear', 3, 0.0))
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  plans = [setup.plan(r)[0] for r in range(3)]
  s, c = server, clients
  for p in plans:
    s, c, _ = jax.jit(fed.round)(s, c, frozen, setup.world, p)
  scanned, _, _ = jax.jit(fed.rounds)(server, clients, frozen, setup.world,
                                      round_plan.stack(plans))
  assert_trees_equal(s.shared, scanned.shared)
  constant = made(None).federation
  k, kc = server, clients
  for p in plans:
    k, kc, _ = jax.jit(constant.round)(k, kc, frozen, setup.world, p)
  assert not np.allclose(jax.tree.leaves(k.shared)[0], jax.tree.leaves(s.shared)[0])


def test_a_schedule_without_a_rate_in_the_optimizer_state_is_refused():
  with pytest.raises(ConfigError, match='keeps its rate in its state'):
    tiny.setup(lr_schedule=lr_schedule.make('cosine', 10, 0.0))   # plain optax.sgd
