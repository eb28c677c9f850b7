"""Federated algorithms, one factory of pure functions per file (see `registry`)."""
from fedxr_jax.algorithms.registry import ALGORITHMS, PRESETS, default_config, make
