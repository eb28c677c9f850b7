"""FedRep (Collins et al. 2021): personal heads trained first, then the body.

Each round a client first trains its head (the `heads` tree, which the
tuning plan must make personal) for `fedrep_head_steps` steps with the
shared body fixed, then the shared body with the head fixed. FedPer is the
same plan (personal heads) trained jointly: plain `fedavg`.
"""
from fedxr_jax.algorithms import base
from fedxr_jax.errors import ConfigError

HEAD_ROLES = ('heads',)


def fedrep(config) -> base.Algorithm:
  head_steps = int(config.algorithm.fedrep_head_steps)
  if not 0 < head_steps < config.local_steps:
    raise ConfigError(f'algorithm.fedrep_head_steps={head_steps} must be in '
                      f'[1, local_steps={config.local_steps})')
  if config.plan.get('heads') != 'personal':
    raise ConfigError("algorithm.name=fedrep needs plan.heads='personal' "
                      '(personal heads, shared body)')

  def role_schedule(step, roles):
    head_phase = step < head_steps
    return {r: head_phase if r in HEAD_ROLES else ~head_phase for r in roles}

  return base.plain('fedrep')._replace(role_schedule=role_schedule)
