"""External checkpoints as M3T's `base` and `encoders` trees (`fedxr-models import`).

  hf-vit   Hugging Face ViT safetensors            (importers/hf_vit.py)
  hf-ast   Hugging Face Audio Spectrogram Transformer safetensors (importers/hf_ast.py)
  npz      big_vision / vision_transformer ViT npz (importers/big_vision.py)

`read(format, path)` -> `Imported`: the trees (float32 numpy, full param paths),
the model.m3t settings the checkpoint is (`overrides` prints them as flags),
its modality's input layout and notes on what was folded, ignored or assumed.
Every tensor is checked against the shapes of that M3T; a missing, extra,
misshaped or non-floating tensor, or a truncated file, is one line naming it.
`compose.pretrained.save_imported` writes the run's pretrained directory.
"""
from fedxr_jax.core import registry
from fedxr_jax.models.importers import big_vision
from fedxr_jax.models.importers import hf_ast
from fedxr_jax.models.importers import hf_vit
from fedxr_jax.models.importers.common import Imported, config_values, overrides

FORMATS = {hf_vit.FORMAT: hf_vit, hf_ast.FORMAT: hf_ast, big_vision.FORMAT: big_vision}


def module_for(fmt: str):
  """The importer module of source layout `fmt`, or one line naming the known ones."""
  return registry.pick(FORMATS, fmt, '--format')


def read(fmt: str, path: str, modality: str = '') -> Imported:
  """The checkpoint at `path` in source layout `fmt` as M3T trees (modality: its encoder's
  name in the run; '' = the format's: vision, or audio for hf-ast)."""
  module = module_for(fmt)
  return module.read(path, modality or module.MODALITY)


__all__ = ['FORMATS', 'Imported', 'config_values', 'module_for', 'overrides', 'read']
