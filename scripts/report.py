"""fedxr-report: the Table 6 metrics of runs, side by side (python scripts/report.py --help).

Kept short on purpose: the logic is in fedxr_jax/cli/report.py.
"""
import runpy

runpy.run_module('fedxr_jax.cli.report', run_name='__main__', alter_sys=True)
