"""The pretrained-backbone checkpoint: its format, and loading it into a run.

A pretrained directory (`fedxr-pretrain`, `fedxr-models import`) holds
  params/            an orbax composite checkpoint, one item per pretrained
                     role tree (`base`, `encoders`, `heads`, `experts`...),
                     one zarr array per parameter (no OCDBT: a damaged file
                     is one array's);
  pretrained.json    written last: format, per-role architecture and a
                     fingerprint, each array's shape, dtype and sha256, and
                     the writer's settings (pretraining results, or the
                     imported file and its sha256).
A run with `config.model.pretrained=DIR` starts the trees named in
`config.model.pretrained_roles` from DIR and every other tree from its seed.
Every array is checked against its digest before a run uses it: a flipped
byte on disk is refused in one line naming the role and array, not trained
on. An imported role may be partial (`encoders` of one modality): its arrays
replace those of the run's tree, the rest start from the seed.
"""
import copy
import hashlib
import json
import os
from typing import Callable, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import CheckpointError, ConfigError
from fedxr_jax.models import importers
from fedxr_jax.models import m3t

FORMAT = 'fedxr-pretrained/2'
# Formats this code no longer loads, and why.
_RETIRED = {'fedxr-pretrained/1': 'it carries no per-array sha256 digests, so damage on '
                                  'disk cannot be told from weights'}
METADATA_FILE = 'pretrained.json'
PARAMS_DIR = 'params'
# The PEFT trees, learned federatedly, are not pretrained: identity at init
# (LoRA B = 0, adapters' up-projection = 0, LoRA residual = 0) or extra
# tokens (prompts). Every other tree of the model is.
PEFT_ROLES = ('lora', 'lora_a', 'lora_b', 'lora_residual', 'prompts',
              'user_prompts', 'adapters')
# Keys of the model's block that may differ between pretraining and the
# federated run: they shape only PEFT trees or weight a loss term.
FREE_KEYS = ('num_prompts', 'num_user_prompts', 'lora_rank', 'lora_alpha',
             'lora_targets', 'adapter_dim', 'moe_balance',
             # The module library and the behaviour signature (issue 23, S3): trees and
             # tokens of their own, beside the base.
             'library_size', 'library_dim', 'library_select', 'signature_tokens')
DEFAULT_ROLES = ('base', 'encoders')
# `builtin:NAME` names a checkpoint shipped inside the package (fedxr_jax/checkpoints/NAME).
BUILTIN_PREFIX = 'builtin:'
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'checkpoints')


def builtin_names() -> tuple:
  if not os.path.isdir(BUILTIN_DIR):
    return ()
  return tuple(sorted(n for n in os.listdir(BUILTIN_DIR)
                      if os.path.isfile(os.path.join(BUILTIN_DIR, n, METADATA_FILE))))


def resolve(path: str) -> str:
  """The directory a `model.pretrained` value names: `builtin:NAME` or a path."""
  path = str(path)
  if not path.startswith(BUILTIN_PREFIX):
    return path
  name = path[len(BUILTIN_PREFIX):]
  if name not in builtin_names():
    raise ConfigError(f'model.pretrained={path!r}: no such shipped checkpoint; shipped: '
                      f"{', '.join(BUILTIN_PREFIX + n for n in builtin_names()) or 'none'}")
  return os.path.join(BUILTIN_DIR, name)


def pretrainable(roles) -> tuple:
  return tuple(r for r in roles if r not in PEFT_ROLES)


def role_architecture(config, role: str) -> dict:
  """The config values a pretrained role tree's shapes *and meaning* depend on.

  Shapes alone miss some (model.num_heads splits the same kernels
  differently), so every non-PEFT model key is compared by value; unknown
  new keys count too, erring on the side of refusing.
  """
  name = config.model.name
  arch = {'model.name': name, **{f'model.{name}.{k}': v
                                 for k, v in _block(config).items() if k not in FREE_KEYS}}
  if role == 'encoders':
    arch['data.modalities'] = config.data.modalities
  if role == 'heads':
    arch['data.tasks'] = config.data.tasks
  return json.loads(json.dumps(arch))   # tuples -> lists, as read back from JSON


