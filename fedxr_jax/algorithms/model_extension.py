"""An algorithm's own modules beside a model's, as a `ModelDef` of the same interface.

Some methods add modules to the model (a drift gate, a new task's head
adapter, modality-task pair modules) or change its paths (one pass per
task). They do it here, through the `ModelDef` interface only (`init`,
`apply`, `features`, `role_of`, `module_weights`), so the problem adapter and
every stage of the round see an ordinary model: the new parameters sit in
one top-level entry of the param dict, inside an existing role's tree (so
the tuning plan says whether they are trained and shared), with module
weights of their own. `algorithms.registry.EXTENSIONS` says which algorithm
extends the model and how; `compose.experiment.make_model` applies it.
"""
from typing import Callable, Optional

import jax

from fedxr_jax.models.interface import ModelDef

EXTENSION_STREAM = 0xE7E   # the new modules' init key: fold_in(the model's key, this)


def _split(params: dict, name: str) -> tuple:
  return {k: v for k, v in params.items() if k != name}, params[name]


def with_modules(model: ModelDef, name: str, role: str, *, init: Callable,
                 apply: Callable, weights: Callable,
                 features: Optional[Callable] = None) -> ModelDef:
  """`model` with modules under `params[name]`, in the tree of `role`.

  init(key, base params) -> the modules' params;
  apply(base apply, base params, own params, x, modality_mask) -> (outputs, routing);
  weights(counts) -> the modules' module weights (a prefix tree of their params);
  features(base features, base params, own params, x, modality_mask) -> token
  features (default: the base model's, without the modules).
  """

  def init_all(key):
    base = model.init(key)
    return {**base, name: init(jax.random.fold_in(key, EXTENSION_STREAM), base)}

  def apply_all(params, x, mask):
    base, own = _split(params, name)
    return apply(model.apply, base, own, x, mask)

  def features_all(params, x, mask):
    base, own = _split(params, name)
    if features is None:
      return model.features(base, x, mask)
    return features(model.features, base, own, x, mask)

  def role_of(path):
    return role if str(path[0]) == name else model.role_of(path)

  def module_weights(counts):
    out = dict(model.module_weights(counts))
    held = out.get(role)
    if held is None:
      out[role] = {name: weights(counts)}
    elif isinstance(held, dict):
      out[role] = {**held, name: weights(counts)}
    # else: one weight for the whole role's tree already covers the new modules.
    return out

  # apply_features: the base model's would skip the new modules.
  return model._replace(init=init_all, apply=apply_all, features=features_all,
                        role_of=role_of, module_weights=module_weights,
                        apply_features=None)


def with_paths(model: ModelDef, apply: Callable,
               module_weights: Optional[Callable] = None) -> ModelDef:
  """`model` whose outputs come from `apply(base apply, params, x, modality_mask)`
  (no new parameters), with module weights `module_weights(base weights, counts)`."""
  weights = model.module_weights if module_weights is None else (
      lambda counts: module_weights(model.module_weights(counts), counts))
  return model._replace(apply=lambda params, x, mask: apply(model.apply, params, x, mask),
                        module_weights=weights, apply_features=None)
