"""Builds a federated XR experiment from a config, validating it on the way."""
from typing import NamedTuple, Optional

import jax
import ml_collections
import optax

from fedxr_jax import algorithms
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import vectorize
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from fedxr_jax.models import m3t
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import coordination as coordination_lib
from fedxr_jax.topology import costs as costs_lib
from fedxr_jax.topology import layout as layout_lib
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
  m = config.model
  if m.width % m.num_heads:
    raise ConfigError(f'model.width={m.width} is not divisible by '
                      f'model.num_heads={m.num_heads}')
  for key in ('width', 'depth', 'num_heads', 'mlp_width'):
    if m[key] < 1:
      raise ConfigError(f'model.{key} must be >= 1, got {m[key]}')
  bad = sorted(set(m.lora_targets) - {'query', 'key', 'value', 'out'})
  if bad:
    raise ConfigError(f'model.lora_targets: unknown projection(s) {bad}; '
                      "known: ('query', 'key', 'value', 'out')")


def build(config) -> Experiment:
  validate(config)
  spec = synthetic.spec_from_config(config.data, config.local_steps)
  mc = config.model
  model = m3t.M3TModel(
      modalities=spec.model_modalities(),
      tasks=dict(zip(spec.tasks, spec.num_classes)),
      width=mc.width, depth=mc.depth, num_heads=mc.num_heads,
      mlp_width=mc.mlp_width, num_prompts=mc.num_prompts,
      lora_rank=mc.lora_rank, lora_alpha=mc.lora_alpha,
      lora_targets=tuple(mc.lora_targets))
  problem = xr_problem.make_xr_problem(spec, model)
  plan = config.plan.to_dict()
  unknown = sorted(set(plan) - set(m3t.ROLES))
  if unknown:
    raise ConfigError(f'plan names unknown parameter tree(s) {unknown}; '
                      f'known: {list(m3t.ROLES)}')
  # Trees the model does not have (no prompts, LoRA rank 0) need no plan.
  present = jax.eval_shape(problem.init_params, jax.random.key(0)).keys()
  plan = {role: mode for role, mode in plan.items() if role in present}
  mesh = vectorize.client_mesh() if jax.device_count() > 1 else None
  if mesh is not None and config.eval_unseen_clients % mesh.size:
    raise ConfigError(f'eval_unseen_clients={config.eval_unseen_clients} does not '
                      f'split evenly over {mesh.size} devices')
  world = synthetic.make_world(jax.random.fold_in(jax.random.key(config.seed), 7),
                               spec)
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
      flops_per_step=training_flops_per_step(problem, world, config.batch_size),
      algorithm=make_algorithm(config, topology.kind))
  return Experiment(config, spec, model, federation, world, mesh, layout)


def make_algorithm(config, topology_kind: str):
  algorithm = algorithms.make_algorithm(config.algorithm.name, config)
  if algorithm.name == 'scaffold' and topology_kind != 'centralized':
    raise ConfigError('not supported yet: algorithm.name=scaffold with '
                      f'topology.kind={topology_kind} (its control variates assume '
                      'a central server)')
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
