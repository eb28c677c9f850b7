"""fedxr-train: train or resume a federated run (python scripts/train.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/train.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.train', run_name='__main__', alter_sys=True)
