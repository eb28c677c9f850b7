r"""fedxr-models: the model family, and pretrained weights from the field's formats.

  fedxr-models list
  fedxr-models import --format=hf-vit --checkpoint=vit/model.safetensors --out=runs/vit_b16
  fedxr-train --config.model.pretrained=runs/vit_b16 <the overrides import prints>

`list` prints every registered model (and each M3T size) with its parameter
count on the embedded default's data, in total and per parameter tree.
`import` converts an external checkpoint into a pretrained directory
(`base` and the encoder of its modality, each array with its sha256):
  hf-vit  Hugging Face ViT safetensors (config.json beside it is read)
  hf-ast  Hugging Face Audio Spectrogram Transformer safetensors
  npz     big_vision / vision_transformer ViT arrays
It prints the --config.model.* overrides a run needs and the input its
encoder reads. Bad input is one line on stderr and exit code 2.
"""
import sys

from absl import flags

from fedxr_jax.cli import common
from fedxr_jax.errors import ConfigError, FedXRError

PROGRAM = 'fedxr-models'
COMMANDS = ('list', 'import')
_FORMAT = flags.DEFINE_string('format', None, 'import: the checkpoint\'s layout: hf-vit | '
                              'hf-ast | npz.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'import: the checkpoint file.')
_OUT = flags.DEFINE_string('out', None, 'import: the pretrained directory to write.')
_MODALITY = flags.DEFINE_string('modality', '', "import: the run's modality its encoder "
                                'reads (default: vision; audio for hf-ast).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'import: replace a non-empty --out.')

# Per-tree columns of `list`; every PEFT tree counts in one.
_PEFT = ('lora_a', 'lora_b', 'lora_residual', 'prompts', 'user_prompts', 'adapters')


def family(config) -> list:
  """[{model, size, dims, total, base, encoders, heads, peft, experts}] on `config`'s data:
  every registered model, an M3T at each named size (shapes only, via eval_shape)."""
  import jax   # pylint: disable=import-outside-toplevel
  import numpy as np   # pylint: disable=import-outside-toplevel
  from flax import traverse_util   # pylint: disable=import-outside-toplevel
  from fedxr_jax.data import synthetic   # pylint: disable=import-outside-toplevel
  from fedxr_jax.models import m3t   # pylint: disable=import-outside-toplevel
  from fedxr_jax.models import registry   # pylint: disable=import-outside-toplevel
  spec = synthetic.spec_from_config(config.data, config.local_steps)
  model_spec = registry.Spec(spec.model_modalities(), dict(zip(spec.tasks, spec.num_classes)))
  rows = []
  for name in registry.MODELS:
    block = config.model[name].to_dict()
    for size in (m3t.SIZES if 'size' in block else (None,)):
      settings = {**block, **({'size': size} if size else {})}
      model = registry.make(name, settings, model_spec, lora_residual=False, dtype='float32')
      shapes = jax.eval_shape(model.init, jax.random.key(0))
      counts = {}
      for path, x in traverse_util.flatten_dict(shapes).items():
        role = model.role_of(path)
        role = 'peft' if role in _PEFT else role
        counts[role] = counts.get(role, 0) + int(np.prod(x.shape))
      rows.append({'model': name, 'size': size or '-',
                   'dims': f'{model.width}/{model.depth}/{model.num_heads}',
                   'total': sum(counts.values()), **counts})
  return rows


def print_family(rows) -> None:
  columns = ('total', 'base', 'encoders', 'heads', 'peft', 'experts')
  shown = [c for c in columns if any(c in r for r in rows)]
  print('parameters on the embedded default\'s data (fedxr_jax/configs/default.py); '
        'dims = width/depth/heads; peft = LoRA + prompts (+ adapters)')
  print(f"{'model':<6} {'size':<6} {'dims':<10}" + ''.join(f'{c:>13}' for c in shown))
  for r in rows:
    print(f"{r['model']:<6} {r['size']:<6} {r['dims']:<10}"
          + ''.join(f'{r.get(c, 0):>13,}' for c in shown))


def import_checkpoint(fmt: str, checkpoint: str, out: str, modality: str = '',
                      overwrite: bool = False) -> dict:
  """Converts `checkpoint` into the pretrained directory `out`; its metadata."""
  from fedxr_jax.compose import pretrained   # pylint: disable=import-outside-toplevel
  from fedxr_jax.configs import default   # pylint: disable=import-outside-toplevel
  from fedxr_jax.models import importers   # pylint: disable=import-outside-toplevel
  importers.module_for(fmt)   # a bad --format before any file is touched
  pretrained.check_output_dir(out, overwrite)
  imported = importers.read(fmt, checkpoint, modality)
  return pretrained.save_imported(out, imported, default.get_config(), overwrite=overwrite)


def print_import(meta: dict, out: str) -> None:
  source, inputs = meta['source'], meta['roles']['encoders']['inputs']
  arch = ', '.join(f'{k}={v}' for k, v in source['architecture'].items())
  print(f"imported {source['format']} {source['file']} (sha256 {source['sha256'][:16]}...): "
        f'{arch}')
  for note in meta['notes']:
    print(f'  - {note}')
  for name, info in inputs.items():
    stride = (f", stride {tuple(info['stride'])}" if info['stride'] != info['token_shape']
              else '')
    print(f"its {name} encoder reads {tuple(info['shape'])} inputs in "
          f"{tuple(info['token_shape'])} tokens{stride}: {info['about']}; the run's data "
          f'must give the same {name} input')
  print(f'saved to {out}; start a run from it with')
  print(f"  fedxr-train --config.model.pretrained={out} {' '.join(meta['overrides'])}")


def main(argv):
  command = argv[1] if len(argv) > 1 else ''
  if command not in COMMANDS or len(argv) > 2:
    common.fail(PROGRAM, f'give one command, {" or ".join(COMMANDS)} (got {argv[1:]}); '
                'see --help')
  common.quiet_logs()
  try:
    if command == 'list':
      from fedxr_jax.configs import default   # pylint: disable=import-outside-toplevel
      print_family(family(default.get_config()))
      return
    missing = [f'--{f.name}' for f in (_FORMAT, _CHECKPOINT, _OUT) if not f.value]
    if missing:
      raise ConfigError(f'import needs {", ".join(missing)}')
    meta = import_checkpoint(_FORMAT.value, _CHECKPOINT.value, _OUT.value, _MODALITY.value,
                             _OVERWRITE.value)
  except FedXRError as e:
    common.fail(PROGRAM, str(e))
  except OSError as e:
    common.fail(PROGRAM, f'{e.filename or _OUT.value}: {e.strerror or e}')
  print_import(meta, _OUT.value)


def entry():
  common.entry(PROGRAM, __doc__, __name__, main)


if __name__ == '__main__':
  entry()
