"""fedxr-models import: external checkpoints as M3T, checked against independent numpy models.

Each format: a small random checkpoint written in its source layout is imported
into a pretrained directory, loaded back, and M3T's features on random inputs
are compared with `numpy_reference` (float64, written from the source
architectures) token by token: max abs diff <= 1e-5 in float32. Then the
one-line refusals, a run started from an import, and the CLI.
"""
import ast
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from fedxr_jax.compose import experiment
from fedxr_jax.compose import pretrained
from fedxr_jax.configs import default as default_config
from fedxr_jax.configs import test as test_config
from fedxr_jax.core import trees
from fedxr_jax.data import synthetic
from fedxr_jax.errors import CheckpointError, ConfigError
from fedxr_jax.models import importers
from fedxr_jax.models import m3t
from fedxr_jax.models.interface import Spec
from helpers import assert_trees_equal
import numpy_reference as ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-5


# --- random checkpoints in each source layout ---------------------------------


def import_checkpoint(fmt, checkpoint, out, modality=''):
  """What `fedxr-models import` does (the CLI module's absl flags stay out of this process:
  another CLI module imported by a test in the same worker would define them twice)."""
  from fedxr_jax.compose import pretrained
  from fedxr_jax.configs import default
  from fedxr_jax.models import importers
  pretrained.check_output_dir(out, False)
  return pretrained.save_imported(out, importers.read(fmt, checkpoint, modality),
                                  default.get_config())

def _hf_encoder(rng, t, prefix, width, depth, mlp):
  def linear(name, d_in, d_out):
    t[name + '.weight'] = rng.normal(0, 1 / np.sqrt(d_in), (d_out, d_in))
    t[name + '.bias'] = rng.normal(0, 0.1, (d_out,))

  def norm(name):
    t[name + '.weight'] = 1 + rng.normal(0, 0.1, (width,))
    t[name + '.bias'] = rng.normal(0, 0.1, (width,))

  for i in range(depth):
    layer = f'{prefix}encoder.layer.{i}.'
    norm(layer + 'layernorm_before')
    for name in ('query', 'key', 'value'):
      linear(f'{layer}attention.attention.{name}', width, width)
    linear(layer + 'attention.output.dense', width, width)
    norm(layer + 'layernorm_after')
    linear(layer + 'intermediate.dense', width, mlp)
    linear(layer + 'output.dense', mlp, width)
  norm(prefix + 'layernorm')
  return t


