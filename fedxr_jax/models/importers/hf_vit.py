"""hf-vit: a Hugging Face ViT (`ViTModel`, `ViTForImageClassification`) safetensors file.

  embeddings.cls_token [1,1,D] + position_embeddings[0]    -> backbone/cls
  embeddings.position_embeddings [1,1+N,D] [1:]            -> encoders/vision/position [N,D]
  embeddings.patch_embeddings.projection.weight [D,C,p,p]  -> encoders/vision/embed/kernel
      (transposed to [p,p,C,D], flattened to [p*p*C, D])      [p*p*C, D]
  embeddings.patch_embeddings.projection.bias              -> encoders/vision/embed/bias
  (none)                                                   -> encoders/absent/vision = 0
  encoder.layer.N.*, layernorm.*                           -> backbone (hf_encoder)
  ignored: pooler.*, classifier.*, embeddings.mask_token

M3T's CLS takes no position embedding, so CLS's is folded into it (exact).
HF reads pixel_values [C, H, W]; M3T an image [H, W, C] cut into (p, p, C)
patches in the same row-major order, so the conv is the linear `embed`.
Keys may carry a 'vit.' prefix. The architecture comes from the tensors'
shapes and, where present, HF's config.json beside the file.
"""
import math

from fedxr_jax.errors import CheckpointError
from fedxr_jax.models.importers import common
from fedxr_jax.models.importers import files
from fedxr_jax.models.importers import hf_encoder

FORMAT = 'hf-vit'
MODALITY = 'vision'
_IGNORED = ('pooler.dense.weight', 'pooler.dense.bias', 'embeddings.mask_token')


def image_layout(tensors: common.Tensors, prefix: str, config: dict, width: int) -> tuple:
  """((H, W, C), (ph, pw, C)) of the images the checkpoint embeds."""
  proj = f'{prefix}embeddings.patch_embeddings.projection.weight'
  shape = tensors.shape(proj)
  if len(shape) != 4:
    raise CheckpointError(f'{tensors.path}: tensor {proj!r} has shape {list(shape)}, '
                          'expected [hidden, channels, patch, patch]')
  channels = int(config.get('num_channels', shape[1]))
  ph, pw = hf_encoder.pair(config.get('patch_size', shape[2:]))
  pos = f'{prefix}embeddings.position_embeddings'
  n = tensors.shape(pos)[1] - 1 if len(tensors.shape(pos)) == 3 else 0
  if 'image_size' in config:
    h, w = hf_encoder.pair(config['image_size'])
  else:
    side = math.isqrt(max(n, 0))
    if side * side != n or n < 1:
      raise CheckpointError(f'{tensors.path}: tensor {pos!r} holds {n} patch positions, '
                            "not a square grid: put the model's config.json (image_size) "
                            'beside the checkpoint')
    h, w = side * ph, side * pw
  if h % ph or w % pw:
    raise CheckpointError(f'image_size {h}x{w} is not a whole number of {ph}x{pw} patches')
  return (h, w, channels), (ph, pw, channels)


def read(path: str, modality: str = MODALITY) -> common.Imported:
  tensors = common.Tensors(files.read_safetensors(path), path, FORMAT)
  config = files.read_json_beside(path)
  prefix = hf_encoder.prefix_of(tensors, 'embeddings.cls_token')
  width = int(config.get('hidden_size', tensors.shape(prefix + 'embeddings.cls_token')[-1]))
  shape, token = image_layout(tensors, prefix, config, width)
  settings = {**hf_encoder.encoder_settings(tensors, prefix, config, width), 'num_registers': 0}
  n = (shape[0] // token[0]) * (shape[1] // token[1])
  layout = (shape, token)
  tensors.context = (f'a ViT of {hf_encoder.words(settings)}, '
                     f'{common.grid_words(shape, token)}')
  e = prefix + 'embeddings.'
  pos = (e + 'position_embeddings', (1, 1 + n, width))
  proj = e + 'patch_embeddings.projection.'
  entries = [
      common.Entry('backbone/cls', ((e + 'cls_token', (1, 1, width)), pos),
                   lambda cls, p: cls[0, 0] + p[0, 0]),
      common.Entry(f'encoders/{modality}/position', (pos,), lambda p: p[0, 1:]),
      common.Entry(f'encoders/{modality}/embed/kernel',
                   ((proj + 'weight', (width, token[2], token[0], token[1])),),
                   lambda w: w.transpose(2, 3, 1, 0).reshape(-1, width)),
      common.Entry(f'encoders/{modality}/embed/bias', ((proj + 'bias', (width,)),),
                   lambda b: b),
      common.zeros(f'encoders/absent/{modality}', (width,)),
      *hf_encoder.layers(prefix, settings, qkv_bias=config.get('qkv_bias', True)),
  ]
  ignored = lambda name: (name.startswith('classifier.')
                          or (name.startswith(prefix) and name[len(prefix):] in _IGNORED))
  notes = [
      'backbone/cls = cls_token + position_embeddings[0] (M3T adds no position to CLS)',
      f'patch conv [D, C, p, p] -> linear embed over ({token[0]}, {token[1]}, {token[2]})-'
      f'flattened patches of an [H, W, C] image (HF reads [C, H, W])',
      f'encoders/absent/{modality} has no ViT counterpart: zeros',
      f'inputs: {shape[0]}x{shape[1]}x{shape[2]} images, normalized as the checkpoint\'s '
      'image processor does (mean/std in preprocessor_config.json)',
  ]
  if 'num_attention_heads' not in config:
    notes.append(f"no config.json: {settings['num_heads']} heads assumed (64-wide)")
  architecture = {'hidden_size': width, 'num_hidden_layers': settings['depth'],
                  'num_attention_heads': settings['num_heads'],
                  'intermediate_size': settings['mlp_width'], 'image_size': list(shape[:2]),
                  'patch_size': list(token[:2]), 'num_channels': shape[2],
                  'layer_norm_eps': settings['ln_eps'],
                  'hidden_act': config.get('hidden_act', 'gelu')}
  return common.finish(tensors, entries, fmt=FORMAT, path=path, settings=settings,
                       modality=modality, layout=layout, architecture=architecture,
                       ignored=ignored, notes=notes)
