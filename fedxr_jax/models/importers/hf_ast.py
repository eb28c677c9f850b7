"""hf-ast: a Hugging Face Audio Spectrogram Transformer (`ASTModel`,
`ASTForAudioClassification`) safetensors file.

  embeddings.cls_token + position_embeddings[0]            -> backbone/cls
  embeddings.distillation_token + position_embeddings[1]   -> backbone/registers [1, D]
  embeddings.position_embeddings [1,2+F'T',D] [2:]         -> encoders/audio/position
      (HF's patches run frequency-major, M3T's time-major: permuted)
  embeddings.patch_embeddings.projection.weight [D,1,p,p]  -> encoders/audio/embed/kernel
      ([D, freq, time] -> [time, freq, D] -> [p*p, D])
  embeddings.patch_embeddings.projection.bias              -> encoders/audio/embed/bias
  (none)                                                   -> encoders/absent/audio = 0
  encoder.layer.N.*, layernorm.*                           -> backbone (hf_encoder)
  ignored: classifier.*

AST is a ViT over a log-mel spectrogram input_values [T, F] (HF transposes it
to [1, F, T] for a 16x16 conv with strides (frequency_stride, time_stride)):
overlapping patches, which M3T's encoder takes as token shape (p, p) with
stride (time_stride, frequency_stride) over the same [T, F] input. The
distillation token is M3T's one register (num_registers=1). Keys may carry an
'audio_spectrogram_transformer.' prefix. Strides, frames and bins come from
config.json beside the file (else ASTConfig's defaults: 10, 10, 1024, 128).

Why AST and not Whisper: Whisper's encoder starts with two GELU conv1d
layers and fixed sinusoidal positions, which a linear patch embedding cannot
express; AST is exactly M3T with strided patches and one register.
"""
from fedxr_jax.errors import CheckpointError
from fedxr_jax.models.importers import common
from fedxr_jax.models.importers import files
from fedxr_jax.models.importers import hf_encoder

FORMAT = 'hf-ast'
MODALITY = 'audio'
DEFAULTS = {'num_mel_bins': 128, 'max_length': 1024, 'frequency_stride': 10,
            'time_stride': 10}


def spectrogram_layout(tensors: common.Tensors, prefix: str, config: dict) -> tuple:
  """(((T, F), (p, p), (time stride, freq stride)), (F', T')) of the checkpoint."""
  proj = f'{prefix}embeddings.patch_embeddings.projection.weight'
  shape = tensors.shape(proj)
  if len(shape) != 4 or shape[1] != 1 or shape[2] != shape[3]:
    raise CheckpointError(f'{tensors.path}: tensor {proj!r} has shape {list(shape)}, '
                          'expected [hidden, 1, patch, patch]')
  p = int(config.get('patch_size', shape[2]))
  c = {k: int(config.get(k, v)) for k, v in DEFAULTS.items()}
  freq = (c['num_mel_bins'] - p) // c['frequency_stride'] + 1
  time = (c['max_length'] - p) // c['time_stride'] + 1
  pos = f'{prefix}embeddings.position_embeddings'
  have = tensors.shape(pos)
  if len(have) == 3 and have[1] != 2 + freq * time:
    where = 'its config.json' if config else ("ASTConfig's defaults: put the model's "
                                              'config.json beside the checkpoint')
    raise CheckpointError(
        f'{tensors.path}: tensor {pos!r} holds {have[1]} positions, but {c["max_length"]} '
        f'frames x {c["num_mel_bins"]} mel bins in {p}x{p} patches every '
        f'{c["time_stride"]} frames / {c["frequency_stride"]} bins give 2 + {freq * time} '
        f'({where})')
  layout = ((c['max_length'], c['num_mel_bins']), (p, p),
            (c['time_stride'], c['frequency_stride']))
  return layout, (freq, time)


def read(path: str, modality: str = MODALITY) -> common.Imported:
  tensors = common.Tensors(files.read_safetensors(path), path, FORMAT)
  config = files.read_json_beside(path)
  prefix = hf_encoder.prefix_of(tensors, 'embeddings.cls_token')
  width = int(config.get('hidden_size', tensors.shape(prefix + 'embeddings.cls_token')[-1]))
  layout, (freq, time) = spectrogram_layout(tensors, prefix, config)
  settings = {**hf_encoder.encoder_settings(tensors, prefix, config, width), 'num_registers': 1}
  p = layout[1][0]
  n = freq * time
  tensors.context = f'an AST of {hf_encoder.words(settings)}, {common.grid_words(*layout)}'
  e = prefix + 'embeddings.'
  pos = (e + 'position_embeddings', (1, 2 + n, width))
  proj = e + 'patch_embeddings.projection.'
  entries = [
      common.Entry('backbone/cls', ((e + 'cls_token', (1, 1, width)), pos),
                   lambda cls, q: cls[0, 0] + q[0, 0]),
      common.Entry('backbone/registers', ((e + 'distillation_token', (1, 1, width)), pos),
                   lambda dist, q: dist[0] + q[0, 1:2]),
      # HF: patch f * T' + t; M3T (strided_tokens, time-major): t * F' + f.
      common.Entry(f'encoders/{modality}/position', (pos,),
                   lambda q: q[0, 2:].reshape(freq, time, width).transpose(1, 0, 2)
                   .reshape(n, width)),
      common.Entry(f'encoders/{modality}/embed/kernel', ((proj + 'weight', (width, 1, p, p)),),
                   lambda w: w[:, 0].transpose(2, 1, 0).reshape(p * p, width)),
      common.Entry(f'encoders/{modality}/embed/bias', ((proj + 'bias', (width,)),),
                   lambda b: b),
      common.zeros(f'encoders/absent/{modality}', (width,)),
      *hf_encoder.layers(prefix, settings, qkv_bias=config.get('qkv_bias', True)),
  ]
  notes = [
      'backbone/cls = cls_token + position_embeddings[0]; backbone/registers = '
      'distillation_token + position_embeddings[1] (num_registers=1)',
      f'patches: HF orders them frequency-major ({freq}x{time}), M3T time-major '
      f'({time}x{freq}): position embeddings permuted to match',
      f'encoders/absent/{modality} has no AST counterpart: zeros',
      f'inputs: [{layout[0][0]} frames, {layout[0][1]} mel bins] log-mel fbank, normalized '
      "as ASTFeatureExtractor does (its mean and 2x std)",
  ]
  if 'num_attention_heads' not in config:
    notes.append(f"no config.json: {settings['num_heads']} heads assumed (64-wide)")
  architecture = {'hidden_size': width, 'num_hidden_layers': settings['depth'],
                  'num_attention_heads': settings['num_heads'],
                  'intermediate_size': settings['mlp_width'], 'patch_size': p,
                  'max_length': layout[0][0], 'num_mel_bins': layout[0][1],
                  'time_stride': layout[2][0], 'frequency_stride': layout[2][1],
                  'layer_norm_eps': settings['ln_eps']}
  return common.finish(tensors, entries, fmt=FORMAT, path=path, settings=settings,
                       modality=modality, layout=layout, architecture=architecture,
                       ignored=lambda name: name.startswith('classifier.'), notes=notes)