def hf_vit_checkpoint(directory, *, width=16, depth=2, heads=2, mlp=24, channels=3, patch=4,
                      image=8, prefix='', classifier=False, config=True, seed=0):
  """A random HF ViT: model.safetensors (+ config.json); (path, tensors, config)."""
  rng = np.random.default_rng(seed)
  e, n = prefix + 'embeddings.', (image // patch) ** 2
  t = {e + 'cls_token': rng.normal(0, 0.5, (1, 1, width)),
       e + 'position_embeddings': rng.normal(0, 0.5, (1, 1 + n, width)),
       e + 'patch_embeddings.projection.weight': rng.normal(
           0, 1 / np.sqrt(patch * patch * channels), (width, channels, patch, patch)),
       e + 'patch_embeddings.projection.bias': rng.normal(0, 0.1, (width,))}
  _hf_encoder(rng, t, prefix, width, depth, mlp)
  if classifier:   # ViTForImageClassification's head: not imported
    t['classifier.weight'] = rng.normal(size=(5, width))
    t['classifier.bias'] = rng.normal(size=(5,))
  cfg = {'hidden_size': width, 'num_hidden_layers': depth, 'num_attention_heads': heads,
         'intermediate_size': mlp, 'image_size': image, 'patch_size': patch,
         'num_channels': channels, 'layer_norm_eps': 1e-12, 'hidden_act': 'gelu'}
  return _write(directory, t, cfg if config else None)


def hf_ast_checkpoint(directory, *, width=16, depth=2, heads=2, mlp=24, patch=8, frames=24,
                      bins=20, time_stride=5, frequency_stride=6, seed=0):
  """A random HF AST with overlapping patches; (path, tensors, config)."""
  rng = np.random.default_rng(seed)
  freq = (bins - patch) // frequency_stride + 1
  time = (frames - patch) // time_stride + 1
  e = 'audio_spectrogram_transformer.embeddings.'
  t = {e + 'cls_token': rng.normal(0, 0.5, (1, 1, width)),
       e + 'distillation_token': rng.normal(0, 0.5, (1, 1, width)),
       e + 'position_embeddings': rng.normal(0, 0.5, (1, 2 + freq * time, width)),
       e + 'patch_embeddings.projection.weight': rng.normal(0, 1 / patch, (width, 1, patch, patch)),
       e + 'patch_embeddings.projection.bias': rng.normal(0, 0.1, (width,)),
       # ASTForAudioClassification's head: not imported
       'classifier.layernorm.weight': np.ones(width), 'classifier.layernorm.bias': np.zeros(width),
       'classifier.dense.weight': rng.normal(size=(3, width)), 'classifier.dense.bias': np.zeros(3)}
  _hf_encoder(rng, t, 'audio_spectrogram_transformer.', width, depth, mlp)
  cfg = {'hidden_size': width, 'num_hidden_layers': depth, 'num_attention_heads': heads,
         'intermediate_size': mlp, 'patch_size': patch, 'max_length': frames,
         'num_mel_bins': bins, 'time_stride': time_stride, 'frequency_stride': frequency_stride,
         'layer_norm_eps': 1e-12, 'hidden_act': 'gelu'}
  return _write(directory, t, cfg)


def _write(directory, tensors, config):
  os.makedirs(directory, exist_ok=True)
  tensors = {k: np.asarray(v, np.float32) for k, v in tensors.items()}
  path = os.path.join(directory, 'model.safetensors')
  save_file(tensors, path)
  if config is not None:
    with open(os.path.join(directory, 'config.json'), 'w') as f:
      json.dump(config, f)
  return path, tensors, config


def big_vision_checkpoint(directory, *, width=16, depth=2, heads=4, mlp=24, channels=3,
                          patch=4, image=8, old_names=False, seed=0):
  """A random big_vision ViT as flat '/'-joined arrays in an npz; (path, arrays)."""
  rng = np.random.default_rng(seed)
  n, dh = (image // patch) ** 2, width // heads
  mha, ln2, mlp_name = (('MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3')
                        if old_names else
                        ('MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'))
  a = {'embedding/kernel': rng.normal(0, 1 / np.sqrt(patch * patch * channels),
                                      (patch, patch, channels, width)),
       'embedding/bias': rng.normal(0, 0.1, (width,)),
       'cls': rng.normal(0, 0.5, (1, 1, width)),
       'head/kernel': rng.normal(size=(width, 7)), 'head/bias': np.zeros(7)}
  if old_names:   # vision_transformer: [cls, patches] position embeddings in the encoder
    a['Transformer/posembed_input/pos_embedding'] = rng.normal(0, 0.5, (1, 1 + n, width))
    a['pre_logits/kernel'], a['pre_logits/bias'] = rng.normal(size=(width, width)), np.zeros(width)
  else:
    a['pos_embedding'] = rng.normal(0, 0.5, (1, n, width))
  for i in range(depth):
    b = f'Transformer/encoderblock_{i}/'
    for norm in ('LayerNorm_0', ln2):
      a[f'{b}{norm}/scale'] = 1 + rng.normal(0, 0.1, (width,))
      a[f'{b}{norm}/bias'] = rng.normal(0, 0.1, (width,))
    for name in ('query', 'key', 'value'):
      a[f'{b}{mha}/{name}/kernel'] = rng.normal(0, 1 / np.sqrt(width), (width, heads, dh))
      a[f'{b}{mha}/{name}/bias'] = rng.normal(0, 0.1, (heads, dh))
    a[f'{b}{mha}/out/kernel'] = rng.normal(0, 1 / np.sqrt(width), (heads, dh, width))
    a[f'{b}{mha}/out/bias'] = rng.normal(0, 0.1, (width,))
    a[f'{b}{mlp_name}/Dense_0/kernel'] = rng.normal(0, 1 / np.sqrt(width), (width, mlp))
    a[f'{b}{mlp_name}/Dense_0/bias'] = rng.normal(0, 0.1, (mlp,))
    a[f'{b}{mlp_name}/Dense_1/kernel'] = rng.normal(0, 1 / np.sqrt(mlp), (mlp, width))
    a[f'{b}{mlp_name}/Dense_1/bias'] = rng.normal(0, 0.1, (width,))
  a['Transformer/encoder_norm/scale'] = 1 + rng.normal(0, 0.1, (width,))
  a['Transformer/encoder_norm/bias'] = rng.normal(0, 0.1, (width,))
  a = {k: np.asarray(v, np.float32) for k, v in a.items()}
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, 'vit.npz')
  np.savez(path, **a)
  return path, a


# --- importing through a pretrained directory, and M3T's features ----------------

def _m3t(imported, tasks=None):
  return m3t.make(Spec({imported.modality: imported.layout}, tasks or {'t': 3}),
                  lora_residual=False, dtype='float32', num_prompts=0, lora_rank=0,
                  **imported.settings)


def _default_with(imported):
  config = default_config.get_config()
  config.model.m3t.update(importers.config_values(imported.settings))
  return config


def import_and_load(fmt, path, out):
  """(imported, loaded {role: tree}) through `fedxr-models import`'s directory."""
  imported = importers.read(fmt, path)
  import_checkpoint(fmt, path, out)
  model = _m3t(imported)
  abstract = jax.eval_shape(lambda: trees.split_by_role(model.init(jax.random.key(0)),
                                                        model.role_of))
  loaded = pretrained.load(out, _default_with(imported), abstract, ('base', 'encoders'))
  return imported, loaded


def m3t_features(imported, loaded, x):
  model = _m3t(imported)
  params = model.init(jax.random.key(1))
  for tree in loaded.values():
    params = pretrained.overlay(params, tree)
  mask = np.ones((len(x), 1), bool)
  return np.asarray(jax.jit(model.features)(params, {imported.modality: x}, mask))


@pytest.mark.parametrize('prefix, classifier', [
    ('', False), pytest.param('vit.', True, marks=pytest.mark.slow)])   # the prefix: a key map
def test_hf_vit_matches_the_numpy_vit(tmp_path, prefix, classifier):
  path, tensors, _ = hf_vit_checkpoint(tmp_path / 'src', prefix=prefix, classifier=classifier)
  imported, loaded = import_and_load('hf-vit', path, str(tmp_path / 'out'))
  assert imported.settings == {'width': 16, 'depth': 2, 'num_heads': 2, 'mlp_width': 24,
                               'ln_eps': 1e-12, 'exact_gelu': True, 'num_registers': 0}
  assert imported.layout == ((8, 8, 3), (4, 4, 3))
  images = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype(np.float32)
  ours = m3t_features(imported, loaded, images)
  theirs = ref.hf_vit(tensors, images.transpose(0, 3, 1, 2), depth=2, heads=2, prefix=prefix)
  assert ours.shape == theirs.shape == (3, 5, 16)          # CLS + 2x2 patches
  assert np.abs(ours - theirs).max() <= TOLERANCE
  assert any('classifier.weight' in n for n in imported.notes) == classifier


def test_hf_ast_matches_the_numpy_ast_token_by_token(tmp_path):
  path, tensors, cfg = hf_ast_checkpoint(tmp_path / 'src')
  imported, loaded = import_and_load('hf-ast', path, str(tmp_path / 'out'))
  # Overlapping 8x8 patches every 5 frames / 6 bins over [24 frames, 20 bins]: 4 x 3.
  assert imported.layout == ((24, 20), (8, 8), (5, 6))
  assert imported.settings['num_registers'] == 1
  spectrograms = np.random.default_rng(2).normal(size=(2, 24, 20)).astype(np.float32)
  ours = m3t_features(imported, loaded, spectrograms)
  theirs = ref.hf_ast(tensors, spectrograms, depth=2, heads=2,
                      frequency_stride=cfg['frequency_stride'], time_stride=cfg['time_stride'],
                      prefix='audio_spectrogram_transformer.')
  # Every token compared: HF's patches run frequency-major, M3T's time-major.
  freq, time = 3, 4
  patches = theirs[:, 2:].reshape(2, freq, time, 16).transpose(0, 2, 1, 3).reshape(2, 12, 16)
  theirs = np.concatenate([theirs[:, :2], patches], axis=1)
  assert ours.shape == theirs.shape == (2, 14, 16)         # CLS, distillation, 12 patches
  assert np.abs(ours - theirs).max() <= TOLERANCE


@pytest.mark.parametrize('old_names', [False, True])
def test_big_vision_npz_matches_the_numpy_vit(tmp_path, old_names):
  path, arrays = big_vision_checkpoint(tmp_path / 'src', old_names=old_names)
  imported, loaded = import_and_load('npz', path, str(tmp_path / 'out'))
  assert imported.settings == {'width': 16, 'depth': 2, 'num_heads': 4, 'mlp_width': 24,
                               'ln_eps': 1e-6, 'exact_gelu': False, 'num_registers': 0}
  images = np.random.default_rng(3).normal(size=(3, 8, 8, 3)).astype(np.float32)
  ours = m3t_features(imported, loaded, images)
  theirs = ref.big_vision_vit(arrays, images, depth=2, old_names=old_names)
  assert ours.shape == theirs.shape == (3, 5, 16)
  assert np.abs(ours - theirs).max() <= TOLERANCE


def test_the_name_map_moves_each_tensor_where_it_belongs(tmp_path):
  """Known answers: HF's torch weight [out, in] is M3T's kernel transposed; the CLS
  folds in its position; the conv kernel becomes the (p, p, C)-flattened embedding."""
  path, t, _ = hf_vit_checkpoint(tmp_path / 'src')
  p = importers.read('hf-vit', path).params
  block = p['base']['backbone']['block_1']
  np.testing.assert_array_equal(block['attn']['value']['dense']['kernel'],
                                t['encoder.layer.1.attention.attention.value.weight'].T)
  np.testing.assert_array_equal(block['mlp_out']['dense']['bias'],
                                t['encoder.layer.1.output.dense.bias'])
  np.testing.assert_array_equal(
      p['base']['backbone']['cls'],
      t['embeddings.cls_token'][0, 0] + t['embeddings.position_embeddings'][0, 0])
  vision = p['encoders']['encoders']['vision']
  w = t['embeddings.patch_embeddings.projection.weight']          # [D, C, p, p]
  # Row (i, j, c) of the embedding is the conv's weight at pixel (i, j), channel c.
  np.testing.assert_array_equal(vision['embed']['kernel'][(1 * 4 + 2) * 3 + 1], w[:, 1, 1, 2])
  np.testing.assert_array_equal(p['encoders']['encoders']['absent']['vision'], np.zeros(16))


# Optional interop: transformers' own PyTorch models (never a dependency of fedxr_jax).
def _transformers():
  torch = pytest.importorskip('torch', reason='the interop check compares with transformers\' '
                              'PyTorch models: torch is not installed (not a dependency)')
  transformers = pytest.importorskip('transformers', reason='the interop check needs '
                                     'transformers installed (not a dependency)')
  return torch, transformers


def _randomized(torch, model):
  torch.manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.2)
  return model.eval()


