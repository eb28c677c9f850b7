"""Builds a federated XR experiment from a config, validating it on the way.

Each component gets its own config block: the topology `config.topology`
(`fedxr_jax.topology.make`), the algorithm `config.algorithm.<name>`
(`fedxr_jax.algorithms.make`), the LoRA rule `config.lora` (a plan mode, an
update transform or an aggregator), the optimizers theirs.
"""
import dataclasses
import difflib
from typing import NamedTuple, Optional

import jax
import ml_collections
import numpy as np

from fedxr_jax import algorithms
from fedxr_jax import topology as topology_registry
from fedxr_jax.algorithms import lora_rules
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import chunking
from fedxr_jax.core import device_costs
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import rng
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import round_plan
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.data import shift
from fedxr_jax.data import sources
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from fedxr_jax.models import registry as models
from fedxr_jax.models.interface import ModelDef
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.compose import asynchrony
from fedxr_jax.compose import optimizers
from fedxr_jax.compose import pipeline
from fedxr_jax.compose import pretrained
from fedxr_jax.compose import xr_problem
from fedxr_jax.privacy import feature as privacy_feature

@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """The `model` block's own keys: the model's name (its settings: `model.<name>`,
  `models/registry.py`), the frozen base's compute dtype (float32 | bfloat16:
  PEFT trees and optimizers stay float32), and a pretrained directory ('' =
  random init; `fedxr-pretrain`, `fedxr-models import`) with the trees taken
  from it (the others start fresh for PEFT)."""
  name: str = 'm3t'
  dtype: str = 'float32'
  pretrained: str = ''
  pretrained_roles: tuple = ('base', 'encoders')


POSITIVE = ('num_rounds', 'population_size', 'cohort_size', 'local_steps',
            'batch_size', 'eval_every', 'checkpoint_every', 'max_checkpoints')


class Experiment(NamedTuple):
  config: ml_collections.ConfigDict
  spec: synthetic.XRSpec
  model: ModelDef
  federation: round_lib.Federation
  world: dict               # the run's source: its data and the features' arrays of the seed
  mesh: Optional[jax.sharding.Mesh]
  problem: FederatedProblem
  costs: device_costs.DeviceCosts
  sample_cohort: callable   # round_idx -> [C] numpy cohort
  layout: callable          # (round_idx, cohort) -> (topology arrays, graph stats): this seed's
  features: tuple = ()      # the features' `Contribution`s (`compose.pipeline`)

  @property
  def key(self) -> np.ndarray:
    """The seed's key data: `federation.init(world, key)`."""
    return rng.key_data(self.config.seed)

  @property
  def privacy(self) -> Optional[privacy_feature.Privacy]:
    """DP (client or example level) and its accounting; None without DP."""
    return pipeline.feature_info(self.features, 'privacy') if self.features else None

  def plan(self, round_idx: int):
    """(RoundPlan of a round, host-side graph statistics): computed once per round."""
    return round_plan.make_plan(self.sample_cohort, self.layout, round_idx)

  def host_metrics(self, rounds_done: int) -> dict:
    """Per-row metrics known on the host (the accountant's epsilon after the round)."""
    return pipeline.host_metrics(self.features, rounds_done)


def validate(config) -> None:
  """Checks what the config types alone cannot; raises ConfigError."""
  for key in POSITIVE:
    if config[key] < 1:
      raise ConfigError(f'{key} must be >= 1, got {config[key]}')
  if config.cohort_size > config.population_size:
    raise ConfigError(f'cohort_size={config.cohort_size} is larger than '
                      f'population_size={config.population_size}')
  chunking.parse(config.chunk_size)
  if config.eval_unseen_clients < 0:
    raise ConfigError('eval_unseen_clients must be >= 0')
  _validate_data(config.data)
  _validate_model(config)


def _validate_data(d) -> None:
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


def _validate_model(config) -> None:
  """What the model block alone cannot check (its own factory checks its settings)."""
  d = config.data
  models.check_name(config.model.name)
  if config.lora.rule not in lora_rules.RULES:
    raise ConfigError(f'lora.rule={config.lora.rule!r} is not one of {lora_rules.RULES}')
  if config.lora.device_ranks and d.source != 'synthetic':
    raise ConfigError('not supported yet: lora.device_ranks with data.source='
                      f'{d.source!r} (real datasets have one device class)')


