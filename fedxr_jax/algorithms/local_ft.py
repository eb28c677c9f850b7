"""Local fine-tuning after FL ("FedAvg+FT"): FedAvg, then each client tunes
the global model for `finetune_steps` local steps on its own training data
before it is evaluated (new users too)."""
from fedxr_jax.algorithms import base
from fedxr_jax.errors import ConfigError


def finetune(ctx, steps: int):
  """`steps` local steps of the client from ctx.trained (its eval model)."""
  params, _ = ctx.train(ctx.trained, steps=steps)
  return params


def local_ft(config) -> base.Algorithm:
  steps = int(config.algorithm.finetune_steps)
  if not 1 <= steps <= config.local_steps:
    raise ConfigError(f'algorithm.finetune_steps={steps} must be in '
                      f'[1, local_steps={config.local_steps}]')

  def eval_adapt(ctx, client_state):
    del client_state
    return finetune(ctx, steps)

  return base.plain('local_ft')._replace(eval_adapt=eval_adapt)
