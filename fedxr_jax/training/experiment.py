"""Builds a federated XR experiment from a config, validating it on the way."""
import difflib
from typing import NamedTuple, Optional

import jax
import ml_collections
import optax

from fedxr_jax import algorithms
from fedxr_jax.algorithms import lora_rules
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.data import shift
from fedxr_jax.data import sources
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from fedxr_jax.models import m3t
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import coordination as coordination_lib
from fedxr_jax.topology import costs as costs_lib
from fedxr_jax.topology import layout as layout_lib
from fedxr_jax.training import pretrained
from fedxr_jax.training import xr_problem

OPTIMIZERS = ('sgd', 'adam', 'yogi', 'adagrad')
POSITIVE = ('num_rounds', 'population_size', 'cohort_size', 'local_steps',
            'batch_size', 'eval_every', 'checkpoint_every', 'max_checkpoints')


class Experiment(NamedTuple):
  config: ml_collections.ConfigDict
  spec: synthetic.XRSpec
  model: m3t.M3TModel
  federation: round_lib.Federation
  world: dict
  mesh: Optional[jax.sharding.Mesh]
  layout: layout_lib.RoundLayout   # per-round topology arrays (host)
  problem: Optional[FederatedProblem] = None   # what the federation runs


def make_optimizer(cfg, where: str) -> optax.GradientTransformation:
  name, lr = cfg.name, cfg.learning_rate
  if lr <= 0:
    raise ConfigError(f'{where}.learning_rate must be > 0, got {lr}')
  if name == 'sgd':
    return optax.sgd(lr, momentum=cfg.get('momentum') or None)
  if name == 'adam':
    return optax.adam(lr, b1=cfg.get('b1', 0.9), b2=cfg.get('b2', 0.99),
                      eps=cfg.get('eps', 1e-3))
  if name == 'yogi':
    return optax.yogi(lr, b1=cfg.get('b1', 0.9), b2=cfg.get('b2', 0.99),
                      eps=cfg.get('eps', 1e-3))
  if name == 'adagrad':
    return optax.adagrad(lr, eps=cfg.get('eps', 1e-3))
  raise ConfigError(f'{where}.name={name!r} is not one of {OPTIMIZERS}')


def validate(config) -> None:
  """Checks what the config types alone cannot; raises ConfigError."""
  for key in POSITIVE:
    if config[key] < 1:
      raise ConfigError(f'{key} must be >= 1, got {config[key]}')
  if config.cohort_size > config.population_size:
    raise ConfigError(f'cohort_size={config.cohort_size} is larger than '
                      f'population_size={config.population_size}')
  if config.chunk_size < 0:
    raise ConfigError(f'chunk_size must be >= 0, got {config.chunk_size}')
  if config.eval_unseen_clients < 0:
    raise ConfigError('eval_unseen_clients must be >= 0')
  d = config.data
  if not d.modalities:
    raise ConfigError('data.modalities is empty')
  if not d.tasks:
    raise ConfigError('data.tasks is empty')
  if not d.devices:
    raise ConfigError('data.devices is empty')
  if d.device_weights and len(d.device_weights) != len(d.devices):
    raise ConfigError(f'data.device_weights has {len(d.device_weights)} entries '
                      f'for {len(d.devices)} devices')
  if any(w < 0 for w in d.device_weights) or (d.device_weights and
                                              sum(d.device_weights) <= 0):
    raise ConfigError('data.device_weights must be >= 0 with a positive sum')
  if not 1 <= d.min_examples <= d.max_examples:
    raise ConfigError(f'need 1 <= data.min_examples ({d.min_examples}) <= '
                      f'data.max_examples ({d.max_examples})')
  if d.test_examples < 1:
    raise ConfigError('data.test_examples must be >= 1')
  for key in ('modality_dropout', 'task_keep_prob'):
    if not 0.0 <= d[key] <= 1.0:
      raise ConfigError(f'data.{key} must be in [0, 1], got {d[key]}')
  if d.dirichlet_alpha <= 0:
    raise ConfigError('data.dirichlet_alpha must be > 0')
  synthetic.check_data_config(d)   # environments and the SHIFT blocks
  m = config.model
  if m.width % m.num_heads:
    raise ConfigError(f'model.width={m.width} is not divisible by '
                      f'model.num_heads={m.num_heads}')
  for key in ('width', 'depth', 'num_heads', 'mlp_width'):
    if m[key] < 1:
      raise ConfigError(f'model.{key} must be >= 1, got {m[key]}')
  if m.lora_alpha <= 0 or m.moe_balance < 0:
    raise ConfigError('need model.lora_alpha > 0 and model.moe_balance >= 0')
  if config.lora.rule not in lora_rules.RULES:
    raise ConfigError(f'lora.rule={config.lora.rule!r} is not one of {lora_rules.RULES}')
  for key in ('num_prompts', 'num_user_prompts', 'adapter_dim', 'num_experts', 'lora_rank'):
    if m[key] < 0:
      raise ConfigError(f'model.{key} must be >= 0, got {m[key]}')
  if m.num_experts and not 1 <= m.expert_top_k <= m.num_experts:
    raise ConfigError(f'model.expert_top_k={m.expert_top_k} must be in '
                      f'[1, model.num_experts={m.num_experts}]')
  if config.lora.device_ranks and d.get('source', 'synthetic') != 'synthetic':
    raise ConfigError('not supported yet: lora.device_ranks with data.source='
                      f'{d.source!r} (real datasets have one device class)')
  bad = sorted(set(m.lora_targets) - {'query', 'key', 'value', 'out'})
  if bad:
    raise ConfigError(f'model.lora_targets: unknown projection(s) {bad}; '
                      "known: ('query', 'key', 'value', 'out')")