def expand_preset(config) -> tuple:
  """(config, message): a preset name (fedadam, fedper...) as what it is.

  A preset sets its keys only where the config still holds FedAvg's value
  (`algorithms.PRESETS`), so `--config.algorithm.name=fedadam
  --config.server_optimizer.learning_rate=0.03` keeps the 0.03.
  """
  name = config.algorithm.name
  if name not in algorithms.PRESETS:
    return config, ''
  config = ml_collections.ConfigDict(config.to_dict())
  config.algorithm.name = 'fedavg'
  applied = []
  for key, (fedavg_value, value) in algorithms.PRESETS[name].items():
    *parents, leaf = key.split('.')
    block = config
    for p in parents:
      block = block[p]
    if block[leaf] == fedavg_value:
      block[leaf] = value
      applied.append(f'{key}={value}')
  return config, f"algorithm {name} = fedavg with {', '.join(applied) or 'your settings'}"


def run_facts(config, plan: dict, spec) -> algorithm_lib.RunFacts:
  """What a component may know of the run (`spec`: the data's, its tasks, modalities, devices)."""
  opt = config.client_optimizer
  return algorithm_lib.RunFacts(
      seed=config.seed, population_size=config.population_size,
      cohort_size=config.cohort_size, local_steps=config.local_steps,
      batch_size=config.batch_size, plan=dict(plan), tasks=tuple(spec.tasks),
      modalities=tuple(spec.modalities), devices=tuple(spec.devices),
      task_kinds=tuple(td.kind for td in spec.task_defs),
      example_dp=config.privacy.mode == 'example',
      client_optimizer=opt.name, client_learning_rate=float(opt.learning_rate),
      client_momentum=float(opt.sgd.momentum if opt.name == 'sgd' else 0.0),
      num_rounds=config.num_rounds)


def build(config) -> Experiment:
  config, _ = expand_preset(config)
  validate(config)
  spec, world, model, problem, costs = make_problem(config)
  # model.pretrained: frozen base (and encoders...) from fedxr-pretrain.
  problem = pretrained.with_pretrained(problem, config, spec.model_modalities(),
                                       upcycle=model.upcycle)
  plan = present_plan(make_plan(config, model.lora_rank), problem)
  mesh = vectorize.client_mesh() if jax.device_count() > 1 else None
  if mesh is not None and config.eval_unseen_clients % mesh.size:
    raise ConfigError(f'eval_unseen_clients={config.eval_unseen_clients} does not '
                      f'split evenly over {mesh.size} devices')
  facts = run_facts(config, plan, spec)
  features = pipeline.contributions(config, pipeline.RunContext(
      facts, config.num_rounds, spec, model, problem, world))
  problem = pipeline.wrap_problem(problem, features)
  world = pipeline.source(world, features, config.seed)
  compiled = compiled_facts(config, facts)   # a Poisson cohort: padded to its maximum
  topology = make_topology(config, compiled, problem, world)
  algorithm = make_algorithm(config, topology, compiled)
  transforms, aggregator = pipeline.assemble(config, features, topology, algorithm)
  federation = round_lib.build_federation(
      problem, plan, population_size=config.population_size,
      cohort_size=compiled.cohort_size, local_steps=config.local_steps,
      batch_size=config.batch_size,
      client_optimizer=optimizers.make(config.client_optimizer, 'client_optimizer'),
      server_optimizer=optimizers.make(config.server_optimizer, 'server_optimizer'),
      chunk_size=config.chunk_size, mesh=mesh, shuffle=config.shuffle,
      topology=topology, algorithm=algorithm, transforms=transforms, aggregator=aggregator,
      costs=costs, schedule_by_budget=config.schedule_by_budget, source=world,
      memory_budget_gb=config.memory_budget_gb,
      private_grads=pipeline.private_grads(features),
      warm_start=pipeline.warm_start_fn(features),
      lr_schedule=optimizers.schedule(config))
  if asynchrony.enabled(config):   # server steps on a virtual clock (issue 22)
    federation = asynchrony.make(config, federation, problem, spec,
                                 pipeline.feature_info(features, 'privacy'))
  sample, layout = planning(config, topology)
  return Experiment(config, spec, model, federation, world, mesh, problem, costs, sample,
                    layout, features)


