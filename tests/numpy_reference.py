"""Independent numpy forward passes of the architectures `fedxr-models import` reads.

Written from each architecture's definition (Hugging Face's ViT and AST
modeling code, big_vision's vit.py), not from M3T: convolutions as
convolutions over the source's own input layout, attention per head, in
float64. Each returns the encoder's last hidden state after its final
LayerNorm, [B, tokens, D], in the source's token order.
"""
import numpy as np
from scipy.special import erf


def layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def gelu_erf(x):
  return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def conv2d_nchw(x, weight, bias, stride):
  """torch.nn.Conv2d, no padding: x [B, Cin, H, W], weight [Cout, Cin, kh, kw]."""
  _, _, h, w = x.shape
  kh, kw = weight.shape[2:]
  sh, sw = stride
  rows, cols = (h - kh) // sh + 1, (w - kw) // sw + 1
  out = np.empty((x.shape[0], weight.shape[0], rows, cols))
  for i in range(rows):
    for j in range(cols):
      window = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
      out[:, :, i, j] = np.einsum('bchw,ochw->bo', window, weight) + bias
  return out


def conv2d_nhwc(x, kernel, bias, stride):
  """flax nn.Conv, padding VALID: x [B, H, W, C], kernel [kh, kw, C, D] (HWIO)."""
  _, h, w, _ = x.shape
  kh, kw = kernel.shape[:2]
  sh, sw = stride
  rows, cols = (h - kh) // sh + 1, (w - kw) // sw + 1
  out = np.empty((x.shape[0], rows, cols, kernel.shape[-1]))
  for i in range(rows):
    for j in range(cols):
      window = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
      out[:, i, j, :] = np.einsum('bhwc,hwcd->bd', window, kernel) + bias
  return out


def attention(q, k, v, heads):
  """Multi-head softmax attention over [B, L, D] projections, heads split from D."""
  b, length, d = q.shape
  split = lambda t: t.reshape(b, length, heads, d // heads).transpose(0, 2, 1, 3)
  q, k, v = split(q), split(k), split(v)
  logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads)
  logits -= logits.max(-1, keepdims=True)
  weights = np.exp(logits)
  weights /= weights.sum(-1, keepdims=True)
  return (weights @ v).transpose(0, 2, 1, 3).reshape(b, length, d)


# --- Hugging Face ViT / AST (torch Linear: y = x W^T + b) ---------------------

def _linear(t, name, x):
  return x @ t[name + '.weight'].T + t[name + '.bias']


def hf_layer(t, prefix, x, heads, eps, act):
  """ViTLayer / ASTLayer: pre-LN attention and MLP with residuals."""
  h = layer_norm(x, t[prefix + 'layernorm_before.weight'], t[prefix + 'layernorm_before.bias'],
                 eps)
  a = prefix + 'attention.attention.'
  ctx = attention(_linear(t, a + 'query', h), _linear(t, a + 'key', h),
                  _linear(t, a + 'value', h), heads)
  x = x + _linear(t, prefix + 'attention.output.dense', ctx)
  h = layer_norm(x, t[prefix + 'layernorm_after.weight'], t[prefix + 'layernorm_after.bias'],
                 eps)
  h = act(_linear(t, prefix + 'intermediate.dense', h))
  return x + _linear(t, prefix + 'output.dense', h)


def _hf_encoder(t, prefix, x, depth, heads, eps, act):
  for i in range(depth):
    x = hf_layer(t, f'{prefix}encoder.layer.{i}.', x, heads, eps, act)
  return layer_norm(x, t[prefix + 'layernorm.weight'], t[prefix + 'layernorm.bias'], eps)


def _f64(tensors):
  return {k: np.asarray(v, np.float64) for k, v in tensors.items()}


