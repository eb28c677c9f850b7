"""fedxr-bench: run a track, validate submissions, verify one by re-running it (python scripts/bench.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/bench.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.bench', run_name='__main__', alter_sys=True)