def planning(config, topology) -> tuple:
  """(sample_cohort, layout) of a seed: a round's cohort and topology arrays, or
  a server step's candidates (`compose.asynchrony.planning`). A Poisson-sampled
  run's cohorts come from `privacy.poisson` (padded to `compiled_facts`)."""
  if asynchrony.enabled(config):
    privacy_feature.check_asynchronous(config.privacy)
    return asynchrony.planning(config)
  poisson = privacy_feature.cohort_sampler(
      config.privacy, seed=config.seed, population=config.population_size,
      cohort_size=config.cohort_size, rounds=config.num_rounds)
  return (poisson or round_plan.cohort_sampler(config.seed, config.population_size,
                                               config.cohort_size), topology.layout)


def compiled_facts(config, facts: algorithm_lib.RunFacts) -> algorithm_lib.RunFacts:
  """`facts` of the compiled round: its cohort size (Poisson: the padded maximum).

  The features keep the config's facts (DP divides by the expected cohort size).
  """
  return dataclasses.replace(facts, cohort_size=privacy_feature.compiled_cohort_size(
      config.privacy, population=config.population_size, cohort_size=config.cohort_size,
      rounds=config.num_rounds))


# Config keys that are data of the compiled round, and where each lives: lanes
# (a sweep's values, a track's seeds) that differ only in these and the seed
# run one program (`training.loop`).
DATA_KEYS = {
    'client_optimizer.learning_rate': "server.hyperparams['client_optimizer']",
    'server_optimizer.learning_rate': 'server.opt_state.hyperparams (optax.inject_hyperparams)',
    'algorithm.fedprox.mu': "server.algorithm['mu']",
    'algorithm.ditto.lam': "server.algorithm['lam']",
    'algorithm.ewc.lam': "server.algorithm['lam']",
    'algorithm.crossmodal_distill.weight': "server.algorithm['weight']",
    'algorithm.offload.fraction': "server.algorithm['fraction']",
    'algorithm.mas.lam': "server.algorithm['lam']",
    'algorithm.lwf.heads': "server.algorithm['weights'][0]",
}


def not_data(key: str, config) -> Optional[str]:
  """Why `key` is compiled into this config's round (None: it is data)."""
  if key not in DATA_KEYS:
    return (f'{key} is compiled into the round (it sets shapes or structure); only '
            f'{sorted(DATA_KEYS)} are data')
  if asynchrony.not_data(config) is not None:
    return f'{key}: {asynchrony.not_data(config)}'
  if key == 'client_optimizer.learning_rate' and config.algorithm.name == 'scaffold':
    return ('SCAFFOLD compiles the client learning rate into its control-variate step '
            '(algorithms/scaffold.py)')
  return None


def _flat(config) -> dict:
  out = {}
  def walk(block, prefix):
    for k, v in block.items():
      if hasattr(v, 'items'):
        walk(v, f'{prefix}{k}.')
      else:
        out[f'{prefix}{k}'] = v
  walk(config.to_dict() if hasattr(config, 'to_dict') else config, '')
  return out


def program_key(config) -> str:
  """What compiles a run's round: its config without the seed and the data keys.

  Lanes with one key share a build and a program (`for_lane`); the data keys a
  lane sets must be data for this config (`not_data`), else they count too.
  """
  config, _ = expand_preset(config)
  flat = _flat(config)
  data = [k for k in DATA_KEYS if not_data(k, config) is None]
  return repr(sorted((k, v) for k, v in flat.items() if k != 'seed' and k not in data))


def for_lane(exp: Experiment, config) -> Optional[Experiment]:
  """`exp` for a lane of the same program (`program_key`): its seed's data, plans
  and accounting; None where the seed changes what compiles (real data whose
  partition sets shapes, DP-SGD noise calibrated on the seed's clients)."""
  config, _ = expand_preset(config)
  if config.seed == exp.config.seed:
    return exp._replace(config=config)
  data = sources.make_data(config)
  world = data.source
  # The synthetic spec is the config's; a recorded dataset's depends on its partition.
  if not isinstance(exp.spec, synthetic.XRSpec) and data.spec != exp.spec:
    return None
  facts = run_facts(config, exp.federation.plan, exp.spec)
  features = pipeline.contributions(config, pipeline.RunContext(
      facts, config.num_rounds, exp.spec, exp.model, exp.problem, world))
  privacy = pipeline.feature_info(features, 'privacy')
  if privacy is not None and privacy.noise_multiplier != exp.privacy.noise_multiplier:
    return None   # DP-SGD's noise multiplier is a constant of local training
  world = pipeline.source(world, features, config.seed)
  if trees.shapes(world) != trees.shapes(exp.world):
    return None
  topology = make_topology(config, compiled_facts(config, facts), exp.problem, world)
  sample, layout = planning(config, topology)
  return exp._replace(config=config, world=world, sample_cohort=sample,
                      layout=layout, features=features)


