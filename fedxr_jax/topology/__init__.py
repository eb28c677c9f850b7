"""Coordination topologies, one file per kind (see `registry`)."""
from fedxr_jax.topology.registry import CENTRAL, TOPOLOGIES, default_config, make