def _block(config) -> dict:
  """The model's block, an M3T's named size resolved into its dims: size=base and
  explicit ViT-B dims are one architecture."""
  name = config.model.name
  block = config.model[name].to_dict()
  if name == 'm3t' and block.get('size') in m3t.SIZES:
    keys = ('width', 'depth', 'num_heads', 'mlp_width')
    block.update(zip(keys, m3t.dims(block.pop('size'), *(block.get(k, 0) for k in keys))))
  return block


def tree_signature(tree) -> dict:
  """{'path/to/leaf': [shape, dtype]} of a (possibly abstract) tree."""
  return {'/'.join(map(str, path)): [list(x.shape), str(x.dtype)]
          for path, x in traverse_util.flatten_dict(tree).items()}


def fingerprint(architecture: dict, signature: dict) -> str:
  blob = json.dumps({'architecture': architecture, 'tree': signature}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_roles(config, params: Mapping) -> dict:
  """{role: {architecture, fingerprint}} for the metadata of `params`."""
  out = {}
  for role in params:
    arch = role_architecture(config, role)
    out[role] = {'architecture': arch,
                 'fingerprint': fingerprint(arch, tree_signature(params[role]))}
  return out


def check_output_dir(directory: str, overwrite: bool) -> None:
  if os.path.isfile(directory):
    raise ConfigError(f'output directory {directory} is a file')
  if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
    raise ConfigError(f'output directory {directory} is not empty; choose a new '
                      'one or pass --overwrite')


def array_digest(x) -> str:
  """sha256 over an array's dtype, shape and raw (C-order) bytes."""
  x = np.ascontiguousarray(np.asarray(x))
  h = hashlib.sha256(f'{x.dtype.name}{list(x.shape)}'.encode())
  h.update(x.reshape(-1).view(np.uint8).data)
  return h.hexdigest()


def digests(tree) -> dict:
  """{'path/to/leaf': {shape, dtype, sha256}} of a tree of arrays."""
  return {'/'.join(map(str, path)): {'shape': list(np.shape(x)),
                                     'dtype': np.asarray(x).dtype.name,
                                     'sha256': array_digest(x)}
          for path, x in traverse_util.flatten_dict(jax.device_get(tree)).items()}


def weights_sha256(metadata: Mapping) -> str:
  """sha256 over every saved array's digest (role, path, dtype, shape, bytes): the
  weights' identity. Equal for two runs of one pretraining command, where the
  directory's hash is not (orbax writes timestamps, pretrained.json the wall time)."""
  lines = sorted(f"{role}/{path}\0{entry['sha256']}"
                 for role, info in metadata['roles'].items()
                 for path, entry in info['arrays'].items())
  return hashlib.sha256('\n'.join(lines).encode()).hexdigest()


def _handler(roles) -> ocp.CompositeCheckpointHandler:
  # One zarr array per parameter (no OCDBT): a damaged file names its array.
  return ocp.CompositeCheckpointHandler(
      **{r: ocp.StandardCheckpointHandler(use_ocdbt=False) for r in roles})


def save(directory: str, params: Mapping, metadata: dict,
         overwrite: bool = False) -> str:
  """Writes params {role: tree} and metadata (with `metadata['roles'][role]` from
  `describe_roles`), adding each array's digest; pretrained.json marks completion."""
  directory = os.path.abspath(directory)
  check_output_dir(directory, overwrite)
  params = {r: jax.tree.map(np.asarray, jax.device_get(t)) for r, t in params.items()}
  metadata = {**metadata, 'roles': {r: {**metadata['roles'][r], 'arrays': digests(params[r])}
                                    for r in params}}
  os.makedirs(directory, exist_ok=True)
  marker = os.path.join(directory, METADATA_FILE)
  if os.path.exists(marker):
    os.remove(marker)   # an interrupted overwrite must not look complete
  checkpointer = ocp.Checkpointer(_handler(params))
  checkpointer.save(
      os.path.join(directory, PARAMS_DIR), force=True,
      args=ocp.args.Composite(**{r: ocp.args.StandardSave(t)
                                 for r, t in params.items()}))
  checkpointer.close()
  tmp = marker + '.tmp'
  with open(tmp, 'w') as f:
    json.dump({'format': FORMAT, **metadata}, f, indent=2, sort_keys=True)
  os.replace(tmp, marker)
  return directory


def describe_imported(config, imported: importers.Imported) -> dict:
  """{role: {architecture, fingerprint[, partial, inputs]}} of an imported checkpoint.

  The base is the whole backbone, compared with a run's as any pretrained base;
  the encoders hold one modality's encoder and absent token (`partial`), checked
  array by array against the run's, with that modality's input layout.
  """
  base = role_architecture(config, 'base')
  layout = imported.layout
  inputs = {imported.modality: {'shape': list(layout[0]), 'token_shape': list(layout[1]),
                                'stride': list(layout[2] if len(layout) > 2 else layout[1]),
                                'about': imported.about}}
  encoders = {'model.name': config.model.name, 'inputs': inputs}
  return {
      'base': {'architecture': base,
               'fingerprint': fingerprint(base, tree_signature(imported.params['base']))},
      'encoders': {'architecture': encoders, 'partial': True, 'inputs': inputs,
                   'fingerprint': fingerprint(encoders,
                                              tree_signature(imported.params['encoders']))},
  }


def save_imported(directory: str, imported: importers.Imported, config,
                  overwrite: bool = False) -> dict:
  """Writes an imported checkpoint as a pretrained directory; returns its metadata.

  `config`: the run config the architecture is recorded against (the embedded
  default), its model.m3t set to what the checkpoint is.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.name = 'm3t'
  config.model.m3t.update(importers.config_values(imported.settings))
  metadata = {
      'roles': describe_imported(config, imported),
      'source': imported.source,
      'modality': imported.modality,
      'overrides': list(importers.overrides(imported.settings)),
      'notes': list(imported.notes),
      'model': {'m3t': importers.config_values(imported.settings)},
  }
  save(directory, imported.params, metadata, overwrite=overwrite)
  return read_metadata(directory)


def read_metadata(directory: str) -> dict:
  if not os.path.isdir(directory):
    raise ConfigError(f'model.pretrained={directory!r} does not exist; run fedxr-pretrain '
                      "or fedxr-models import first, or set it to '' for a random base")
  path = os.path.join(directory, METADATA_FILE)
  try:
    with open(path) as f:
      metadata = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f'{directory} is not a complete fedxr-pretrain output '
                          f'(no {METADATA_FILE}; was pretraining interrupted?)') from None
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{path} is corrupt ({type(e).__name__}: {e})') from None
  fmt = metadata.get('format') if isinstance(metadata, dict) else None
  if fmt in _RETIRED:
    raise CheckpointError(f'{directory} is a {fmt} checkpoint: {_RETIRED[fmt]}; re-create '
                          'it (fedxr-pretrain, or fedxr-models import)')
  if fmt != FORMAT:
    raise CheckpointError(f'{path} is not a {FORMAT} checkpoint')
  return metadata


def _saved_role(metadata: dict, role: str, where: str) -> dict:
  roles = metadata.get('roles')
  if not isinstance(roles, dict):
    raise CheckpointError(f'{where}/{METADATA_FILE} is corrupt (no roles)')
  saved = roles.get(role)
  if not isinstance(saved, dict):
    raise ConfigError(f'{where} holds no pretrained {role!r} tree (it has '
                      f'{sorted(roles)})')
  if not isinstance(saved.get('arrays'), dict):
    raise CheckpointError(f'{where}/{METADATA_FILE} is corrupt (no array digests for '
                          f'{role})')
  return saved


def check_compatible(metadata: dict, config, role: str, abstract_tree, where: str,
                     modalities: Optional[Mapping] = None) -> dict:
  """Refuses a saved role tree that does not fit this run's model; returns the
  saved arrays' {path: ShapeDtypeStruct} (`modalities`: the run's input layouts,
  for a mismatched patch grid in words)."""
  saved = _saved_role(metadata, role, where)
  if saved.get('partial'):
    return _check_partial(saved, config, role, abstract_tree, where, modalities)
  arch = role_architecture(config, role)
  if saved.get('fingerprint') != fingerprint(arch, tree_signature(abstract_tree)):
    old = saved.get('architecture', {})
    diff = [f'{k}={old.get(k)!r} there, {v!r} here' for k, v in arch.items()
            if old.get(k) != v]
    if diff:
      raise ConfigError(f'pretrained {role} in {where} does not fit this model: '
                        + '; '.join(diff))
    raise ConfigError(f'pretrained {role} in {where} does not fit this model: its '
                      'parameter tree differs (pretrained with another version of '
                      'the model code?); pretrain again')
  return {'/'.join(map(str, p)): jax.ShapeDtypeStruct(x.shape, x.dtype)
          for p, x in traverse_util.flatten_dict(abstract_tree).items()}


def _structs(arrays: Mapping, where: str) -> dict:
  try:
    return {p: jax.ShapeDtypeStruct(tuple(a['shape']), np.dtype(jax.numpy.dtype(a['dtype'])))
            for p, a in arrays.items()}
  except (KeyError, TypeError, ValueError):
    raise CheckpointError(f'{where}/{METADATA_FILE} is corrupt (a malformed array '
                          'entry)') from None


def _check_partial(saved: dict, config, role: str, abstract_tree, where: str,
                   modalities: Optional[Mapping]) -> dict:
  """A partial role (one imported encoder): every saved array must be the run's."""
  arch = saved.get('architecture', {})
  if arch.get('model.name') != config.model.name:
    raise ConfigError(f'pretrained {role} in {where} does not fit this model: '
                      f"model.name={arch.get('model.name')!r} there, {config.model.name!r} here")
  have = {'/'.join(map(str, p)): x for p, x in traverse_util.flatten_dict(abstract_tree).items()}
  structs = _fingerprinted_structs(saved, role, where)
  for modality, info in saved.get('inputs', {}).items():
    position = f'encoders/{modality}/position'
    if position not in have:
      raise ConfigError(f"pretrained {role} in {where} hold a {modality!r} encoder "
                        f"({info.get('about')}); this run has no {modality!r} modality: add "
                        f'it to data.modalities or leave {role!r} out of '
                        'model.pretrained_roles')
    _check_grid(modality, info, structs, have, (modalities or {}).get(modality))
  for path, x in structs.items():
    if path not in have or (have[path].shape, have[path].dtype) != (x.shape, x.dtype):
      here = (f'{list(have[path].shape)} {have[path].dtype}' if path in have
              else 'absent')
      raise ConfigError(f'pretrained {role} in {where} does not fit this model: {path} is '
                        f'{list(x.shape)} {x.dtype} there, {here} here')
  return structs