def build(config) -> Experiment:
  validate(config)
  spec, world, model, problem = make_problem(config)
  # model.pretrained: frozen base (and encoders...) from fedxr-pretrain.
  problem = pretrained.with_pretrained(problem, config)
  plan = make_plan(config)
  # Trees the model does not have (no prompts, LoRA rank 0) need no plan.
  present = jax.eval_shape(problem.init_params, jax.random.key(0)).keys()
  plan = {role: mode for role, mode in plan.items() if role in present}
  mesh = vectorize.client_mesh() if jax.device_count() > 1 else None
  if mesh is not None and config.eval_unseen_clients % mesh.size:
    raise ConfigError(f'eval_unseen_clients={config.eval_unseen_clients} does not '
                      f'split evenly over {mesh.size} devices')
  topology = layout_lib.TopologySpec.from_config(config.topology)
  layout = layout_lib.RoundLayout(topology, spec, world, seed=config.seed,
                                  population=config.population_size,
                                  cohort=config.cohort_size)
  federation = round_lib.build_federation(
      problem, plan, seed=config.seed,
      population_size=config.population_size, cohort_size=config.cohort_size,
      local_steps=config.local_steps, batch_size=config.batch_size,
      client_optimizer=make_optimizer(config.client_optimizer, 'client_optimizer'),
      server_optimizer=make_optimizer(config.server_optimizer, 'server_optimizer'),
      chunk_size=config.chunk_size, mesh=mesh, shuffle=config.shuffle,
      coordination=make_coordination(topology, config.population_size),
      cost_model=costs_lib.make_cost_model(
          topology.kind, channel_lib.Channel(**config.channel.to_dict()),
          gamma=topology.gamma, k2=topology.k2, area_m=spec.area_m),
      # The cost model times the same model deadlines do (data.hardware.model_scale).
      flops_per_step=training_flops_per_step(problem, world, config.batch_size)
      * config.data.get('hardware', {}).get('model_scale', 1.0),
      algorithm=make_algorithm(config, topology.kind, spec.tasks),
      aggregation_rule=make_lora_rule(config, topology.kind))
  return Experiment(config, spec, model, federation, world, mesh, layout, problem)


def make_problem(config) -> tuple:
  """(spec, world, model, problem) of a config; the problem inits at random."""
  # config.data.source: the synthetic federation or a real dataset.
  spec, world, client_data_fn = sources.make_data(config)
  model = make_model(config, spec)
  make = lambda spec: xr_problem.make_xr_problem(
      spec, model, device_lora_ranks=tuple(config.lora.device_ranks),
      balance_coef=config.model.moe_balance, client_data_fn=client_data_fn)
  if isinstance(spec, synthetic.XRSpec) and synthetic.needs_model_costs(spec):
    # Deadlines and memory limits (data.hardware) need the model's step
    # FLOPs and tree sizes, measured on the same problem without them.
    probe = make(synthetic.without_model_limits(spec))
    spec = synthetic.with_model_costs(
        spec, training_flops_per_step(probe, world, config.batch_size),
        role_train_bytes(config, spec, probe))
  return spec, world, model, make(spec)


def role_train_bytes(config, spec, problem) -> tuple:
  """((role, bytes), ...) to train each trained tree (`data.shift.role_train_bytes`)."""
  shapes = jax.eval_shape(problem.init_params, jax.random.key(0))
  plan = make_plan(config)
  trained = [r for r in shapes if plan.get(r, 'frozen') != 'frozen']
  opt = config.client_optimizer
  slots = {'adam': 2, 'yogi': 2, 'adagrad': 1}.get(opt.name, 1 if opt.get('momentum') else 0)
  mc = config.model
  tokens = mc.num_prompts + mc.num_user_prompts + sum(
      m3t.num_tokens(shape, token) for shape, token in spec.model_modalities().values())
  return shift.role_train_bytes(
      {r: trees.tree_bytes(t) for r, t in shapes.items()}, trained,
      optimizer_slots=slots,
      activations=shift.activation_bytes(config.batch_size, tokens, mc.width, mc.depth,
                                         mc.num_heads),
      head_activations=4.0 * config.batch_size * tokens * mc.width)


