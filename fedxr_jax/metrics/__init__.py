"""Table 6 evaluation metrics: a registry, pure finalizers over mergeable stats, a report.

  registry          every metric: keys, units, SHIFT dimensions, paper reference
  stats             merging and finalizing summed eval stats
  latency, personalization, generalization, continuity, activation, storage,
  qoe, training_time, privacy     one metric family each
  clients           eval_clients.jsonl, the per-user table, and its distributions
  report            Markdown / HTML / plots of runs (fedxr-report)
  tensorboard       TensorBoard event files of the logged scalars (tensorboardX)
  docs              docs/metrics.md from the registry

Import the modules themselves; this package imports nothing, so reading the
registry does not pull in jax or matplotlib.
"""