@pytest.mark.slow
def test_hf_vit_matches_transformers_vit(tmp_path):
  torch, transformers = _transformers()
  config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=24, image_size=8, patch_size=4,
                                  num_channels=3)
  model = _randomized(torch, transformers.ViTModel(config, add_pooling_layer=False))
  model.save_pretrained(tmp_path / 'hf', safe_serialization=True)
  imported, loaded = import_and_load('hf-vit', str(tmp_path / 'hf' / 'model.safetensors'),
                                     str(tmp_path / 'out'))
  images = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = model(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2))
                   ).last_hidden_state.numpy()
  assert np.abs(m3t_features(imported, loaded, images) - theirs).max() <= TOLERANCE


@pytest.mark.slow
def test_hf_ast_matches_transformers_ast(tmp_path):
  torch, transformers = _transformers()
  config = transformers.ASTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=24, patch_size=8, max_length=24,
                                  num_mel_bins=20, time_stride=5, frequency_stride=6)
  model = _randomized(torch, transformers.ASTModel(config))
  model.save_pretrained(tmp_path / 'hf', safe_serialization=True)
  imported, loaded = import_and_load('hf-ast', str(tmp_path / 'hf' / 'model.safetensors'),
                                     str(tmp_path / 'out'))
  x = np.random.default_rng(5).normal(size=(2, 24, 20)).astype(np.float32)
  with torch.no_grad():
    theirs = model(input_values=torch.from_numpy(x)).last_hidden_state.numpy()
  patches = theirs[:, 2:].reshape(2, 3, 4, 16).transpose(0, 2, 1, 3).reshape(2, 12, 16)
  theirs = np.concatenate([theirs[:, :2], patches], axis=1)   # HF frequency-major -> time-major
  assert np.abs(m3t_features(imported, loaded, x) - theirs).max() <= TOLERANCE


