"""fedxr-sweep: a hyperparameter / seed sweep compiled once (python scripts/sweep.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/sweep.py and
fedxr_jax/training/sweep.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.sweep', run_name='__main__', alter_sys=True)
