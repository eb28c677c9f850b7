"""fedxr-leaderboard: build the static leaderboard site (python scripts/leaderboard.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/leaderboard.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.leaderboard', run_name='__main__', alter_sys=True)
