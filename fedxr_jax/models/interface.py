"""What a model is to the rest of the package: a `ModelDef` made for a `Spec`."""
from typing import Callable, NamedTuple, Optional

DTYPES = ('float32', 'bfloat16')


class Spec(NamedTuple):
  modalities: dict   # {name: (input shape, token shape[, token stride])}, mask order
  tasks: dict        # {name: output size}


class ModelDef(NamedTuple):
  """A model as the federated stages see it (pure functions over param dicts)."""
  name: str
  init: Callable      # key -> flax params of one example's shapes
  # (params, x {modality: [B, ...]}, modality_mask [B, M]) ->
  #   (outputs {task: [B, D]}, routing {block: (expert tokens [B, E], gate probs [B, E])})
  apply: Callable
  features: Callable  # (params, x, modality_mask) -> every token's features [B, L, width]
  role_of: Callable   # param path -> role ('base', 'lora_a', 'heads', ...)
  # (counts) -> {role: prefix tree of module weights} (`FederatedProblem.module_weights`)
  # from the data's counts: 'examples' (scalar), 'lora' (scalar, or [r_max] per rank
  # slice), 'present' / 'absent' {modality: examples with / without it}, 'labeled'
  # {task: labels}, 'pairs' {task: {modality: its labels with the modality}},
  # 'routed' ({block: tokens routed to each expert [E]} of local
  # training; None: no steps, every expert held).
  module_weights: Callable
  lora_rank: int      # r_max (0: no LoRA)
  lora_scale: float   # alpha / r
  num_experts: int
  tokens: int         # tokens per example the backbone sees (prompts and CLS included)
  width: int
  depth: int
  num_heads: int
  dtype: str          # compute dtype of the frozen base ('float32' | 'bfloat16')
  moe_balance: float  # weight of the MoE load-balancing loss
  # Optional (params, x, modality_mask, path [B] int in 1..depth) -> apply's outputs
  # with each example read out after its own blocks (early exit; an int: that many
  # blocks for every example, the rest not run); None: the model has no exits.
  apply_path: Optional[Callable] = None
  # Optional (a user's trace examples {'x', 'modality_mask', 'example_mask'}) -> [S]:
  # the user signature the model conditions on, given to every example as
  # examples['signature'] (`compose.xr_problem`); None: it takes none.
  signature: Optional[Callable] = None
  # Optional (params, x, modality_mask) -> (apply's outputs, routing, features'
  # [B, L, width]) from one pass; None: a caller runs apply and features.
  apply_features: Optional[Callable] = None
  # Optional (params, x, modality_mask) -> [B, width]: what every task head reads, each
  # head a dense layer (outputs = inputs @ kernel + bias); None: the heads read no one
  # feature vector (closed-form heads, `algorithms.warm_start`, are refused).
  head_inputs: Optional[Callable] = None
  # Optional task -> the path of its head's {'kernel', 'bias'} in the params.
  head_path: Optional[Callable] = None
  # Optional dense base tree -> {'base': tree, 'experts': tree}: a checkpoint of this
  # model without experts as this one (sparse upcycling: every expert a copy of the
  # dense MLP); None: a dense checkpoint does not fit (no experts, or no exact copy).
  upcycle: Optional[Callable] = None
