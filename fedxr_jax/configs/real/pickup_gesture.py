"""aeon PickupGestureWiimoteZ: who made a pick-up gesture (10 subjects, 100 series).

  fedxr-train --config=fedxr_jax/configs/real/pickup_gesture.py --workdir=runs/pg

A Dirichlet(1.0) label partition over 10 clients: 8 train (all each round),
2 are unseen. Series resampled to 64 steps of z-acceleration.
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'pickup_gesture'
  config.data.partition = 'dirichlet'
  config.data.dirichlet_alpha = 1.0
  config.population_size = 8
  config.eval_unseen_clients = 2
  config.cohort_size = 8
  config.batch_size = 8
  config.num_rounds = 60
  return config
