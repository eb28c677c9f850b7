"""Tuning plans: what happens to each parameter tree (role) during federation."""
from typing import Mapping

from fedxr_jax.errors import ConfigError

FROZEN = 'frozen'      # one shared copy, never trained, never sent
SHARED = 'shared'      # trained on clients and aggregated by the server
PERSONAL = 'personal'  # trained on clients, never leaves the client
MODES = (FROZEN, SHARED, PERSONAL)


def validate_plan(plan: Mapping[str, str], roles) -> dict:
  """Checks a {role: mode} plan against the roles a model has."""
  plan = dict(plan)
  unknown = sorted(set(plan) - set(roles))
  if unknown:
    raise ConfigError(f'tuning plan names unknown parameter tree(s) {unknown}; '
                      f'this model has {sorted(roles)}')
  for role, mode in plan.items():
    if mode not in MODES:
      raise ConfigError(f'tuning plan: {role}={mode!r} is not one of {MODES}')
  missing = sorted(set(roles) - set(plan))
  if missing:
    raise ConfigError(f'tuning plan does not say what to do with {missing}')
  if not any(m != FROZEN for m in plan.values()):
    raise ConfigError('tuning plan trains nothing: every tree is frozen')
  return plan


def roles_with(plan: Mapping[str, str], mode: str) -> tuple:
  return tuple(sorted(r for r, m in plan.items() if m == mode))
