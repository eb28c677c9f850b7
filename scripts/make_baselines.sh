#!/usr/bin/env bash
# The baseline submissions of every CPU track, and the leaderboard site from them.
#
#   scripts/make_baselines.sh [TRACK ...]     # default: every CPU track
#
# Writes leaderboard/submissions/<track>-v<version>__<method>.json (each with
# its per-seed runs under leaderboard/runs/), verifies the first entry of each
# track by re-running 2 rounds of its first seed (NAME.verified.json), and
# rebuilds leaderboard/site/. Baselines: FedAvg, FedAdam, FedProx, one
# personalized method (Ditto), plus the track's own defense (robust: median and
# trimmed mean; private: DP-FedAvg is the track itself, with adaptive clipping
# as a second entry).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboard/submissions
RUNS=leaderboard/runs
mkdir -p "$OUT"

CPU_TRACKS=(xr-default cognitive-augmentation neuroadaptive ai-companions emotion-gaming
            d2d hetero-hardware continual private robust hapt-30)
TRACKS=("${@:-${CPU_TRACKS[@]}}")

entry() {   # entry TRACK NAME [--config.KEY=VALUE ...]
  local track=$1 name=$2; shift 2
  local file="$OUT/${track}-v1__${name}.json"
  if [[ -f "$file" ]]; then echo "have $file"; return; fi
  fedxr-bench run --track="$track" --output_dir="$RUNS" --method="$name" "$@"
  mv "$RUNS/${track}-v1__${name}.json" "$file"
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
  first="$OUT/${track}-v1__fedavg.json"
  [[ -f "${first%.json}.verified.json" ]] || fedxr-bench verify "$first" --rounds=2
done
# The cheaper methods first (FedAdam and FedProx cost a FedAvg run; Ditto trains twice).
for track in "${TRACKS[@]}"; do entry "$track" fedadam --config.algorithm.name=fedadam; done
for track in "${TRACKS[@]}"; do
  entry "$track" fedprox --config.algorithm.name=fedprox --config.algorithm.fedprox.mu=0.01
done
for track in "${TRACKS[@]}"; do entry "$track" ditto --config.algorithm.name=ditto; done

fedxr-bench validate $(ls "$OUT"/*.json | grep -v '\.verified\.json$')
fedxr-leaderboard "$OUT" --out=leaderboard/site