def _check_grid(modality: str, info: dict, saved: Mapping, have: Mapping, layout) -> None:
  """An imported encoder's tokens must be the run's: same count, same token size."""
  pos, kernel = f'encoders/{modality}/position', f'encoders/{modality}/embed/kernel'
  if pos not in saved or kernel not in saved:
    return
  n, k = saved[pos].shape[0], saved[kernel].shape[0]
  n_here, k_here = have[pos].shape[0], have[kernel].shape[0]
  if (n, k) == (n_here, k_here):
    return
  if layout is not None:
    shape, token = layout[0], layout[1]
    stride = layout[2] if len(layout) > 2 and tuple(layout[2]) != tuple(layout[1]) else None
    cut = token[:2] if len(shape) == 3 else token
    x = lambda v: 'x'.join(str(int(i)) for i in v)
    every = f' every {x(stride[:len(cut)])}' if stride else ''
    kind = 'patches' if len(shape) == 3 else 'blocks'
    here = f'{x(shape)} in {x(cut)} {kind}{every} ({n_here} tokens)'
  else:
    here = f'in {n_here} tokens of {k_here} values'
  about = info.get('about')
  if n != n_here:
    raise ConfigError(f"the checkpoint's {n} {modality} position embeddings ({about}) do not "
                      f"fit this run's {modality} input {here}")
  raise ConfigError(f"the checkpoint's {modality} encoder embeds tokens of {k} values "
                    f"({about}); this run's {modality} input {here} has tokens of {k_here}")


