"""FedRep (Collins et al. 2021): personal heads trained first, then the body.

Each round a client first trains its head (the `heads` tree, which the
tuning plan must make personal) for `head_steps` steps with the shared body
fixed, then the shared body with the head fixed. FedPer is the same plan
(personal heads) trained jointly: the `fedper` preset of plain FedAvg.
"""
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError

def fedrep(facts, *, head_steps: int = 4, head_roles: tuple = ('heads',)
           ) -> algorithm_lib.Algorithm:
  """head_roles: the parameter trees that are the heads (the M3T model's `heads`)."""
  if not 0 < head_steps < facts.local_steps:
    raise ConfigError(f'algorithm.fedrep.head_steps={head_steps} must be in '
                      f'[1, local_steps={facts.local_steps})')
  for role in head_roles:
    if facts.plan.get(role) != 'personal':
      raise ConfigError(f'algorithm.name=fedrep needs personal heads: add '
                        f'--config.plan.{role}=personal')

  def role_schedule(step, roles):
    head_phase = step < head_steps
    return {r: head_phase if r in head_roles else ~head_phase for r in roles}

  return algorithm_lib.plain('fedrep', role_schedule=role_schedule)
