"""Start-up checks: integer widths and memory estimates refuse, in one line, what cannot run."""
import jax
import jax.numpy as jnp
import pytest

from fedxr_jax.configs import test as test_config
from fedxr_jax.errors import ConfigError
from fedxr_jax.training import checks


@pytest.mark.parametrize('key, value, message', [
    ('population_size', 3_000_000_000, 'population_size + eval_unseen_clients = 3000000008'),
    # 2147483645 users fit, but the 8 unseen users after them would wrap negative.
    ('population_size', 2_147_483_645, 'population_size + eval_unseen_clients = 2147483653'),
    ('seed', 1 << 40, 'PRNG keys are 32-bit'),
    ('seed', -1, 'PRNG keys are 32-bit'),
    ('local_steps', 300_000_000, 'local_steps x batch_size = 2400000000'),
    ('num_rounds', 1 << 31, 'num_rounds=2147483648 does not fit'),
    ('memory_budget_gb', -1.0, 'memory_budget_gb must be >= 0'),
])
def test_ids_and_counters_that_overflow_int32_are_refused(key, value, message):
  config = test_config.evaluated()
  config[key] = value
  with pytest.raises(ConfigError, match=message.replace('+', r'\+')):
    checks.config_sizes(config)


def test_the_largest_population_that_fits_passes():
  config = test_config.evaluated()
  config.population_size = (1 << 31) - config.eval_unseen_clients   # ids 0 .. 2^31 - 1
  checks.config_sizes(config)


def _compiled(num_floats, temporary: bool):
  """A program whose working set is ~num_floats^2 floats (temporary) or its input."""
  x = jax.ShapeDtypeStruct((num_floats,), jnp.float32)
  fn = (lambda a: jnp.sort(jnp.outer(a, a).ravel())[:3]) if temporary else jnp.sort
  return jax.jit(fn).lower(x).compile()


@pytest.mark.parametrize('num_floats, temporary, local_steps, lower', [
    # 8 clients x 4 bytes x 1e6 steps = 32 MB of a 16 MB working set: the steps.
    (2000, True, 1_000_000, 'lower local_steps'),
    (2000, True, 2, 'lower batch_size or cohort_size, or set chunk_size'),
    (100_000, False, 2, 'lower population_size or the model size'),   # the state
])
def test_a_call_above_the_budget_is_refused_with_the_setting_to_lower(
    num_floats, temporary, local_steps, lower):
  config = test_config.get_config()
  config.local_steps = local_steps
  config.memory_budget_gb = 1e-6   # 1000 bytes
  compiled = _compiled(num_floats, temporary)
  with pytest.raises(ConfigError, match=rf'one call needs an estimated .* but memory_budget_gb '
                                        rf'is 1e-06 GB; {lower}'):
    checks.call_memory(compiled, config, per_step=4)
  config.memory_budget_gb = 1.0
  assert checks.call_memory(compiled, config, per_step=4) >= 8 * num_floats


def test_the_free_memory_is_known_on_this_host():
  free = checks.available_bytes()
  assert free is None or free > 0
