"""The multi-modal multi-task (M3T) foundation model.

tokens = [CLS, prompts, modality_1 tokens, ..., modality_M tokens]
  -> pre-LN transformer backbone (LoRA on attention projections)
  -> CLS -> one head per task.

A missing modality's tokens are replaced by that modality's learned "absent"
token; only its first position stays visible to attention, so the backbone
sees one "this sensor is missing" signal per absent modality.

Parameter trees by role (see `role_of`), each with its own tuning mode:
  base          the backbone (frozen in PEFT, shared in full tuning)
  lora_a/lora_b LoRA factors A [r, in] and B [r, out] on attention projections
  lora_residual exact-aggregation residual folded into the base (optional)
  prompts       prompt tokens shared by all users
  user_prompts  extra prompt tokens for shared+personal prompt tuning
  adapters      bottleneck adapters after attention and MLP (optional)
  experts       Mixture-of-Experts MLPs and their top-k gate (optional)
  encoders      modality encoders and absent tokens
  heads         one head per task
  library       a library of adapters on the fused features (models/library.py)
  selection     a user's composition of the library (personal)
  signature     the layer that turns a user's trace signature into prompt tokens
                (models/signature.py)
An example may be read out after its own number of blocks (`path`: early exit,
`ModelDef.apply_path`): the CLS token after that block, through the final norm
and the heads.
"""
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.errors import ConfigError
from fedxr_jax.models import interface
from fedxr_jax.models import library as library_lib
from fedxr_jax.models import signature as signature_lib
from fedxr_jax.models.lora import LORA_PREFIX, LoRADense, SelfAttention

ROLES = ('base', 'lora_a', 'lora_b', 'lora_residual', 'prompts', 'user_prompts',
         'adapters', 'experts', 'encoders', 'heads', 'library', 'selection', 'signature')
LORA_ROLES = {LORA_PREFIX + 'A': 'lora_a', LORA_PREFIX + 'B': 'lora_b',
              LORA_PREFIX + 'R': 'lora_residual'}


def role_of(path: tuple) -> str:
  """The parameter tree a param belongs to, from its path in the param dict."""
  names = [str(p) for p in path]
  if names[-1] in LORA_ROLES:
    return LORA_ROLES[names[-1]]
  if any(n.startswith('adapter_') for n in names):
    return 'adapters'
  if 'moe' in names:
    return 'experts'
  return {'prompts': 'prompts', 'user_prompts': 'user_prompts', 'encoders': 'encoders',
          'heads': 'heads', 'library': 'library', 'selection': 'selection',
          'signature': 'signature'}.get(names[0], 'base')


