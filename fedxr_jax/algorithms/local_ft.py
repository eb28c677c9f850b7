"""Local fine-tuning after FL ("FedAvg+FT"): FedAvg, then each client tunes
the global model for `steps` local steps on its own training data before it
is evaluated (new users too)."""
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError


def finetune(ctx, steps: int):
  """(params, stats): `steps` local steps of the client from ctx.trained."""
  return ctx.train(ctx.trained, steps=steps)


def check_steps(name: str, steps: int, local_steps: int) -> None:
  if not 1 <= steps <= local_steps:
    raise ConfigError(f'algorithm.{name}={steps} must be in [1, local_steps={local_steps}]')


def local_ft(facts, *, steps: int = 4) -> algorithm_lib.Algorithm:
  check_steps('local_ft.steps', steps, facts.local_steps)

  def eval_adapt(ctx, client_state):
    del client_state
    params, stats = finetune(ctx, steps)
    return params, algorithm_lib.ClientCost(train_steps=stats['steps'])

  return algorithm_lib.plain('local_ft', eval_adapt=eval_adapt)
