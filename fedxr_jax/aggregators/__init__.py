"""Aggregators (interface: core.aggregation), one file each; by name in `registry`.

Robust aggregators run on the stacked path (median, trimmed_mean, krum,
geometric_median, centered_clipping); the DP mean, norm bounding and exact
LoRA stream. `omniscient.with_attack` wraps any of them with ALIE or IPM.
Modules are not re-exported by factory name: a factory named like its
module would shadow the module.
"""
