"""Models by name (`config.model.name`), each built from its own block.

`make(name, block, spec)` -> `ModelDef`: what the rest of the package may
know of a model. The problem adapter (`compose.xr_problem`) takes task
losses, masks and evaluation statistics from the data and asks the
ModelDef for everything else: parameters by role, outputs and routing,
the module weights of its experts, its size. A new backbone is one file
with a `make(spec, **settings)` plus a line here; its config block
(`config.model.<name>`) is read from that factory's keyword defaults.

  spec: Spec(modalities {name: (input shape, token shape[, stride])},
             tasks {name: output size}) -- what the data asks of the model.
"""
from fedxr_jax.core import registry
from fedxr_jax.models.interface import ModelDef, Spec
from fedxr_jax.models import m3t
from fedxr_jax.models import mlp

MODELS = {'m3t': m3t.make, 'mlp': mlp.make}


def check_name(name: str) -> None:
  registry.pick(MODELS, name, 'model.name')


def make(name: str, block, spec: Spec, **context) -> ModelDef:
  """The model `name` from its block (`config.model.<name>`) for the data's `spec`."""
  factory = registry.pick(MODELS, name, 'model.name')
  return registry.make(factory, block, f'model.{name}', spec, **context)
