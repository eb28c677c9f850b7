"""A CPU-sized config for tests: seconds, not minutes."""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  config.num_rounds = 4
  config.population_size = 24
  config.cohort_size = 8
  config.local_steps = 2
  config.batch_size = 8
  # 'auto' resolves to the whole cohort of 8 on CPU; 0 says so without tracing the chunk
  # program at every build (1 s of 2). tests/test_scheduling.py tests 'auto' itself.
  config.chunk_size = 0
  config.model.m3t.width = 16
  config.model.m3t.depth = 1
  config.model.m3t.num_heads = 2
  config.model.m3t.mlp_width = 16
  config.model.m3t.num_prompts = 2
  config.model.m3t.lora_rank = 2
  config.data.max_examples = 16
  config.data.min_examples = 8
  config.data.test_examples = 8
  config.eval_every = 2
  # No unseen users, panel or held-out clients: two of a run's three evaluation programs
  # (about a quarter of a one-round run's compile). Tests that read their metrics turn them
  # on (evaluated() below).
  config.eval_unseen_clients = 0
  config.eval.panel_size = 0
  config.eval.holdout_clients = 0
  # Wall time is not a function of the seed: runs compare bit for bit without it.
  config.eval.measure_latency = False
  config.checkpoint_every = 2
  config.plot = False
  return config


def evaluated(config=None):
  """The test config (or `config`) evaluated on 8 unseen users, a panel of 8 and 8 held-out
  clients a group: the evaluation protocol in full."""
  config = get_config() if config is None else config
  config.eval_unseen_clients = 8
  config.eval.panel_size = 8
  config.eval.holdout_clients = 8
  return config