def _restore(directory: str, targets: Mapping) -> dict:
  """{role: {path: numpy array}} restored with orbax; a damaged file names its array."""
  params = os.path.join(directory, PARAMS_DIR)
  # Each array is read alone first: orbax's concurrent restore of a damaged file
  # fails without naming it (and leaves stray tracebacks from its event loop).
  for role, t in targets.items():
    bad = _unreadable(os.path.join(params, role), t)
    if bad:
      raise CheckpointError(f'pretrained checkpoint {directory} is corrupt: its {role} '
                            f'array {bad[0]} cannot be read ({bad[1]})')
  trees = {r: _unflat(t) for r, t in targets.items()}
  checkpointer = ocp.Checkpointer(_handler(trees))
  try:
    restored = checkpointer.restore(params, args=ocp.args.Composite(
        **{r: ocp.args.StandardRestore(t) for r, t in trees.items()}))
  except Exception as e:  # orbax raises many types for damaged files
    detail = ' '.join(str(e).split())[:300]
    raise CheckpointError(f'pretrained checkpoint {directory} is corrupt '
                          f'({type(e).__name__}: {detail})') from None
  finally:
    checkpointer.close()
  return {r: {'/'.join(map(str, p)): np.asarray(x)
              for p, x in traverse_util.flatten_dict(restored[r]).items()} for r in targets}


