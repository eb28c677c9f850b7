"""UCI HAPT smartphone IMU: 30 real users as clients, 12 activities.

  fedxr-train --config=fedxr_jax/configs/real/hapt.py --workdir=runs/hapt

25 users train (10 a round), the other 5 are the unseen users of
evaluation; each user tests on a held-out 20% of its activity bouts.
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'hapt'
  config.data.partition = 'natural'
  config.population_size = 25
  config.eval_unseen_clients = 5
  config.cohort_size = 10
  config.num_rounds = 60
  return config
