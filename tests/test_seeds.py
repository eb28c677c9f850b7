"""The seed is data: runs of two seeds lower to one program, whatever the features."""
import jax
import pytest

from fedxr_jax.compose import experiment


def _lowered(config, seed: int) -> str:
  config.seed = seed
  exp = experiment.build(config)
  state = jax.eval_shape(exp.federation.init, exp.world, exp.key)
  plan, _ = exp.plan(0)
  return jax.jit(exp.federation.round).lower(*state, exp.world, plan).as_text()


def _set(config, changes: dict):
  for key, value in changes.items():
    *parents, leaf = key.split('.')
    block = config
    for p in parents:
      block = block[p]
    block[leaf] = value
  return config


CASES = {
    # Attackers (drawn from the seed), their poisoned data and DP noise.
    'attacks_dp': {'attack.fraction': 0.25, 'attack.model': 'sign_flip',
                   'attack.data': 'backdoor', 'privacy.noise_multiplier': 0.5,
                   'privacy.delta': 1e-5},
    # A D2D graph drawn once per seed, gossip over it.
    'gossip_er': {'topology.kind': 'decentralized', 'topology.d2d.graph': 'erdos_renyi',
                  'topology.d2d.er_prob': 0.3},
    'alie': {'attack.fraction': 0.25, 'attack.model': 'alie'},
    'semi_hetero': {'topology.kind': 'semi', 'topology.semi.fallback': 'ring',
                    'data.hardware.straggler_prob': 0.3, 'data.hardware.availability': True},
}


@pytest.mark.parametrize('case', ['attacks_dp', pytest.param('gossip_er', marks=pytest.mark.slow)])
def test_two_seeds_lower_to_the_same_round(config, case):
  a = _lowered(_set(config, CASES[case]), 0)
  b = _lowered(_set(config, CASES[case]), 7)
  assert a == b


@pytest.mark.slow   # the cases above cover the seed-dependent parts these share
@pytest.mark.parametrize('case', ['alie', 'semi_hetero'])
def test_two_seeds_lower_to_the_same_round_more(config, case):
  test_two_seeds_lower_to_the_same_round(config, case)