def _unreadable(role_dir: str, targets: Mapping):
  """(path, why) of the first array of a role that cannot be read on its own, or None."""
  import tensorstore as ts   # pylint: disable=import-outside-toplevel
  for path in sorted(targets):
    spec = {'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': os.path.join(
        role_dir, path.replace('/', '.'))}}
    try:
      ts.open(spec, open=True).result().read().result()
    except Exception as e:  # pylint: disable=broad-except
      return path, f'{type(e).__name__}: ' + ' '.join(str(e).split())[:200]
  return None


def verify(directory: str, role: str, arrays: Mapping, saved: Mapping) -> None:
  """Refuses arrays whose sha256 is not the one pretrained.json recorded."""
  for path, x in sorted(arrays.items()):
    entry = saved.get(path)
    if not isinstance(entry, dict) or 'sha256' not in entry:
      raise CheckpointError(f'pretrained checkpoint {directory} is corrupt: {METADATA_FILE} '
                            f'has no digest for its {role} array {path}')
    if array_digest(x) != entry['sha256']:
      raise CheckpointError(f'pretrained checkpoint {directory} is corrupt: its {role} array '
                            f'{path} does not match its sha256 digest (damaged on disk; '
                            're-create the directory or copy it again)')
  missing = sorted(set(saved) - set(arrays))
  if missing:
    raise CheckpointError(f'pretrained checkpoint {directory} is corrupt: its {role} array '
                          f'{missing[0]} is missing')


def load(directory: str, config, abstract_params: Mapping, roles: Sequence[str],
         modalities: Optional[Mapping] = None, upcycle: Optional[Callable] = None) -> dict:
  """{role: tree of numpy arrays} for `roles`, checked against this model and each
  array's digest (a partial role's tree holds only its saved arrays). `upcycle`
  (`ModelDef.upcycle`): a base saved without experts starts this model's base and
  experts (sparse upcycling), where it is this model's architecture but for them."""
  directory = os.path.abspath(resolve(directory))
  metadata = read_metadata(directory)
  upcycled = (upcycle is not None and 'base' in roles
              and _dense_twin(metadata, config, directory))
  # Upcycled, the other trees are checked as the dense model's (experts change none).
  others = _dense_config(config, metadata['roles']['base']['architecture']) if upcycled \
      else config
  targets = {r: (_fingerprinted_structs(_saved_role(metadata, r, directory), r, directory)
                 if upcycled and r == 'base'
                 else check_compatible(metadata, others, r, abstract_params[r], directory,
                                       modalities)) for r in roles}
  restored = _restore(directory, targets)
  for r in roles:
    if tree_signature(_unflat(restored[r])) != tree_signature(_unflat(targets[r])):
      raise CheckpointError(f'pretrained checkpoint {directory} is corrupt: its {r} '
                            'arrays do not match its metadata')
    verify(directory, r, restored[r], metadata['roles'][r]['arrays'])
  loaded = {r: _unflat(restored[r]) for r in roles}
  if upcycled:
    loaded.update(upcycle(loaded['base']))
    _check_upcycled(loaded, abstract_params, directory)
  return loaded


def _moe_keys(config) -> tuple:
  name = config.model.name
  return f'model.{name}.num_experts', f'model.{name}.expert_top_k'