def tokenize(x: jax.Array, token_shape: Sequence[int]) -> jax.Array:
  """Cuts an input [..., *shape] into non-overlapping blocks of `token_shape`.

  An image [H, W, C] with token_shape (p, p, C) gives H/p*W/p patch tokens; a
  time series [T, F] with token_shape (w, F) gives T/w window tokens.
  """
  lead = x.shape[:x.ndim - len(token_shape)]
  shape = x.shape[len(lead):]
  blocks, inner = [], []
  for size, tok in zip(shape, token_shape):
    blocks += [size // tok, tok]
  x = x.reshape(lead + tuple(blocks))
  n = len(lead)
  outer_axes = [n + 2 * i for i in range(len(shape))]
  inner_axes = [n + 2 * i + 1 for i in range(len(shape))]
  x = x.transpose(tuple(range(n)) + tuple(outer_axes) + tuple(inner_axes))
  return x.reshape(lead + (-1, int(np.prod(token_shape))))


def num_tokens(shape: Sequence[int], token_shape: Sequence[int], stride=None) -> int:
  stride = stride or token_shape
  return int(np.prod([(s - t) // d + 1 for s, t, d in zip(shape, token_shape, stride)]))


def strided_tokens(x: jax.Array, token_shape: Sequence[int], stride: Sequence[int]):
  """Overlapping blocks of `token_shape` every `stride` (an imported conv patch embedding
  whose stride is not its kernel, e.g. AST's 16x16 patches every 10 frames / bins)."""
  n = x.ndim - len(token_shape)
  for axis, (size, tok, step) in enumerate(zip(x.shape[n:], token_shape, stride)):
    starts = np.arange((size - tok) // step + 1) * step
    index = starts[:, None] + np.arange(tok)[None, :]          # [blocks, tok]
    x = jnp.take(x, index.reshape(-1), axis=n + 2 * axis)
    x = x.reshape(x.shape[:n + 2 * axis] + index.shape + x.shape[n + 2 * axis + 1:])
  # [..., b0, t0, b1, t1, ...] -> [..., b0, b1, ..., t0, t1, ...] -> [..., blocks, token]
  k = len(token_shape)
  outer = [n + 2 * i for i in range(k)]
  inner = [n + 2 * i + 1 for i in range(k)]
  x = x.transpose(tuple(range(n)) + tuple(outer) + tuple(inner))
  return x.reshape(x.shape[:n] + (-1, int(np.prod(token_shape))))


class ModalityEncoder(nn.Module):
  """Tokens of one modality: linear patch/window embedding + position."""
  width: int
  token_shape: Sequence[int]
  stride: Sequence[int] = ()   # () : non-overlapping blocks (= token_shape)
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    if self.stride and tuple(self.stride) != tuple(self.token_shape):
      tokens = strided_tokens(x, self.token_shape, self.stride)
    else:
      tokens = tokenize(x, self.token_shape)
    pos = self.param('position', nn.initializers.normal(0.02),
                     tokens.shape[-2:-1] + (self.width,))
    return nn.Dense(self.width, dtype=self.dtype, name='embed')(tokens) + pos


class AbsentTokens(nn.Module):
  """One learned token per modality, used where that modality is missing."""
  modalities: Sequence[str]
  width: int

  @nn.compact
  def __call__(self):
    return {m: self.param(m, nn.initializers.normal(0.02), (self.width,))
            for m in self.modalities}


class Encoders(nn.Module):
  # name -> (input shape, token shape[, token stride]): stride defaults to the token shape
  modalities: Mapping[str, tuple]
  width: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Mapping[str, jax.Array], modality_mask: jax.Array):
    """Returns tokens [..., L, width] and their attention key mask [..., L]."""
    absent = AbsentTokens(tuple(self.modalities), self.width, name='absent')()
    tokens, masks = [], []
    for i, (name, layout) in enumerate(self.modalities.items()):
      present = modality_mask[..., i]
      stride = tuple(layout[2]) if len(layout) > 2 else ()
      tok = ModalityEncoder(self.width, tuple(layout[1]), stride, self.dtype,
                            name=name)(x[name])
      tok = jnp.where(present[..., None, None], tok, absent[name])
      visible = jnp.zeros(tok.shape[-2], bool).at[0].set(True)
      tokens.append(tok)
      masks.append(present[..., None] | visible)
    return jnp.concatenate(tokens, axis=-2), jnp.concatenate(masks, axis=-1)


class Heads(nn.Module):
  """One linear head per task, each its own module for masked aggregation."""
  tasks: Mapping[str, int]

  @nn.compact
  def __call__(self, features):
    return {t: nn.Dense(k, name=t)(features) for t, k in self.tasks.items()}


class Adapter(nn.Module):
  """Bottleneck adapter (Houlsby et al. 2019): x + up(gelu(down(x))); identity at init."""
  dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.gelu(nn.Dense(self.dim, name='down')(x))
    return x + nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, name='up')(h)


class MoEMLP(nn.Module):
  """Mixture-of-Experts MLP with a learned top-k gate (Shazeer et al. 2017).

  Experts are stacked [E, ...] so each is one slice of the `experts` tree
  (aggregated with the tokens routed to it). Every expert runs densely and
  the gate zeroes all but the top k per token: at E <= 8 and these widths
  dense is faster than dispatch under vmap, and it keeps shapes static.
  Sows per-example tokens routed to each expert and mean gate probabilities
  (for routed-token weights, activation counts and the balance loss).
  """
  num_experts: int
  top_k: int
  mlp_width: int

  @nn.compact
  def __call__(self, x, token_mask):
    width, e = x.shape[-1], self.num_experts
    init = nn.initializers.lecun_normal(batch_axis=(0,))
    w_in = self.param('w_in', init, (e, width, self.mlp_width))
    b_in = self.param('b_in', nn.initializers.zeros, (e, self.mlp_width))
    w_out = self.param('w_out', init, (e, self.mlp_width, width))
    b_out = self.param('b_out', nn.initializers.zeros, (e, width))
    probs = nn.softmax(nn.Dense(e, name='gate')(x), axis=-1)        # [..., T, E]
    top_p, top_i = jax.lax.top_k(probs, self.top_k)
    routed = jnp.sum(jax.nn.one_hot(top_i, e, dtype=x.dtype), axis=-2)   # [..., T, E]
    combine = jnp.sum(jax.nn.one_hot(top_i, e, dtype=x.dtype)
                      * (top_p / jnp.sum(top_p, -1, keepdims=True))[..., None], axis=-2)
    h = nn.gelu(jnp.einsum('...td,edh->...teh', x, w_in) + b_in)
    out = jnp.einsum('...teh,ehd->...ted', h, w_out) + b_out
    live = token_mask[..., None].astype(x.dtype)
    self.sow('intermediates', 'expert_tokens', jnp.sum(routed * live, axis=-2))
    self.sow('intermediates', 'gate_probs', jnp.sum(probs * live, axis=-2)
             / jnp.maximum(jnp.sum(live, axis=-2), 1.0))
    return jnp.einsum('...te,...ted->...td', combine, out)


class Block(nn.Module):
  num_heads: int
  mlp_width: int
  lora_rank: int
  lora_alpha: float
  lora_targets: Sequence[str]
  lora_residual: bool = False
  adapter_dim: int = 0
  num_experts: int = 0
  expert_top_k: int = 2
  ln_eps: float = 1e-6
  exact_gelu: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x, key_mask):
    h = nn.LayerNorm(epsilon=self.ln_eps, name='norm_attn')(x)
    h = SelfAttention(self.num_heads, self.lora_rank, self.lora_alpha,
                      tuple(self.lora_targets), self.lora_residual, dtype=self.dtype,
                      name='attn')(h, key_mask)
    if self.adapter_dim:
      h = Adapter(self.adapter_dim, name='adapter_attn')(h)
    x = x + h
    h = nn.LayerNorm(epsilon=self.ln_eps, name='norm_mlp')(x)
    if self.num_experts:
      h = MoEMLP(self.num_experts, self.expert_top_k, self.mlp_width, name='moe')(h, key_mask)
    else:
      h = nn.gelu(LoRADense(self.mlp_width, dtype=self.dtype, name='mlp_in')(h),
                  approximate=not self.exact_gelu)
      h = LoRADense(x.shape[-1], dtype=self.dtype, name='mlp_out')(h)
    if self.adapter_dim:
      h = Adapter(self.adapter_dim, name='adapter_mlp')(h)
    return x + h


class Backbone(nn.Module):
  depth: int
  num_heads: int
  mlp_width: int
  lora_rank: int
  lora_alpha: float
  lora_targets: Sequence[str]
  lora_residual: bool = False
  adapter_dim: int = 0
  num_experts: int = 0
  expert_top_k: int = 2
  ln_eps: float = 1e-6
  exact_gelu: bool = False
  # Learned tokens after CLS (e.g. an imported AST's distillation token).
  num_registers: int = 0
  dtype: Any = None

  @nn.compact
  def __call__(self, tokens, key_mask, all_tokens: bool = False, path=None):
    """The CLS token's features [..., width] (all_tokens: every token's, [..., L, width]).

    path: the blocks each example runs ([...] int in 1..depth, early exit: its CLS
    after its last block), or an int (every example that many blocks; the rest
    are not run).
    """
    cls = self.param('cls', nn.initializers.normal(0.02), (tokens.shape[-1],))
    extra = [cls[None]]
    if self.num_registers:
      extra.append(self.param('registers', nn.initializers.normal(0.02),
                              (self.num_registers, tokens.shape[-1])))
    lead = jnp.broadcast_to(jnp.concatenate(extra, axis=0),
                            tokens.shape[:-2] + (1 + self.num_registers, tokens.shape[-1]))
    x = jnp.concatenate([lead, tokens], axis=-2)
    key_mask = jnp.concatenate(
        [jnp.ones(key_mask.shape[:-1] + (1 + self.num_registers,), bool), key_mask], axis=-1)
    static = isinstance(path, int)
    cls = None
    for i in range(path if static else self.depth):
      x = Block(self.num_heads, self.mlp_width, self.lora_rank, self.lora_alpha,
                self.lora_targets, self.lora_residual, self.adapter_dim,
                self.num_experts, self.expert_top_k, self.ln_eps, self.exact_gelu,
                self.dtype, name=f'block_{i}')(x, key_mask)
      if path is not None and not static:   # each example's CLS after its last block
        cls = x[..., 0, :] if cls is None else jnp.where((path > i)[..., None],
                                                         x[..., 0, :], cls)
    norm = nn.LayerNorm(epsilon=self.ln_eps, name='norm_out')
    if all_tokens:
      return norm(x)
    # Every token's features, for a caller that reads them from this same pass
    # (`ModelDef.apply_features`); without a mutable 'intermediates' nothing is kept.
    self.sow('intermediates', 'tokens', norm(x))
    return norm(x[..., 0, :] if cls is None else cls)


class M3TModel(nn.Module):
  """Multi-modal multi-task transformer with prompts, LoRA and task heads."""
  # name -> (input shape, token shape[, token stride]), in modality-mask order
  modalities: Mapping[str, tuple]
  tasks: Mapping[str, int]          # name -> output size (classes, or target dims)
  width: int = 32
  depth: int = 2
  num_heads: int = 4
  mlp_width: int = 64
  num_prompts: int = 4
  lora_rank: int = 4
  lora_alpha: float = 8.0
  lora_targets: Sequence[str] = ('query', 'value')
  lora_residual: bool = False     # exact LoRA aggregation (FedEx residual)
  num_user_prompts: int = 0       # shared+personal prompt tuning
  adapter_dim: int = 0            # 0: no adapters
  num_experts: int = 0            # 0: dense MLPs; else a MoE MLP per block
  expert_top_k: int = 2
  ln_eps: float = 1e-6            # LayerNorm epsilon (HF ViT: 1e-12)
  exact_gelu: bool = False        # erf GELU (HF ViT) instead of its tanh approximation
  num_registers: int = 0          # learned tokens after CLS (AST's distillation token)
  dtype: Any = None               # compute dtype of the dense layers (None: float32)
  library_size: int = 0           # adapters in the user-module library (0: none)
  library_dim: int = 8            # their bottleneck width
  library_select: int = 0         # modules a user composes (0: a soft mix of all)
  signature_tokens: int = 0       # prompt tokens from the user's signature (0: none)

  def tokens(self, x, modality_mask):
    """The backbone's input tokens [..., L, width] and key mask [..., L]."""
    tokens, key_mask = Encoders(self.modalities, self.width, self.dtype, name='encoders')(
        x, modality_mask)
    for name, count in (('user_prompts', self.num_user_prompts),
                        ('prompts', self.num_prompts)):
      if count:
        prompts = self.param(name, nn.initializers.normal(0.02), (count, self.width))
        prompts = jnp.broadcast_to(prompts, tokens.shape[:-2] + prompts.shape)
        tokens = jnp.concatenate([prompts, tokens], axis=-2)
        key_mask = jnp.concatenate(
            [jnp.ones(key_mask.shape[:-1] + (count,), bool), key_mask], axis=-1)
    if self.signature_tokens:   # the user's trace signature, as prompt tokens
      prompts = signature_lib.SignaturePrompts(self.signature_tokens, self.width,
                                               name='signature')(x['signature'])
      tokens = jnp.concatenate([prompts.astype(tokens.dtype), tokens], axis=-2)
      key_mask = jnp.concatenate(
          [jnp.ones(key_mask.shape[:-1] + (self.signature_tokens,), bool), key_mask], axis=-1)
    return tokens, key_mask

  @nn.compact
  def __call__(self, x: Mapping[str, jax.Array], modality_mask: jax.Array,
               features_only: bool = False, path=None):
    """{task: outputs [..., D]}; features_only: every token's final features [..., L, width];
    path: each example's blocks (`Backbone`)."""
    tokens, key_mask = self.tokens(x, modality_mask)
    backbone = Backbone(self.depth, self.num_heads, self.mlp_width,
                        self.lora_rank, self.lora_alpha, tuple(self.lora_targets),
                        self.lora_residual, self.adapter_dim, self.num_experts,
                        self.expert_top_k, self.ln_eps, self.exact_gelu, self.num_registers,
                        self.dtype, name='backbone')
    if features_only:
      return backbone(tokens, key_mask, all_tokens=True)
    features = backbone(tokens, key_mask, path=path)
    if self.library_size:   # the user's composition of the library (models/library.py)
      weights = library_lib.composition(
          self.param('selection', nn.initializers.zeros, (self.library_size,)),
          self.library_select)
      features = library_lib.ModuleLibrary(self.library_size, self.library_dim,
                                           name='library')(features, weights)
    return Heads(self.tasks, name='heads')(features)


# ---------------------------------------------------------------------------
# The family: named sizes, and the model as a registry entry.

# name -> (width, depth, num_heads, mlp_width): tiny is the CPU default (~25k
# parameters with the default data), small a CPU-sized foundation model
# (~7M), base ViT-B's widths (~86M).
SIZES = {
    'tiny': (32, 2, 4, 64),
    'small': (384, 4, 6, 1536),
    'base': (768, 12, 12, 3072),
}


def dims(size: str, width: int = 0, depth: int = 0, num_heads: int = 0,
         mlp_width: int = 0) -> tuple:
  """(width, depth, num_heads, mlp_width): the size's, each overridden where > 0."""
  if size not in SIZES:
    raise ValueError(size)
  return tuple(v or d for v, d in zip((width, depth, num_heads, mlp_width), SIZES[size]))


def make(spec, *, lora_residual: bool, dtype: str, size: str = 'tiny', width: int = 0,
         depth: int = 0, num_heads: int = 0, mlp_width: int = 0, num_prompts: int = 4,
         lora_rank: int = 4, lora_alpha: float = 8.0,
         lora_targets: tuple = ('query', 'value'), num_user_prompts: int = 0,
         adapter_dim: int = 0, num_experts: int = 0, expert_top_k: int = 2,
         moe_balance: float = 0.01, ln_eps: float = 1e-6, exact_gelu: bool = False,
         num_registers: int = 0, library_size: int = 0, library_dim: int = 8,
         library_select: int = 0, signature_tokens: int = 0):
  """The M3T model of a named size for `spec` (a `models.interface.Spec`).

  width / depth / num_heads / mlp_width: 0 takes the size's (`SIZES`).
  library_size / library_dim / library_select: composable user modules
  (models/library.py); signature_tokens: prompt tokens from each user's trace
  signature (models/signature.py).
  `lora_residual` (exact LoRA aggregation) and `dtype` come from the run.
  """
  if size not in SIZES:
    raise ConfigError(f'model.m3t.size={size!r} is not one of {sorted(SIZES)}')
  width, depth, num_heads, mlp_width = dims(size, width, depth, num_heads, mlp_width)
  _check(width, depth, num_heads, mlp_width, lora_rank, lora_alpha, num_experts,
         expert_top_k, moe_balance, lora_targets, num_prompts, num_user_prompts,
         adapter_dim, num_registers, library_size, library_select, signature_tokens, ln_eps)
  if library_size and (library_dim < 1 or library_select > library_size):
    raise ConfigError(f'model.m3t: library_dim must be >= 1 and library_select <= '
                      f'library_size={library_size}')
  untimed = [m for m, layout in spec.modalities.items() if len(layout[0]) < 2
             or layout[0][0] < 2]
  if signature_tokens and untimed:   # the signature's rhythm needs two steps of a time axis
    raise ConfigError(f'not supported yet: model.m3t.signature_tokens with modalities '
                      f'{untimed} (no time axis of length >= 2 to read a rhythm from)')
  if dtype not in interface.DTYPES:
    raise ConfigError(f'model.dtype={dtype!r} is not one of {interface.DTYPES}')
  module = M3TModel(
      modalities=dict(spec.modalities), tasks=dict(spec.tasks), width=width, depth=depth,
      num_heads=num_heads, mlp_width=mlp_width, num_prompts=num_prompts, lora_rank=lora_rank,
      lora_alpha=lora_alpha, lora_targets=tuple(lora_targets), lora_residual=lora_residual,
      num_user_prompts=num_user_prompts, adapter_dim=adapter_dim, num_experts=num_experts,
      expert_top_k=expert_top_k, ln_eps=ln_eps, exact_gelu=exact_gelu,
      num_registers=num_registers, dtype=None if dtype == 'float32' else jnp.bfloat16,
      library_size=library_size, library_dim=library_dim, library_select=library_select,
      signature_tokens=signature_tokens)
  modality_tokens = sum(num_tokens(m[0], m[1], m[2] if len(m) > 2 else None)
                        for m in spec.modalities.values())
  return interface.ModelDef(
      name=f'm3t-{size}', init=lambda key: _init(module, spec, key),
      apply=lambda params, x, mask: _apply(module, params, x, mask),
      apply_path=lambda params, x, mask, path: _apply(module, params, x, mask, path),
      features=lambda params, x, mask: module.apply({'params': params}, x, mask,
                                                    features_only=True),
      apply_features=lambda params, x, mask: _apply_features(module, params, x, mask),
      role_of=role_of,
      module_weights=lambda counts: _module_weights(counts, depth, num_experts),
      lora_rank=lora_rank, lora_scale=lora_alpha / lora_rank if lora_rank else 0.0,
      num_experts=num_experts,
      tokens=num_prompts + num_user_prompts + num_registers + signature_tokens
      + modality_tokens,
      width=width, depth=depth, num_heads=num_heads, dtype=dtype, moe_balance=moe_balance,
      signature=(lambda examples: signature_lib.trace_statistics(
          examples, tuple(spec.modalities))) if signature_tokens else None,
      # The heads read the CLS token's final features (a library composes them first).
      head_inputs=None if library_size else lambda params, x, mask: module.apply(
          {'params': params}, x, mask, features_only=True)[..., 0, :],
      head_path=lambda task: ('heads', task),
      # MoEMLP's gelu is the tanh one: an exact-gelu MLP has no exact copy among experts.
      upcycle=(lambda base: upcycle(base, num_experts)) if num_experts and not exact_gelu
      else None)


def upcycle(dense_base: dict, num_experts: int) -> dict:
  """Sparse upcycling (Komatsuzaki et al. 2023): a dense base tree's MLPs as experts.

  {'base': the tree without its MLPs (MoE replaces them), 'experts': every expert
  a copy of its block's MLP}. The gate is not in it (it stays as drawn): with
  identical experts and top-k weights that sum to 1, the MoE model computes the
  dense one whatever the gate, and training makes the experts differ.
  """
  base = {k: v for k, v in dense_base.items() if k != 'backbone'}
  base['backbone'], experts = {}, {}
  for block, layers in dense_base['backbone'].items():
    if not block.startswith('block_'):
      base['backbone'][block] = layers
      continue
    base['backbone'][block] = {k: v for k, v in layers.items()
                               if k not in ('mlp_in', 'mlp_out')}
    tile = lambda x: np.broadcast_to(np.asarray(x), (num_experts,) + np.shape(x)).copy()
    dense_in, dense_out = layers['mlp_in']['dense'], layers['mlp_out']['dense']
    experts[block] = {'moe': {'w_in': tile(dense_in['kernel']), 'b_in': tile(dense_in['bias']),
                              'w_out': tile(dense_out['kernel']),
                              'b_out': tile(dense_out['bias'])}}
  return {'base': base, 'experts': {'backbone': experts}}


def _check(width, depth, num_heads, mlp_width, lora_rank, lora_alpha, num_experts,
           expert_top_k, moe_balance, lora_targets, *counts) -> None:
  for key, value in (('width', width), ('depth', depth), ('num_heads', num_heads),
                     ('mlp_width', mlp_width)):
    if value < 1:
      raise ConfigError(f'model.m3t.{key} must be >= 1, got {value}')
  if width % num_heads:
    raise ConfigError(f'model.m3t.width={width} is not divisible by '
                      f'model.m3t.num_heads={num_heads}')
  if lora_alpha <= 0 or moe_balance < 0:
    raise ConfigError('need model.m3t.lora_alpha > 0 and model.m3t.moe_balance >= 0')
  if min((lora_rank, num_experts) + tuple(counts[:-1])) < 0 or not counts[-1] > 0:
    raise ConfigError('model.m3t: counts (lora_rank, prompts, adapter_dim, num_experts, '
                      'num_registers, library_size, library_select, signature_tokens) must '
                      'be >= 0 and ln_eps > 0')
  if num_experts and not 1 <= expert_top_k <= num_experts:
    raise ConfigError(f'model.m3t.expert_top_k={expert_top_k} must be in '
                      f'[1, model.m3t.num_experts={num_experts}]')
  bad = sorted(set(lora_targets) - {'query', 'key', 'value', 'out'})
  if bad:
    raise ConfigError(f'model.m3t.lora_targets: unknown projection(s) {bad}; '
                      "known: ('query', 'key', 'value', 'out')")


def _init(module: M3TModel, spec, key):
  x = {m: jnp.zeros((1,) + tuple(layout[0])) for m, layout in spec.modalities.items()}
  if module.signature_tokens:
    x['signature'] = jnp.zeros((1, signature_lib.width(len(spec.modalities))))
  mask = jnp.ones((1, len(spec.modalities)), bool)
  return module.init(key, x, mask)['params']


def _apply(module: M3TModel, params, x, mask, path=None):
  """(outputs {task: [B, D]}, routing {block: (tokens routed [B, E], gate probs [B, E])});
  path: each example's blocks (early exit), or None: every block."""
  if not module.num_experts:
    return module.apply({'params': params}, x, mask, path=path), {}
  outputs, state = module.apply({'params': params}, x, mask, path=path,
                                mutable=['intermediates'])
  return outputs, _routing(state['intermediates']['backbone'])


def _apply_features(module: M3TModel, params, x, mask):
  """_apply's (outputs, routing) and every token's final features [B, L, width] (what
  `features` returns), from one pass."""
  outputs, state = module.apply({'params': params}, x, mask, mutable=['intermediates'])
  kept = state['intermediates']['backbone']
  return outputs, _routing(kept) if module.num_experts else {}, kept['tokens'][0]


def _routing(kept: dict) -> dict:
  return {b: (v['moe']['expert_tokens'][0], v['moe']['gate_probs'][0])
          for b, v in kept.items() if b.startswith('block_')}


def _module_weights(counts: dict, depth: int, num_experts: int) -> dict:
  """Module weights by role (`ModelDef.module_weights`): an encoder by the examples
  with its modality, its absent token by those without, a head by its labels,
  experts by the tokens routed to them, the rest by examples."""
  n = counts['examples']
  weights = {
      'encoders': {'encoders': {**counts['present'], 'absent': dict(counts['absent'])}},
      'heads': {'heads': dict(counts['labeled'])},
      'lora_a': counts['lora'], 'lora_b': counts['lora'],
      # Clients never change the residual: exact aggregation sets it.
      'lora_residual': jnp.zeros(()),
      'prompts': n, 'user_prompts': n, 'adapters': n, 'base': n,
      'library': n, 'selection': n, 'signature': n,
  }
  if num_experts:
    weights['experts'] = {'backbone': {}}
    for i in range(depth):
      block = f'block_{i}'
      routed = counts['routed']
      tokens = jnp.ones((num_experts,)) if routed is None else routed[block]
      weights['experts']['backbone'][block] = {'moe': {
          'gate': n, 'w_in': tokens, 'b_in': tokens, 'w_out': tokens, 'b_out': tokens}}
  return weights
