#!/usr/bin/env bash
# The baseline submissions of version 2, 3 or 4 (fedxr_jax/bench/baselines.py lists them), their
# FedAvg verifications, and the leaderboard site.
#
#   scripts/make_baselines.sh [TRACK ...]     # default: every CPU track
#   VERSION=4 scripts/make_baselines.sh [TRACK ...]   # version 4's entries (3 alike)
#
# Writes leaderboard/submissions/<track>-v<version>__<method>__<hash12>.json (each with its
# per-seed runs under leaderboard/runs/; the name carries the content hash, so no entry
# replaces another), verifies each track's FedAvg entry in full (every round of one
# seed drawn by the verifier; the record goes into leaderboard/verified/, the only
# folder the site reads records from; set FEDXR_VERIFY_KEY to draw from a secret),
# and rebuilds leaderboard/site/. Resumable: a finished entry is kept and skipped.
# The version-1 entries stay as they are: v1 takes no new runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboard/submissions
RUNS=leaderboard/runs
VERIFIED=leaderboard/verified
VERSION=${VERSION:-2}
LIST=()
[[ "$VERSION" != 2 ]] && LIST=(--version="$VERSION")
mkdir -p "$OUT" "$VERIFIED"

have() {   # have TRACK NAME: the entry's file, if one was made
  compgen -G "$OUT/${1}-v${VERSION}__${2}__*.json" | head -n 1 || true
}

python -m fedxr_jax.bench.baselines "${LIST[@]}" "$@" | while read -r track name overrides; do
  if [[ -n "$(have "$track" "$name")" ]]; then echo "have $track $name"; continue; fi
  # shellcheck disable=SC2086  # the overrides are separate words
  file=$(fedxr-bench run --track="$track" --version="$VERSION" --output_dir="$RUNS" \
           --method="$name" $overrides | sed -n 's/^fedxr-bench: wrote //p')
  mv -n "$file" "$OUT/"
  if [[ "$name" == fedavg ]]; then
    fedxr-bench verify "$(have "$track" fedavg)" --verified_dir="$VERIFIED" --verify_seeds=1
  fi
done

fedxr-bench validate "$OUT"/*.json
rm -rf leaderboard/site
fedxr-leaderboard "$OUT" --verified_dir="$VERIFIED" --out=leaderboard/site
