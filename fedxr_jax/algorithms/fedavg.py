"""FedAvg (McMahan et al. 2017): local SGD, the server averages.

With a non-SGD server optimizer it is FedOpt (FedAvgM, FedAdam, FedYogi,
FedAdagrad): the server optimizer is a config choice (`server_optimizer`,
and the `fedadam`-style presets in `registry`), not an algorithm.
"""
from fedxr_jax.core import algorithm as algorithm_lib


def fedavg(facts) -> algorithm_lib.Algorithm:
  del facts
  return algorithm_lib.plain('fedavg')
