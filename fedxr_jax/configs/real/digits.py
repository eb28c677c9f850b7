"""sklearn 8x8 digits split over 25 clients by a Dirichlet(0.5) label partition.

  fedxr-train --config=fedxr_jax/configs/real/digits.py --workdir=runs/digits

20 clients train (8 a round), 5 are the unseen clients of evaluation.
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'digits'
  config.data.partition = 'dirichlet'
  config.data.dirichlet_alpha = 0.5
  config.population_size = 20
  config.eval_unseen_clients = 5
  config.cohort_size = 8
  config.num_rounds = 60
  return config
