"""Benchmark tracks, submissions and the leaderboard.

  track          Track: a frozen config part, an open part with limits, seeds, metrics
  submission     build / write a submission file from run results (canonical JSON + hashes)
  validate       validate_file(path, tracks) -> Submission: strict, bounded, never executes
  verification   the `NAME.verified.json` sidecar that `fedxr-bench verify` writes
  leaderboard    a static HTML site ranking the valid submissions of every track
  tracks/        the registered tracks (the lead's registry)

Nothing here is imported by `fedxr_jax`; import the modules directly.
"""