def _dense_twin(metadata: dict, config, where: str) -> bool:
  """Whether the saved base is this run's architecture with no experts (and this run
  has experts)."""
  saved = _saved_role(metadata, 'base', where).get('architecture', {})
  arch = role_architecture(config, 'base')
  experts, top_k = _moe_keys(config)
  return (saved.get(experts) == 0 and (arch.get(experts) or 0) > 0
          and {**arch, experts: 0, top_k: saved.get(top_k)} == saved)


def _dense_config(config, saved_arch: Mapping):
  """`config` with the saved base's expert keys (no experts)."""
  dense = copy.deepcopy(config)
  for key in _moe_keys(config):
    dense.model[config.model.name][key.rsplit('.', 1)[1]] = saved_arch[key]
  return dense


def _fingerprinted_structs(saved: Mapping, role: str, where: str) -> dict:
  """A saved role's {path: ShapeDtypeStruct}, checked against its fingerprint."""
  structs = _structs(saved['arrays'], where)
  if saved.get('fingerprint') != fingerprint(saved.get('architecture', {}),
                                             tree_signature(_unflat(structs))):
    raise CheckpointError(f'{where}/{METADATA_FILE} is corrupt (its {role} arrays do not '
                          'match its fingerprint)')
  return structs


def _check_upcycled(loaded: Mapping, abstract_params: Mapping, where: str) -> None:
  """The upcycled base is this model's base, every upcycled expert array one of its."""
  if tree_signature(loaded['base']) != tree_signature(abstract_params['base']):
    raise ConfigError(f'pretrained base in {where} does not fit this model: its tree '
                      'without the MLPs is not this mixture-of-experts base')
  have = tree_signature(abstract_params['experts'])
  for path, sig in tree_signature(loaded['experts']).items():
    if have.get(path) != sig:
      raise ConfigError(f'pretrained base in {where} does not fit this model: experts/'
                        f'{path} would be {sig}, is {have.get(path)} here')


def _unflat(flat: Mapping) -> dict:
  return traverse_util.unflatten_dict({tuple(p.split('/')): x for p, x in flat.items()})


def overlay(tree: Mapping, loaded: Mapping) -> dict:
  """`tree` with the leaves `loaded` has (all of them, or a partial role's)."""
  flat = traverse_util.flatten_dict(tree)
  flat.update(traverse_util.flatten_dict(loaded))
  return traverse_util.unflatten_dict(flat)


def validate_roles(roles, model_roles) -> tuple:
  """model.pretrained_roles, checked against the trees this model has."""
  roles = tuple(dict.fromkeys(roles))
  choices = pretrainable(model_roles)
  if not roles:
    raise ConfigError('model.pretrained_roles is empty; name the trees to load, '
                      f'from {choices}')
  peft = [r for r in roles if r in PEFT_ROLES]
  if peft:
    raise ConfigError(f'model.pretrained_roles: {peft} are PEFT trees, never '
                      f'pretrained (they start fresh); choose from {choices}')
  missing = [r for r in roles if r not in choices]
  if missing:
    raise ConfigError(f'model.pretrained_roles: this model has no {missing} '
                      f'tree(s); choose from {choices}')
  return roles


def with_pretrained(problem: FederatedProblem, config,
                    modalities: Optional[Mapping] = None,
                    upcycle: Optional[Callable] = None) -> FederatedProblem:
  """`problem` whose init_params takes config.model.pretrained_roles from disk.

  Unchanged when config.model.pretrained is '' (or absent). `modalities`: the
  run's {name: (input shape, token shape[, stride])}, to say a mismatched
  imported patch grid in words. `upcycle`: the model's sparse upcycling (`load`).
  """
  directory = config.model.pretrained
  if not directory:
    return problem
  abstract = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  roles = validate_roles(config.model.pretrained_roles,
                         abstract.keys())
  loaded = load(directory, config, abstract, roles, modalities, upcycle)

  def init_params(key):
    # Loaded arrays enter the jitted init as constants (small trees).
    params = problem.init_params(key)
    return {**params, **{r: overlay(params[r], t) for r, t in loaded.items()}}

  return problem._replace(init_params=init_params)
