#!/usr/bin/env bash
# The baseline submissions of every CPU track (version 2), and the leaderboard site.
#
#   scripts/make_baselines.sh [TRACK ...]     # default: every CPU track
#
# Writes leaderboard/submissions/<track>-v2__<method>__<hash12>.json (each with
# its per-seed runs under leaderboard/runs/; the name carries the content hash,
# so no entry replaces another), verifies each track's FedAvg entry in full
# (every round of every seed; the record goes into leaderboard/verified/, the
# only folder the site reads records from; set FEDXR_VERIFY_KEY to draw the
# seeds from a secret), and rebuilds leaderboard/site/. Baselines: FedAvg,
# FedAdam, FedProx, one personalized method (Ditto), plus the track's own
# defense (robust: median and trimmed mean; private: adaptive clipping;
# continual: EWC). The version-1 entries stay as they are: v1 takes no new runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboard/submissions
RUNS=leaderboard/runs
VERIFIED=leaderboard/verified
VERSION=2
mkdir -p "$OUT" "$VERIFIED"

CPU_TRACKS=(xr-default role-specific social cognitive-load continual d2d hetero-hardware
            async-hetero private robust hapt-30)
TRACKS=("${@:-${CPU_TRACKS[@]}}")

have() {   # have TRACK NAME: the entry's file, if one was made
  compgen -G "$OUT/${1}-v${VERSION}__${2}__*.json" | head -n 1 || true
}

entry() {   # entry TRACK NAME [--config.KEY=VALUE ...]
  local track=$1 name=$2; shift 2
  local file
  file=$(have "$track" "$name")
  if [[ -n "$file" ]]; then echo "have $file"; return; fi
  file=$(fedxr-bench run --track="$track" --version="$VERSION" --output_dir="$RUNS" \
           --method="$name" "$@" | sed -n 's/^fedxr-bench: wrote //p')
  mv -n "$file" "$OUT/"
}

# Method by method over the tracks, so that an interrupted run (the script
# resumes: a finished entry is kept) has covered every track with FedAvg and
# each track's own defense first.
for track in "${TRACKS[@]}"; do entry "$track" fedavg; done
for track in "${TRACKS[@]}"; do
  case "$track" in
    robust)
      entry "$track" median --config.aggregator.name=median
      entry "$track" trimmed_mean --config.aggregator.name=trimmed_mean \
          --config.aggregator.trimmed_mean.beta=0.25 ;;
    private)
      entry "$track" dp_adaptive_clip --config.privacy.adaptive_clip.enabled=True ;;
    continual)
      entry "$track" ewc --config.algorithm.name=ewc --config.algorithm.ewc.rounds='(10,)' ;;
  esac
done
for track in "${TRACKS[@]}"; do
  first=$(have "$track" fedavg)
  sha=$(fedxr-bench hash "$first" | cut -d' ' -f1)
  [[ -f "$VERIFIED/$sha.json" ]] || fedxr-bench verify "$first" --verified_dir="$VERIFIED"
done
# The cheaper methods first (FedAdam and FedProx cost a FedAvg run; Ditto trains twice).
for track in "${TRACKS[@]}"; do entry "$track" fedadam --config.algorithm.name=fedadam; done
for track in "${TRACKS[@]}"; do
  entry "$track" fedprox --config.algorithm.name=fedprox --config.algorithm.fedprox.mu=0.01
done
for track in "${TRACKS[@]}"; do entry "$track" ditto --config.algorithm.name=ditto; done

fedxr-bench validate "$OUT"/*.json
fedxr-leaderboard "$OUT" --verified_dir="$VERIFIED" --out=leaderboard/site