def hf_vit(tensors, pixel_values, *, depth, heads, eps=1e-12, act=gelu_erf, prefix=''):
  """ViTModel's last_hidden_state for pixel_values [B, C, H, W]."""
  t, e = _f64(tensors), prefix + 'embeddings.'
  w = t[e + 'patch_embeddings.projection.weight']
  patches = conv2d_nchw(np.asarray(pixel_values, np.float64), w,
                        t[e + 'patch_embeddings.projection.bias'], w.shape[2:])
  patches = patches.reshape(patches.shape[0], patches.shape[1], -1).transpose(0, 2, 1)
  cls = np.broadcast_to(t[e + 'cls_token'], (patches.shape[0], 1, patches.shape[-1]))
  x = np.concatenate([cls, patches], axis=1) + t[e + 'position_embeddings']
  return _hf_encoder(t, prefix, x, depth, heads, eps, act)


def hf_ast(tensors, input_values, *, depth, heads, frequency_stride, time_stride, eps=1e-12,
           act=gelu_erf, prefix=''):
  """ASTModel's last_hidden_state for input_values [B, T frames, F mel bins]."""
  t, e = _f64(tensors), prefix + 'embeddings.'
  x = np.asarray(input_values, np.float64)[:, None].transpose(0, 1, 3, 2)   # [B, 1, F, T]
  patches = conv2d_nchw(x, t[e + 'patch_embeddings.projection.weight'],
                        t[e + 'patch_embeddings.projection.bias'],
                        (frequency_stride, time_stride))
  patches = patches.reshape(patches.shape[0], patches.shape[1], -1).transpose(0, 2, 1)
  b, d = patches.shape[0], patches.shape[-1]
  lead = [np.broadcast_to(t[e + n], (b, 1, d)) for n in ('cls_token', 'distillation_token')]
  x = np.concatenate(lead + [patches], axis=1) + t[e + 'position_embeddings']
  return _hf_encoder(t, prefix, x, depth, heads, eps, act)


# --- big_vision ViT (flax: kernels [in, out], MHDPA kernels [D, H, Dh]) -------

def _dense(a, name, x):
  return x @ a[name + '/kernel'] + a[name + '/bias']


def big_vision_vit(arrays, image, *, depth, old_names=False, eps=1e-6, prefix=''):
  """big_vision vit.py `_Model(pool_type='tok')`'s encoded tokens for image [B, H, W, C]
  (old_names: the original vision_transformer's module names and [cls, patches] posemb)."""
  a = {k[len(prefix):]: np.asarray(v, np.float64) for k, v in arrays.items()
       if k.startswith(prefix)}
  mha, ln2, mlp = (('MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3') if old_names
                   else ('MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'))
  kernel = a['embedding/kernel']
  x = conv2d_nhwc(np.asarray(image, np.float64), kernel, a['embedding/bias'], kernel.shape[:2])
  b, h, w, d = x.shape
  x = x.reshape(b, h * w, d)
  cls = np.broadcast_to(a['cls'], (b, 1, d))
  if old_names:   # old vit.py: concat [cls] first, then add the posemb
    x = np.concatenate([cls, x], axis=1) + a['Transformer/posembed_input/pos_embedding']
  else:           # big_vision: posemb on the patches, then [cls]
    x = np.concatenate([cls, x + a['pos_embedding']], axis=1)
  for i in range(depth):
    p = f'Transformer/encoderblock_{i}/'
    y = layer_norm(x, a[p + 'LayerNorm_0/scale'], a[p + 'LayerNorm_0/bias'], eps)
    heads = a[f'{p}{mha}/query/kernel'].shape[1]
    proj = lambda n: np.einsum('bld,dhk->blhk', y, a[f'{p}{mha}/{n}/kernel']) + a[
        f'{p}{mha}/{n}/bias']
    q, k, v = (proj(n).reshape(b, -1, d) for n in ('query', 'key', 'value'))
    ctx = attention(q, k, v, heads).reshape(b, -1, heads, d // heads)
    x = x + np.einsum('blhk,hkd->bld', ctx, a[f'{p}{mha}/out/kernel']) + a[f'{p}{mha}/out/bias']
    y = layer_norm(x, a[f'{p}{ln2}/scale'], a[f'{p}{ln2}/bias'], eps)
    y = _dense(a, f'{p}{mlp}/Dense_1', gelu_tanh(_dense(a, f'{p}{mlp}/Dense_0', y)))
    x = x + y
  return layer_norm(x, a['Transformer/encoder_norm/scale'], a['Transformer/encoder_norm/bias'],
                    eps)
