"""Privacy leakage risk (Table 6): reports what the run has, says what it lacks.

The bound itself comes from the DP accountant (fedxr_jax/privacy, logged by
the run every round when DP noise is on); the evaluation logs the
membership-inference AUC (privacy/mia_auc). Gradient inversion
(privacy/inversion.py) is not run in training rows.
"""
import math
from typing import Mapping, Optional

KEYS = ('privacy/epsilon', 'privacy/delta', 'privacy/mia_auc')


def privacy_metrics(epsilon: Optional[float] = None, delta: Optional[float] = None,
                    mia_auc: Optional[float] = None) -> dict:
  """The privacy keys that exist. An infinite epsilon (no DP noise) is left out:
  JSON has no infinity, and `privacy_notes` says why the key is missing."""
  out = {}
  if epsilon is not None and math.isfinite(epsilon):
    out['privacy/epsilon'] = float(epsilon)
    if delta is not None:
      out['privacy/delta'] = float(delta)
  if mia_auc is not None:
    out['privacy/mia_auc'] = float(mia_auc)
  return out


def privacy_notes(row: Mapping) -> list:
  """One line per privacy measurement the row lacks, and why."""
  notes = []
  if row.get('privacy/epsilon') is None:
    notes.append('privacy/epsilon: no finite DP bound (no DP noise, or no accountant '
                 'in this run)')
  if row.get('privacy/mia_auc') is None:
    notes.append('privacy/mia_auc: no membership-inference attack was run (no panel, or '
                 'no panel user has trained yet)')
  notes.append('gradient inversion: not run in training rows (privacy/inversion.py)')
  return notes
