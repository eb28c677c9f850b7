"""Coordination topologies: host-built communication graphs and jittable mixing."""