# --- refusals: one line naming the tensor ------------------------------------

def _refused(error, fmt, path, *needles):
  with pytest.raises(error) as info:
    importers.read(fmt, str(path))
  message = str(info.value)
  assert '\n' not in message and all(n in message for n in needles), message


@pytest.mark.parametrize('damage, needles', [
    ('missing', ("missing tensor 'encoder.layer.1.attention.attention.key.weight'",)),
    ('extra', ("unexpected tensor 'encoder.layer.0.attention.attention.gate.weight'",)),
    ('misshaped', ("tensor 'encoder.layer.1.output.dense.weight' has shape [16, 25], "
                   'expected [16, 24]',)),
    ('int', ("tensor 'encoder.layer.0.layernorm_after.bias' has dtype int32",)),
])
def test_a_bad_tensor_is_one_line_naming_it(tmp_path, damage, needles):
  path, t, cfg = hf_vit_checkpoint(tmp_path)
  if damage == 'missing':
    del t['encoder.layer.1.attention.attention.key.weight']
  elif damage == 'extra':
    t['encoder.layer.0.attention.attention.gate.weight'] = np.ones((16, 16), np.float32)
  elif damage == 'misshaped':
    t['encoder.layer.1.output.dense.weight'] = np.ones((16, 25), np.float32)
  else:
    t['encoder.layer.0.layernorm_after.bias'] = np.ones(16, np.int32)
  save_file(t, path)
  _refused(CheckpointError, 'hf-vit', path, *needles)


