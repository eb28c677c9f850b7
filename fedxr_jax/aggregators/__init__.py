"""Aggregators (interface: core.aggregation), one file each."""
