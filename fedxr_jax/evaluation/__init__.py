"""Evaluation wiring: the rows a run logs on its evaluated rounds.

  evaluator       Evaluator(exp, workdir): every Table 6 metric of a round
  protocol        who is evaluated (panel, unseen users, held-out groups)
  client_metrics  per-client records and their reductions
  device_facts    per-device facts of the run (latency, storage, FLOPs)
"""