def test_a_truncated_safetensors_file_names_the_tensor_cut_off(tmp_path):
  path, _, _ = hf_vit_checkpoint(tmp_path)
  with open(path, 'rb') as f:
    data = f.read()
  n = int.from_bytes(data[:8], 'little')
  header = json.loads(data[8:8 + n])
  cut = len(data) - 100 - 8 - n        # where the data now ends
  inside = [k for k, v in header.items() if k != '__metadata__'
            and v['data_offsets'][0] <= cut < v['data_offsets'][1]]
  assert len(inside) == 1
  with open(path, 'wb') as f:
    f.write(data[:-100])
  _refused(CheckpointError, 'hf-vit', path, 'is truncated: the file ends inside tensor '
           f'{inside[0]!r}')
  with open(path, 'wb') as f:
    f.write(data[:20])   # inside the header
  _refused(CheckpointError, 'hf-vit', path, 'truncated inside its header')


def test_other_refusals_are_one_line(tmp_path):
  path, _, _ = hf_vit_checkpoint(tmp_path / 'vit')
  _refused(ConfigError, 'hf-vitt', path, "--format='hf-vitt' is not one of",
           "did you mean 'hf-vit'?")
  _refused(CheckpointError, 'hf-vit', tmp_path / 'none.safetensors', 'does not exist')
  # A ViT read as an AST: its layout is not AST's.
  _refused(CheckpointError, 'hf-ast', path,
           "tensor 'embeddings.patch_embeddings.projection.weight' has shape [16, 3, 4, 4]")
  # Without config.json the heads of a 16-wide ViT cannot be known.
  bare, _, _ = hf_vit_checkpoint(tmp_path / 'bare', config=False)
  _refused(CheckpointError, 'hf-vit', bare, 'number of attention heads',
           "put the model's config.json beside the checkpoint")
  # An AST whose spectrogram layout is not ASTConfig's default, without its config.json.
  ast_path, _, _ = hf_ast_checkpoint(tmp_path / 'ast')
  os.remove(tmp_path / 'ast' / 'config.json')
  _refused(CheckpointError, 'hf-ast', ast_path, 'holds 14 positions', 'ASTConfig')
  # npz: cut short, and a GAP-pooled ViT (no class token).
  npz, arrays = big_vision_checkpoint(tmp_path / 'bv')
  with open(npz, 'rb') as f:
    data = f.read()
  with open(npz, 'wb') as f:
    f.write(data[:len(data) // 2])
  _refused(CheckpointError, 'npz', npz, 'is not a readable npz file')
  del arrays['cls']
  np.savez(npz, **arrays)
  _refused(CheckpointError, 'npz', npz, "no array 'cls'")
  # A safetensors file read as npz.
  _refused(CheckpointError, 'npz', path, 'is not a readable npz file')


# --- a run starts from an import ----------------------------------------------

def _apply(config, flags):
  """--config.KEY=VALUE flags as fedxr-train applies them (a string as typed)."""
  for flag in flags:
    key, value = flag[len('--config.'):].split('=', 1)
    *parents, leaf = key.split('.')
    block = config
    for p in parents:
      block = block[p]
    block[leaf] = value if isinstance(block[leaf], str) else ast.literal_eval(value)
  return config


def _test_config_vit(tmp_path, image=16):
  """A ViT for configs/test.py's data: 16x16x1 images in 8x8 patches, its model's dims."""
  return hf_vit_checkpoint(tmp_path / 'src', width=16, depth=1, heads=2, mlp=16, channels=1,
                           patch=8, image=image)


def test_a_run_starts_from_an_imported_vit(tmp_path):
  path, _, _ = _test_config_vit(tmp_path)
  out = str(tmp_path / 'vit')
  meta = import_checkpoint('hf-vit', path, out)
  assert meta['overrides'] == [
      '--config.model.m3t.width=16', '--config.model.m3t.depth=1',
      '--config.model.m3t.num_heads=2', '--config.model.m3t.mlp_width=16',
      '--config.model.m3t.ln_eps=1e-12', '--config.model.m3t.exact_gelu=True',
      '--config.model.m3t.num_registers=0']
  assert meta['source']['sha256'] and meta['source']['format'] == 'hf-vit'
  imported = importers.read('hf-vit', path)
  config = _apply(test_config.get_config(), [f'--config.model.pretrained={out}']
                  + meta['overrides'])
  exp = experiment.build(config)
  server, _, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  assert_trees_equal(frozen['base'], imported.params['base'])
  encoders = jax.device_get(server.shared['encoders'])['encoders']
  assert_trees_equal(encoders['vision'], imported.params['encoders']['encoders']['vision'])
  np.testing.assert_array_equal(encoders['absent']['vision'], np.zeros(16))
  # The other modalities' encoders start from the seed, as in a scratch run.
  scratch = experiment.build(test_config.get_config())
  scratch_params = jax.jit(scratch.problem.init_params)(jax.random.key(0))
  params = jax.jit(exp.problem.init_params)(jax.random.key(0))
  assert_trees_equal(params['encoders']['encoders']['audio'],
                     scratch_params['encoders']['encoders']['audio'])


@pytest.mark.slow   # a full fedxr-train round; test_a_run_starts_from_an_imported_vit is default
def test_one_round_trains_from_an_imported_vit(tmp_path):
  from fedxr_jax.training import loop   # pylint: disable=import-outside-toplevel
  path, _, _ = _test_config_vit(tmp_path)
  out = str(tmp_path / 'vit')
  meta = import_checkpoint('hf-vit', path, out)
  config = _apply(test_config.get_config(), [f'--config.model.pretrained={out}',
                                             '--config.num_rounds=1'] + meta['overrides'])
  rows = loop.run(config, str(tmp_path / 'run'), progress=False)
  assert rows and np.isfinite(rows[-1]['train/loss'])


def _test_config_abstract(config):
  spec = synthetic.spec_from_config(config.data, config.local_steps)
  model = experiment.make_model(config, spec)
  abstract = jax.eval_shape(lambda: trees.split_by_role(model.init(jax.random.key(0)),
                                                        model.role_of))
  return abstract, spec.model_modalities()


def test_an_import_that_does_not_fit_the_run_is_one_line(tmp_path):
  # A 32 px ViT (16 patches) for the test config's 16 px images (4 patches).
  path, _, _ = _test_config_vit(tmp_path, image=32)
  out = str(tmp_path / 'vit32')
  meta = import_checkpoint('hf-vit', path, out)
  config = _apply(test_config.get_config(), meta['overrides'])
  abstract, modalities = _test_config_abstract(config)
  with pytest.raises(ConfigError) as info:
    pretrained.load(out, config, abstract, ('base', 'encoders'), modalities)
  assert str(info.value) == (
      "the checkpoint's 16 vision position embeddings (4x4 patches of 8x8 px at 32x32 px, "
      "1 channel) do not fit this run's vision input 16x16x1 in 8x8 patches (4 tokens)")
  # Without the run's layouts the run's side is said in tokens.
  with pytest.raises(ConfigError, match='vision input in 4 tokens of 64 values'):
    pretrained.load(out, config, abstract, ('encoders',))
  # A run without vision: the encoders have nowhere to go.
  config.data.modalities = ('audio', 'motion')
  abstract, modalities = _test_config_abstract(config)
  with pytest.raises(ConfigError, match="this run has no 'vision' modality"):
    pretrained.load(out, config, abstract, ('base', 'encoders'), modalities)
  # Another model width: the base says so by key.
  config = _apply(test_config.get_config(), meta['overrides'] + ['--config.model.m3t.width=32'])
  abstract, modalities = _test_config_abstract(config)
  with pytest.raises(ConfigError, match='model.m3t.width=16 there, 32 here'):
    pretrained.load(out, config, abstract, ('base', 'encoders'), modalities)


def test_named_size_and_its_explicit_dims_are_one_architecture():
  a, b = default_config.get_config(), default_config.get_config()
  a.model.m3t.size = 'small'
  b.model.m3t.update(dict(width=384, depth=4, num_heads=6, mlp_width=1536))
  assert pretrained.role_architecture(a, 'base') == pretrained.role_architecture(b, 'base')
  assert importers.overrides({'width': 768, 'depth': 12, 'num_heads': 12, 'mlp_width': 3072,
                              'ln_eps': 1e-12, 'exact_gelu': True, 'num_registers': 0}) == (
      "--config.model.m3t.size=base", '--config.model.m3t.ln_eps=1e-12',
      '--config.model.m3t.exact_gelu=True', '--config.model.m3t.num_registers=0')


# --- the CLI ------------------------------------------------------------------

def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.models', *args],
                        capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.slow   # 8 CLI processes; the import itself is default (tests above)
def test_cli_lists_the_family_and_imports(tmp_path):
  help_ = _cli('--help')
  assert help_.returncode == 0 and 'fedxr-models import' in help_.stdout
  listed = _cli('list')
  assert listed.returncode == 0, listed.stderr
  # M3T-base's backbone is ViT-B/16's encoder: 12 x 7,087,872 + CLS 768 + final LN 1,536.
  base = next(line for line in listed.stdout.splitlines() if line.startswith('m3t    base'))
  assert '85,056,768' in base
  assert any(line.startswith('mlp') for line in listed.stdout.splitlines())
  path, _, _ = hf_vit_checkpoint(tmp_path / 'src')
  ok = _cli('import', '--format=hf-vit', f'--checkpoint={path}', f'--out={tmp_path / "out"}')
  assert ok.returncode == 0, ok.stderr
  assert '--config.model.m3t.exact_gelu=True' in ok.stdout
  for args, message in ((['import', '--format=onnx', f'--checkpoint={path}',
                          f'--out={tmp_path / "b"}'], "--format='onnx' is not one of"),
                        (['import', '--format=hf-vit', f'--checkpoint={path}',
                          f'--out={tmp_path / "out"}'], 'is not empty'),
                        (['import', '--format=hf-vit'], 'import needs --checkpoint, --out'),
                        (['lists'], 'give one command')):
    bad = _cli(*args)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and message in lines[0], bad.stderr