def same_data_keys(a, b) -> bool:
  """Whether two configs give the data keys the same values (a lane needs no `lane_server`)."""
  fa, fb = _flat(expand_preset(a)[0]), _flat(expand_preset(b)[0])
  return all(fa.get(k) == fb.get(k) for k in DATA_KEYS)


def lane_server(exp: Experiment, server):
  """The round-0 server state of `exp.config` where a lane sets data keys its
  program was built with other values of: each piece as its own build makes it."""
  config = exp.config
  changes = {'hyperparams': {**server.hyperparams, 'client_optimizer': local_lib.hyperparams_of(
      optimizers.make(config.client_optimizer, 'client_optimizer'))}}
  if exp.federation.topology.uses_server_optimizer:
    changes['opt_state'] = optimizers.make(config.server_optimizer,
                                           'server_optimizer').init(server.shared)
  algorithm = make_algorithm(config, exp.federation.topology, compiled_facts(
      config, run_facts(config, exp.federation.plan, exp.spec)))
  changes['algorithm'] = algorithm.init_server_state(server.shared)
  return server.replace(**changes)


def make_topology(config, facts, problem, world):
  """The topology of `config.topology`, laid out on this world's clients."""
  return topology_registry.make(
      config.topology, facts=facts, geography=problem_lib.geography(problem, world),
      channel=channel_lib.Channel(**config.channel.to_dict()))


def present_plan(plan: dict, problem: FederatedProblem) -> dict:
  """Trees the model does not have (no prompts, LoRA rank 0) need no plan."""
  present = jax.eval_shape(lambda: problem.init_params(jax.random.key(0))).keys()
  return {role: mode for role, mode in plan.items() if role in present}


def make_problem(config) -> tuple:
  """(spec, world, model, problem, device costs) of a config; random init.

  The problem is built once. Deadlines and memory limits (data.hardware)
  need the model's step FLOPs and tree sizes, measured on the model before
  the data that depends on them is generated.
  """
  data = sources.make_data(config)
  spec, world = data.spec, data.source
  model = make_model(config, spec)
  problem = xr_problem.make_xr_problem(
      spec, model, device_lora_ranks=tuple(config.lora.device_ranks),
      client_data_fn=data.client_data,
      client_position_fn=data.client_position, client_device_fn=data.client_device)
  plan = present_plan(make_plan(config, model.lora_rank), problem)
  scale = sources.model_scale(spec, config)
  if sources.generated(spec) and synthetic.needs_model_costs(spec):
    free = synthetic.without_model_limits(spec)
    example = xr_problem.data_fn(free, tuple(config.lora.device_ranks),
                                 sources.client_data_of(free), model.signature)
    costs = measure_device_costs(problem, example, world, plan, config.batch_size)
    spec = synthetic.with_model_costs(spec, costs.flops_per_step,
                                      role_train_bytes(config, model, problem))
    problem = problem._replace(client_data=xr_problem.data_fn(
        spec, tuple(config.lora.device_ranks), sources.client_data_of(spec),
        model.signature))
  else:
    costs = measure_device_costs(problem, problem.client_data, world, plan,
                                 config.batch_size)
  # The cost model times the same model deadlines do (sources.model_scale).
  costs = device_costs.DeviceCosts(costs.flops_per_step * scale,
                                   costs.flops_per_forward_example * scale,
                                   half_share=float(config.model.dtype == 'bfloat16'))
  return spec, world, model, problem, costs


def role_train_bytes(config, model: ModelDef, problem) -> tuple:
  """((role, bytes), ...) to train each trained tree (`data.shift.role_train_bytes`)."""
  shapes = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  plan = make_plan(config, model.lora_rank)
  trained = [r for r in shapes if plan.get(r, 'frozen') != 'frozen']
  opt = config.client_optimizer
  # Optimizer state per parameter: Adam and Yogi keep two moments, Adagrad one,
  # SGD one with momentum.
  slots = {'adam': 2, 'yogi': 2, 'adagrad': 1, 'sgd': int(bool(opt.sgd.momentum))}[opt.name]
  return shift.role_train_bytes(
      {r: trees.tree_bytes(t) for r, t in shapes.items()}, trained,
      optimizer_slots=slots,
      activations=shift.activation_bytes(config.batch_size, model.tokens, model.width,
                                         model.depth, model.num_heads),
      head_activations=4.0 * config.batch_size * model.tokens * model.width)


