"""fedxr-pretrain: pretrain the M3T base centrally on public users (python scripts/pretrain.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/pretrain.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.pretrain', run_name='__main__', alter_sys=True)
