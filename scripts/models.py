"""fedxr-models: list the model family, import external checkpoints (python scripts/models.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/models.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.models', run_name='__main__', alter_sys=True)
