"""aeon BasicMotions (smart-watch IMU, 4 activities, 80 series) over 8 clients.

  fedxr-train --config=fedxr_jax/configs/real/basic_motions.py --workdir=runs/bm

A Dirichlet(1.0) label partition: 6 clients train (all each round), 2 are
unseen. A tiny set: accuracy is measured on a handful of series.
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'basic_motions'
  config.data.partition = 'dirichlet'
  config.data.dirichlet_alpha = 1.0
  config.population_size = 6
  config.eval_unseen_clients = 2
  config.cohort_size = 6
  config.batch_size = 8
  config.num_rounds = 40
  return config
