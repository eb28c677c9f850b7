"""Federated algorithms as factories of pure functions, selected by name."""
from fedxr_jax.algorithms.base import Algorithm, ClientContext, ServerUpdate
from fedxr_jax.algorithms.registry import ALGORITHMS, make_algorithm
