"""Adversaries: who is malicious (`malicious`) and data poisoning (`poisoning`).

Model poisoning lives with the update transforms (`fedxr_jax.transforms`)
and, for attacks that see the honest updates, with the aggregators
(`fedxr_jax.aggregators.omniscient`).
"""