def make_model(config, spec) -> ModelDef:
  """The model of `config.model` (its name's block) for the data's modalities and tasks."""
  name = config.model.name
  model_spec = models.Spec(spec.model_modalities(), dict(zip(spec.tasks, spec.head_sizes)))
  model = models.make(name, config.model[name], model_spec,
                      lora_residual=config.lora.rule in lora_rules.EXACT_RULES,
                      dtype=config.model.dtype)
  # An algorithm's own modules or task paths (algorithms/registry.py EXTENSIONS).
  return algorithms.registry.extend_model(config.algorithm, model, model_spec,
                                          make_plan(config, model.lora_rank))


# Plan keys a user writes; `lora` expands into lora_a / lora_b (+ residual)
# by `lora.rule`.
PLAN_KEYS = ('base', 'lora', 'prompts', 'user_prompts', 'adapters', 'experts',
             'encoders', 'heads', 'library', 'selection', 'signature')


def make_plan(config, lora_rank: int) -> dict:
  """{role: mode} of the model's trees from `config.plan` and `config.lora.rule`
  (`lora_rank`: the model's; 0, no LoRA trees)."""
  plan = config.plan.to_dict()
  unknown = sorted(set(plan) - set(PLAN_KEYS))
  if unknown:
    close = {k: difflib.get_close_matches(k, PLAN_KEYS, n=1) for k in unknown}
    hints = ''.join(f' ({k!r}: did you mean {c[0]!r}?)' for k, c in close.items() if c)
    raise ConfigError(f'plan names unknown parameter tree(s) {unknown}{hints}; '
                      f'known: {list(PLAN_KEYS)}')
  lora_mode = plan.pop('lora', 'frozen')
  if lora_rank:
    plan.update(lora_rules.plan_modes(config.lora.rule, lora_mode))
  return plan


def make_algorithm(config, topology, facts: algorithm_lib.RunFacts):
  name = config.algorithm.name
  algorithms.registry.check_name(name)
  algorithm = algorithms.make(name, config.algorithm[name], facts)
  if algorithm.needs_server and not topology.has_server:
    raise ConfigError(f'not supported yet: algorithm.name={algorithm.name} with '
                      f'topology.kind={topology.kind} (its state lives on a central '
                      'server)')
  if algorithm.personalize is not None and topology.own_models is not None:
    raise ConfigError(f'not supported yet: algorithm.name={algorithm.name} with '
                      f'topology.kind={topology.kind} (clients already keep their own '
                      'models there)')
  return algorithm


def measure_device_costs(problem: FederatedProblem, client_data, source, plan: dict,
                         batch_size: int) -> device_costs.DeviceCosts:
  """FLOPs of one local step of the trees the plan trains, and of one forward.

  XLA's cost analysis of the loss gradient with respect to the trained
  trees only (a frozen tree costs its forward and the backward through it,
  not its own weight gradients), so LoRA, prompts and full tuning differ.
  """
  params = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  data = jax.eval_shape(lambda: client_data(source, jax.numpy.int32(0), 'train', 0))
  examples = lambda n: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((n,) + x.shape[1:], x.dtype), data['examples'])
  meta = problem_lib.client_meta(data)
  trained = {r: params[r] for r in params if plan.get(r, 'frozen') != 'frozen'}
  fixed = {r: params[r] for r in params if r not in trained}
  grad = jax.grad(lambda t, f, b, m: problem.loss({**f, **t}, b, m)[0])
  step = jax.jit(grad).lower(trained, fixed, examples(batch_size), meta).cost_analysis()
  forward = jax.jit(lambda p, b, m: problem.loss(p, b, m)[0]).lower(
      params, examples(1), meta).cost_analysis()
  return device_costs.DeviceCosts(float(step.get('flops', 0.0)),
                                  float(forward.get('flops', 0.0)))


def training_flops_per_step(problem, world, batch_size: int) -> float:
  """FLOPs of one local step training every tree (benchmarks' reference)."""
  params = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  return measure_device_costs(problem, problem.client_data, world,
                              {r: 'shared' for r in params}, batch_size).flops_per_step
