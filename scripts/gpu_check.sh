#!/usr/bin/env bash
# The accelerator check (benchmarks/gpu_check.py), from a fresh machine, in < 8 minutes.
#
#   scripts/gpu_check.sh [OUT.json]        # on a GPU machine
#   scripts/gpu_check.sh --dry_run         # anywhere: tiny sizes, tests the script
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == --dry_run ]]; then
  python3 benchmarks/gpu_check.py --dry_run --out="${2:-/tmp/gpu_check_dry.json}"
  exit
fi
python3 -m pip install -q -e '.[cuda]'
python3 benchmarks/gpu_check.py --out="${1:-benchmarks/results/gpu_check.json}"