def make_model(config, spec: synthetic.XRSpec) -> m3t.M3TModel:
  mc = config.model
  return m3t.M3TModel(
      modalities=spec.model_modalities(),
      tasks=dict(zip(spec.tasks, spec.num_classes)),
      width=mc.width, depth=mc.depth, num_heads=mc.num_heads,
      mlp_width=mc.mlp_width, num_prompts=mc.num_prompts,
      lora_rank=mc.lora_rank, lora_alpha=mc.lora_alpha,
      lora_targets=tuple(mc.lora_targets),
      lora_residual=config.lora.rule in lora_rules.EXACT_RULES,
      num_user_prompts=mc.num_user_prompts, adapter_dim=mc.adapter_dim,
      num_experts=mc.num_experts, expert_top_k=mc.expert_top_k)


# Plan keys a user writes; `lora` expands into lora_a / lora_b (+ residual)
# by `lora.rule`.
PLAN_KEYS = ('base', 'lora', 'prompts', 'user_prompts', 'adapters', 'experts',
             'encoders', 'heads')


def make_plan(config) -> dict:
  """{role: mode} of the model's trees from `config.plan` and `config.lora.rule`."""
  plan = config.plan.to_dict()
  unknown = sorted(set(plan) - set(PLAN_KEYS))
  if unknown:
    close = {k: difflib.get_close_matches(k, PLAN_KEYS, n=1) for k in unknown}
    hints = ''.join(f' ({k!r}: did you mean {c[0]!r}?)' for k, c in close.items() if c)
    raise ConfigError(f'plan names unknown parameter tree(s) {unknown}{hints}; '
                      f'known: {list(PLAN_KEYS)}')
  lora_mode = plan.pop('lora', 'frozen')
  if config.model.lora_rank:
    plan.update(lora_rules.plan_modes(config.lora.rule, lora_mode))
  return plan


def make_lora_rule(config, topology_kind: str):
  lc = config.lora
  ranks = tuple(lc.device_ranks)
  if ranks and len(ranks) != len(config.data.devices):
    raise ConfigError(f'lora.device_ranks has {len(ranks)} entries for '
                      f'{len(config.data.devices)} data.devices')
  if any(not 1 <= r <= config.model.lora_rank for r in ranks):
    raise ConfigError(f'lora.device_ranks={ranks} must be in [1, model.lora_rank='
                      f'{config.model.lora_rank}]')
  if lc.rule in lora_rules.EXACT_RULES and topology_kind != 'centralized':
    raise ConfigError(f'not supported yet: lora.rule={lc.rule} with topology.kind='
                      f'{topology_kind} (the residual needs the central average)')
  if not config.model.lora_rank:
    return None
  return lora_rules.make_rule(
      lc.rule, scale=config.model.lora_alpha / config.model.lora_rank,
      hetlora_weights=lc.hetlora_weights, heterogeneous=bool(ranks))


def make_algorithm(config, topology_kind: str, tasks=None):
  algorithm = algorithms.make_algorithm(config.algorithm.name, config, tasks)
  central = {'scaffold': 'its control variates assume a central server',
             'ewc': 'its Fisher and anchor are kept by a central server'}
  if algorithm.name in central and topology_kind != 'centralized':
    raise ConfigError(f'not supported yet: algorithm.name={algorithm.name} with '
                      f'topology.kind={topology_kind} ({central[algorithm.name]})')
  if algorithm.personalize is not None and topology_kind == 'decentralized':
    raise ConfigError(f'not supported yet: algorithm.name={algorithm.name} with '
                      'topology.kind=decentralized (clients already keep their own '
                      'models there)')
  return algorithm


def make_coordination(topology: layout_lib.TopologySpec, population: int):
  kind = topology.kind
  if kind == 'centralized':
    return coordination_lib.centralized()
  if kind == 'tree':
    return coordination_lib.spanning_tree()
  if kind == 'hierarchical':
    return coordination_lib.hierarchical(topology.num_clusters, topology.k2)
  if kind == 'semi':
    return coordination_lib.semi_decentralized(topology.gamma)
  return coordination_lib.decentralized(population, topology.gamma)


def training_flops_per_step(problem, world, batch_size: int) -> float:
  """FLOPs of one local step (forward + backward), from XLA's cost analysis."""
  params = jax.eval_shape(problem.init_params, jax.random.key(0))
  data = jax.eval_shape(lambda: problem.client_data(world, jax.numpy.int32(0), 'train'))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((batch_size,) + x.shape[1:], x.dtype),
                       data['examples'])
  meta = {k: v for k, v in data.items() if k != 'examples'}
  grad = jax.grad(lambda p, b, m: problem.loss(p, b, m)[0])
  analysis = jax.jit(grad).lower(params, batch, meta).cost_analysis()
  return float(analysis.get('flops', 0.0))
