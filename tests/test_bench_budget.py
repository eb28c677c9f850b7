"""Every Table 4 strategy fits a v2 track's per-device budget in some configuration:
LoRA + prompts (the default), full tuning, adapters, mixture of experts, user
prompts. Builds each experiment (seconds each): slow."""
import pytest

from fedxr_jax.bench import model_facts
from fedxr_jax.bench import run as run_lib
from fedxr_jax.bench import tracks
from fedxr_jax.bench.tracks import common
from fedxr_jax.bench.tracks import definitions

pytestmark = pytest.mark.slow


def _prefix():
  return common.model_prefix(common.flatten(definitions.xr_default().to_dict()))


STRATEGIES = {
    'lora + prompts': {},
    'full tuning': {'plan.base': 'shared'},
    'adapters': {'adapter_dim': 8},
    'experts': {'num_experts': 4},
    'user prompts': {'num_user_prompts': 4},
}


@pytest.mark.parametrize('name', sorted(STRATEGIES))
def test_each_table_4_strategy_fits_the_xr_default_budget(name):
  track = tracks.get('xr-default', 2)
  overrides = {(k if '.' in k else _prefix() + k): v for k, v in STRATEGIES[name].items()}
  track.check_overrides(overrides)                       # open...
  facts = model_facts.facts(run_lib.track_config(track, overrides))
  assert track.budget.problems(facts, None) == [], name  # ...and within the budget
