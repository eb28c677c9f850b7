"""What an entry's model is, as OGB and MLPerf ask: parameter counts, FLOPs, checkpoint.

  facts(config) -> {params_total, params_trainable, params_uploaded_per_round,
                    upload_bytes_per_round, flops_per_step, flops_per_example,
                    roles: {role: {params, mode}}, personal_training}
  checkpoint(path) -> {path, sha256}

Counted from the built experiment (`compose.experiment.build`): its plan
{role: frozen | shared | personal} and the parameter trees' shapes
(`jax.eval_shape` of the problem's init). Trainable: the shared and personal
trees (a client trains both); uploaded per round: a client's shared trees,
at float32 before any compression (what `comm/uplink_bits` then measures).
FLOPs: XLA's cost analysis of one local step of the trained trees and of
one example's forward (`experiment.measure_device_costs`). personal_training:
whether some parameters train on a user's data and never leave the device (a
personal tree of the plan; a personal model beside the global one, Ditto's;
fine-tuning before evaluation): what a client-level DP guarantee on the uploads
does not cover.
"""
import copy
import hashlib
import math
import os
from typing import Mapping

BYTES_PER_PARAM = 4   # float32


def count(plan: Mapping[str, str], sizes: Mapping[str, int], flops_per_step: float,
          flops_per_example: float, personal_model: bool = False) -> dict:
  """The facts of a plan {role: mode} and tree sizes {role: parameters} (pure).

  A tree the plan does not name is frozen (the experiment's rule). personal_model:
  the algorithm trains a model on the device beside what it uploads.
  """
  modes = {r: plan.get(r, 'frozen') for r in sizes}
  trainable = sum(n for r, n in sizes.items() if modes[r] != 'frozen')
  uploaded = sum(n for r, n in sizes.items() if modes[r] == 'shared')
  return {'params_total': int(sum(sizes.values())), 'params_trainable': int(trainable),
          'params_uploaded_per_round': int(uploaded),
          'upload_bytes_per_round': int(uploaded * BYTES_PER_PARAM),
          'flops_per_step': float(flops_per_step),
          'flops_per_example': float(flops_per_example),
          'roles': {r: {'params': int(sizes[r]), 'mode': modes[r]} for r in sorted(sizes)},
          'personal_training': bool(personal_model or 'personal' in modes.values())}


def personal_training(facts: Mapping) -> bool:
  """An entry's personal_training fact (older entries: a personal tree in its plan)."""
  if 'personal_training' in facts:
    return bool(facts['personal_training'])
  return any(r.get('mode') == 'personal' for r in facts.get('roles', {}).values())


def facts(config) -> dict:
  """The model facts of a run config (builds the experiment: seconds)."""
  import jax   # pylint: disable=g-import-not-at-top
  from fedxr_jax.compose import experiment   # pylint: disable=g-import-not-at-top
  # No chunk measurement: the facts count one step and one example, not how a cohort
  # is split into calls (measuring 'auto' traces a client chunk: seconds a build).
  config = copy.deepcopy(config)
  config.chunk_size = 0
  exp = experiment.build(config)
  shapes = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  sizes = {role: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
           for role, tree in shapes.items()}
  setup = exp.federation.setup
  algo = getattr(setup, 'round', setup).stage.algorithm   # an async setup wraps the round's
  on_device = any(f is not None for f in (algo.personalize, algo.eval_model, algo.eval_adapt))
  return count(exp.federation.plan, sizes, exp.costs.flops_per_step,
               exp.costs.flops_per_forward_example, personal_model=on_device)


def directory_sha256(path: str) -> str:
  """SHA-256 over a directory's regular files: each relative path (sorted), a
  NUL, and the file's own SHA-256, one per line. Symlinks are not followed."""
  digest = hashlib.sha256()
  entries = []
  for root, dirs, names in os.walk(path):
    dirs.sort()
    for name in names:
      full = os.path.join(root, name)
      if os.path.isfile(full) and not os.path.islink(full):
        entries.append(os.path.relpath(full, path))
  for rel in sorted(entries):
    h = hashlib.sha256()
    with open(os.path.join(path, rel), 'rb') as f:
      for chunk in iter(lambda: f.read(2**20), b''):
        h.update(chunk)
    digest.update(rel.replace(os.sep, '/').encode() + b'\0' + h.hexdigest().encode() + b'\n')
  return digest.hexdigest()


def checkpoint(path: str) -> dict:
  """{path, sha256} of `config.model.pretrained` ('' and null: a random base)."""
  if not path:
    return {'path': '', 'sha256': None}
  from fedxr_jax.compose import pretrained   # pylint: disable=g-import-not-at-top
  return {'path': str(path), 'sha256': directory_sha256(pretrained.resolve(path))}
