"""FedAvg (McMahan et al. 2017): local SGD, the server averages.

With a non-SGD server optimizer it is FedOpt (FedAvgM, FedAdam, FedYogi):
the server optimizer is a config choice (`server_optimizer`), not an algorithm.
"""
from fedxr_jax.algorithms import base


def fedavg(config=None) -> base.Algorithm:
  del config
  return base.plain('fedavg')
