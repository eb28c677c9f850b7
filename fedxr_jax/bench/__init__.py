"""Benchmark tracks, submissions, their verification and the leaderboard.

  track          Track: a frozen config part, an open part with limits, a per-device
                 Budget, seeds, tier, status; frozen_hash
  tracks/        the registry: v1 (archived, from a snapshot of 01066a6) and v2
                 (provisional); resolve.py (only the selected blocks), bounds.py
                 (per-component limits), common.py (frozen and open parts)
  submission     build / write a submission file from run results (canonical JSON + hashes)
  model_facts    parameter counts, FLOPs and the checkpoint's hash of a run config
  validate       validate_file(path, tracks) -> Submission: strict, bounded, never executes
  run            run a track's seeds into a submission; re-run a submission's seeds
  verify         fedxr-bench verify: re-run what is ranked, compare, record
  verification   the records (in the maintainers' --verified_dir) and what they say
  naming         submission file names that cannot collide
  ranking        statistical ties, Pareto fronts; targets: time to accuracy;
                 plateau: the rule that sizes a track's rounds
  leaderboard    collect the board; site / plots / columns: the static HTML site

Nothing here is imported by `fedxr_jax`; import the modules directly.
"""
