"""The pretrained-backbone checkpoint: its format, and loading it into a run.

A `fedxr-pretrain` output directory holds
  params/            an orbax composite checkpoint, one item per pretrained
                     role tree (`base`, `encoders`, `heads`, `experts`...);
  pretrained.json    written last: format, per-role architecture and a
                     fingerprint, the pretraining settings and results.
A run with `config.model.pretrained=DIR` starts the trees named in
`config.model.pretrained_roles` from DIR and every other tree from its seed.
"""
import hashlib
import json
import os
from typing import Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import CheckpointError, ConfigError

FORMAT = 'fedxr-pretrained/1'
METADATA_FILE = 'pretrained.json'
PARAMS_DIR = 'params'
# The PEFT trees, learned federatedly, are not pretrained: identity at init
# (LoRA B = 0, adapters' up-projection = 0, LoRA residual = 0) or extra
# tokens (prompts). Every other tree of the model is.
PEFT_ROLES = ('lora', 'lora_a', 'lora_b', 'lora_residual', 'prompts',
              'user_prompts', 'adapters')
# model.* keys that may differ between pretraining and the federated run:
# they shape only PEFT trees, weight a loss term, or say what to load.
FREE_KEYS = ('num_prompts', 'num_user_prompts', 'lora_rank', 'lora_alpha',
             'lora_targets', 'adapter_dim', 'moe_balance', 'pretrained',
             'pretrained_roles')
DEFAULT_ROLES = ('base', 'encoders')


def pretrainable(roles) -> tuple:
  return tuple(r for r in roles if r not in PEFT_ROLES)


def role_architecture(config, role: str) -> dict:
  """The config values a pretrained role tree's shapes *and meaning* depend on.

  Shapes alone miss some (model.num_heads splits the same kernels
  differently), so every non-PEFT model key is compared by value; unknown
  new keys count too, erring on the side of refusing.
  """
  arch = {f'model.{k}': v for k, v in config.model.to_dict().items()
          if k not in FREE_KEYS}
  if role == 'encoders':
    arch['data.modalities'] = config.data.modalities
  if role == 'heads':
    arch['data.tasks'] = config.data.tasks
  return json.loads(json.dumps(arch))   # tuples -> lists, as read back from JSON


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


def save(directory: str, params: Mapping, metadata: dict,
         overwrite: bool = False) -> str:
  """Writes params {role: tree} and metadata; pretrained.json marks completion."""
  directory = os.path.abspath(directory)
  check_output_dir(directory, overwrite)
  os.makedirs(directory, exist_ok=True)
  marker = os.path.join(directory, METADATA_FILE)
  if os.path.exists(marker):
    os.remove(marker)   # an interrupted overwrite must not look complete
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
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


def read_metadata(directory: str) -> dict:
  if not os.path.isdir(directory):
    raise ConfigError(f'model.pretrained={directory!r} does not exist; run '
                      'fedxr-pretrain first or set it to \'\' for a random base')
  path = os.path.join(directory, METADATA_FILE)
  try:
    with open(path) as f:
      metadata = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f'{directory} is not a complete fedxr-pretrain output '
                          f'(no {METADATA_FILE}; was pretraining interrupted?)') from None
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{path} is corrupt ({type(e).__name__}: {e})') from None
  if not isinstance(metadata, dict) or metadata.get('format') != FORMAT:
    raise CheckpointError(f'{path} is not a {FORMAT} checkpoint')
  return metadata


def check_compatible(metadata: dict, config, role: str, abstract_tree, where: str):
  """Refuses a saved role tree that does not fit this run's model."""
  roles = metadata.get('roles')
  if not isinstance(roles, dict):
    raise CheckpointError(f'{where}/{METADATA_FILE} is corrupt (no roles)')
  saved = roles.get(role)
  if not isinstance(saved, dict):
    raise ConfigError(f'{where} holds no pretrained {role!r} tree (it has '
                      f'{sorted(roles)})')
  arch = role_architecture(config, role)
  if saved.get('fingerprint') == fingerprint(arch, tree_signature(abstract_tree)):
    return
  old = saved.get('architecture', {})
  diff = [f'{k}={old.get(k)!r} there, {v!r} here' for k, v in arch.items()
          if old.get(k) != v]
  if diff:
    raise ConfigError(f'pretrained {role} in {where} does not fit this model: '
                      + '; '.join(diff))
  raise ConfigError(f'pretrained {role} in {where} does not fit this model: its '
                    'parameter tree differs (pretrained with another version of '
                    'the model code?); pretrain again')


def load(directory: str, config, abstract_params: Mapping,
         roles: Sequence[str]) -> dict:
  """{role: tree of numpy arrays} for `roles`, checked against this model."""
  directory = os.path.abspath(directory)
  metadata = read_metadata(directory)
  for role in roles:
    check_compatible(metadata, config, role, abstract_params[role], directory)
  targets = {r: jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_params[r])
             for r in roles}
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  try:
    restored = checkpointer.restore(
        os.path.join(directory, PARAMS_DIR),
        args=ocp.args.Composite(**{r: ocp.args.StandardRestore(t)
                                   for r, t in targets.items()}))
  except Exception as e:  # orbax raises many types for damaged files
    detail = ' '.join(str(e).split())[:300]
    raise CheckpointError(f'pretrained checkpoint {directory} is corrupt '
                          f'({type(e).__name__}: {detail})') from None
  finally:
    checkpointer.close()
  loaded = {r: jax.tree.map(np.asarray, restored[r]) for r in roles}
  for r in roles:
    if tree_signature(loaded[r]) != tree_signature(abstract_params[r]):
      raise CheckpointError(f'pretrained checkpoint {directory} is corrupt: its {r} '
                            'arrays do not match its metadata')
  return loaded


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


def with_pretrained(problem: FederatedProblem, config) -> FederatedProblem:
  """`problem` whose init_params takes config.model.pretrained_roles from disk.

  Unchanged when config.model.pretrained is '' (or absent).
  """
  directory = config.model.pretrained
  if not directory:
    return problem
  abstract = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  roles = validate_roles(config.model.pretrained_roles,
                         abstract.keys())
  loaded = load(directory, config, abstract, roles)

  def init_params(key):
    # Loaded arrays enter the jitted init as constants (small trees).
    return {**problem.init_params(key), **loaded}

  return problem._replace(init_params=init_params)
