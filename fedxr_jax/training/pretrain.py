"""Central pretraining of the backbone on public users the federation never sees.

Two corpora:
  own world      (corpus_worlds=0) users of the federation's own world
                 (config.seed) with ids from PUBLIC_FIRST_ID (2^30) on, far
                 past any population and its unseen-eval users: a public
                 dataset of the very sensors and tasks (the transfer ceiling);
  public corpus  (corpus_worlds=W > 0, data.source='world') W worlds drawn
                 from `world.corpus_seeds(W)`, which no federation seed can
                 produce: the federation's world is never in it. Their
                 classes mean other things (each world's own prototypes), so
                 every corpus world has its own heads, trained beside the
                 shared trees and not saved; the shared physics (kinematics,
                 gaze, prosody, layouts) is what the base learns.

Objective: the federated loss (`problem.loss`: supervised on each world's own
labels, which cannot leak into a federation whose world is not in the corpus),
plus, with `contrastive` > 0, a self-supervised cross-modal term (CLIP-style
InfoNCE, Radford et al. 2021): each example's pooled features seen through the
first half of the modalities must pick out the same example seen through the
other half, among every example of the batch (`cross_modal_nce`).

What is trained: every tree but the PEFT ones (`base`, `encoders`, `heads`,
and `experts` in a MoE model; see pretrained.PEFT_ROLES), with adam on the
federated objective (`problem.loss`) averaged over batches mixed across many
public users. LoRA factors and adapters stay at init (identity: B = 0, up = 0)
and prompts stay at the run seed's init: with the same seed, a federated run
starts from the very prompts the base was pretrained with.
"""
import copy
import json
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import rng
from fedxr_jax.data import sources
from fedxr_jax.data import synthetic
from fedxr_jax.data import world as world_lib
from fedxr_jax.errors import ConfigError
from fedxr_jax.models.interface import ModelDef
from fedxr_jax.compose import experiment
from fedxr_jax.compose import pretrained

PUBLIC_FIRST_ID = 1 << 30
_INT32_MAX = (1 << 31) - 1
_PRETRAIN_STREAM = 0x5052   # 'PR': apart from the federated rng streams (0..3)


class Setup(NamedTuple):
  spec: synthetic.XRSpec
  model: ModelDef
  problem: problem_lib.FederatedProblem
  world: dict          # the federation's world
  worlds: dict         # the pretraining worlds, stacked [W, ...]
  world_seeds: tuple   # their seeds (() for the own world)


class PretrainResult(NamedTuple):
  params: dict              # {role: tree}, all roles (LoRA and prompts at init)
  initial_params: dict
  losses: np.ndarray        # [steps] training loss of each step's batch
  public_accuracy: dict     # {task: accuracy or None} on public users' test split
  wall_s: float
  world_seeds: tuple = ()   # the corpus worlds' seeds (() for the own world)


def public_client_ids(config, num_clients: int) -> np.ndarray:
  """Ids of the public split: disjoint from the population and unseen users."""
  if num_clients < 1:
    raise ConfigError(f'public_clients must be >= 1, got {num_clients}')
  federated = config.population_size + config.eval_unseen_clients
  if federated > PUBLIC_FIRST_ID:
    raise ConfigError(f'population_size + eval_unseen_clients = {federated} reaches '
                      f'the public pretraining ids (from {PUBLIC_FIRST_ID})')
  if PUBLIC_FIRST_ID + num_clients - 1 > _INT32_MAX:
    raise ConfigError(f'public_clients={num_clients} is too many (ids are int32)')
  return np.arange(PUBLIC_FIRST_ID, PUBLIC_FIRST_ID + num_clients, dtype=np.int32)


def with_code_targets(config):
  """config with every block's code (`data.world.tasks.CODE_TASKS`, the latents each
  world reads its classes from) added to the world's tasks: targets every public world
  has, whichever classes it defines. Their heads are pretraining's alone (a corpus
  saves none; a federation loads base and encoders)."""
  if config.data.source != 'world':
    raise ConfigError('code targets are the primitives world\'s: add '
                      f'--config.data.source=world (got {config.data.source!r})')
  config = copy.deepcopy(config)
  tasks = tuple(config.data.world.tasks)
  config.data.world.tasks = tasks + tuple(t.name for t in world_lib.tasks.CODE_TASKS
                                          if t.name not in tasks)
  return config


def make_setup(config, corpus_worlds: int = 0) -> Setup:
  """The run's data spec, model, problem (random init) and pretraining worlds."""
  experiment.validate(config)
  if config.data.source not in ('synthetic', 'world'):
    raise ConfigError('pretraining needs public users outside the federation; '
                      f"data.source={config.data.source!r} has none (use 'world' or "
                      "'synthetic')")
  if corpus_worlds and config.data.source != 'world':
    raise ConfigError(f'corpus_worlds={corpus_worlds} needs data.source=world (the '
                      "primitives world: v1 worlds share no structure to transfer)")
  spec, world, model, problem, _ = experiment.make_problem(config)
  if not corpus_worlds:
    return Setup(spec, model, problem, world, jax.tree.map(lambda x: x[None], world), ())
  seeds = world_lib.corpus_seeds(corpus_worlds)
  assert not any(world_lib.corpus.is_federation_seed(s) for s in seeds)
  world_spec = sources.world_spec(config)
  worlds = [world_lib.make_world(world_lib.world_key(s), world_spec) for s in seeds]
  return Setup(spec, model, problem, world, jax.tree.map(lambda *x: jnp.stack(x), *worlds),
               seeds)


def make_pool(setup: Setup, client_ids) -> dict:
  """Every pretraining world's public users' train data, stacked world-major:
  examples [W * P, N, ...], meta [W * P]."""
  def one(world, cid):
    return setup.problem.client_data(world, cid, 'train')

  def per_world(world, ids):
    return jax.lax.map(lambda c: one(world, c), ids, batch_size=64)

  pool = jax.jit(lambda worlds, ids: jax.lax.map(lambda w: per_world(w, ids), worlds))(
      setup.worlds, jnp.asarray(client_ids))
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), pool)


def sample_batch(pool: dict, key, users: int, examples_per_user: int):
  """`users` public users (with replacement), each with that many of its
  valid examples: a batch mixed across users (and worlds), [U, E, ...] and
  meta [U]; and each user's row in the pool [U]."""
  k_users, k_examples = jax.random.split(key)
  picked = jax.random.randint(k_users, (users,), 0, pool['num_examples'].shape[0])
  data = jax.tree.map(lambda x: x[picked], pool)
  u = jax.random.uniform(k_examples, (users, examples_per_user))
  # Valid examples come first: index uniformly below each user's count.
  idx = jnp.minimum((u * data['num_examples'][:, None]).astype(jnp.int32),
                    data['num_examples'][:, None] - 1)
  take = lambda x: jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)),
                                       axis=1)
  data['examples'] = jax.tree.map(take, data['examples'])
  data['num_examples'] = jnp.full((users,), examples_per_user, jnp.int32)
  return data, picked


def view_split(num_modalities: int):
  """The two complementary modality views of the contrastive term: the first half
  of the modalities ([M] bool) and the rest."""
  if num_modalities < 2:
    raise ConfigError('the contrastive pretraining term needs >= 2 modalities (two views '
                      f'of each example); this run has {num_modalities}')
  return jnp.arange(num_modalities) < num_modalities // 2


def cross_modal_nce(a, b, valid, temperature: float = 0.1):
  """Symmetric InfoNCE between two views' features a, b [N, D] of the same N
  examples: example i's a must score its own b above every other b (and back),
  cosine similarity / temperature; rows with valid [N] False neither score nor
  serve as negatives. Mean over valid rows (0 with none)."""
  norm = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  logits = norm(a) @ norm(b).T / temperature
  logits = jnp.where(valid[None, :] & valid[:, None], logits, -1e9)
  own = jnp.diagonal(logits)
  a_to_b = jax.nn.logsumexp(logits, axis=1) - own
  b_to_a = jax.nn.logsumexp(logits, axis=0) - own
  w = valid.astype(jnp.float32)
  return jnp.sum(0.5 * (a_to_b + b_to_a) * w) / jnp.maximum(jnp.sum(w), 1.0)


def world_heads(heads, w, shared: tuple = ()):
  """World w's heads from heads stacked [W, ...]; a task in `shared` takes slot 0, the
  one head every world trains (`Settings.shared_target_heads`). A task's head is the
  subtree under a key named for it (M3T: heads/TASK; the MLP: heads_TASK)."""
  if not shared:
    return jax.tree.map(lambda h: h[w], heads)
  owners = set(shared) | {f'heads_{t}' for t in shared}

  def pick(path, h):
    return h[0] if any(getattr(k, 'key', None) in owners for k in path) else h[w]
  return jax.tree_util.tree_map_with_path(pick, heads)


def batch_loss(problem, params: dict, batch: dict, heads=None, world_of=None,
               contrastive: float = 0.0, shared: tuple = ()):
  """Mean over the batch's users of the federated objective (`problem.loss`);
  with `heads` stacked [W, ...], each user with its world's (world_of [U]; the
  tasks in `shared` with slot 0's, `world_heads`); plus `contrastive` x the
  cross-modal InfoNCE over the whole batch."""
  keep = view_split(batch['examples']['modality_mask'].shape[-1]) if contrastive else None

  def one(data, mine):
    meta = problem_lib.client_meta(data)
    loss = problem.loss(mine, data['examples'], meta)[0]
    if keep is None:
      return loss, ()
    ex = data['examples']
    present = ex['modality_mask']
    view = lambda k: problem.represent(mine, {**ex, 'modality_mask': present & k},
                                       meta)['features']
    valid = jnp.any(present & keep, -1) & jnp.any(present & ~keep, -1)
    return loss, (view(keep), view(~keep), valid & ex['example_mask'])

  if heads is None:
    losses, views = jax.vmap(lambda data: one(data, params))(batch)
  else:
    losses, views = jax.vmap(lambda data, w: one(
        data, {**params, 'heads': world_heads(heads, w, shared)}))(batch, world_of)
  total = jnp.mean(losses)
  if keep is None:
    return total
  a, b, valid = (x.reshape((-1,) + x.shape[2:]) for x in views)
  return total + contrastive * cross_modal_nce(a, b, valid)


def make_step(problem, optimizer, users: int, examples_per_user: int,
              users_per_world: int = 0, contrastive: float = 0.0, shared: tuple = ()):
  """step(train, opt_state, fixed, pool, key) -> (train, opt_state, loss).
  users_per_world > 0: train['heads'] is stacked over the corpus worlds, whose
  users fill the pool in blocks of that many (the tasks in `shared`: one head)."""

  def step(train, opt_state, fixed, pool, key):
    batch, picked = sample_batch(pool, key, users, examples_per_user)

    def loss_fn(t):
      if not users_per_world:
        return batch_loss(problem, {**fixed, **t}, batch, contrastive=contrastive)
      body = {r: x for r, x in t.items() if r != 'heads'}
      return batch_loss(problem, {**fixed, **body}, batch, t['heads'],
                        picked // users_per_world, contrastive=contrastive, shared=shared)

    loss, grads = jax.value_and_grad(loss_fn)(train)
    updates, opt_state = optimizer.update(grads, opt_state, train)
    return optax.apply_updates(train, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def public_accuracy(setup: Setup, params: dict, heads, client_ids) -> dict:
  """{task: accuracy} on the public users' held-out (test) examples, each
  world's users with that world's heads."""
  def per_world(world, head, ids):
    mine = {**params, 'heads': head}
    one = lambda cid: setup.problem.eval_stats(
        mine, setup.problem.client_data(world, cid, 'test'))
    return jax.tree.map(lambda x: jnp.sum(x, 0), jax.lax.map(one, ids, batch_size=64))

  sums = jax.jit(lambda worlds, heads, ids: jax.tree.map(
      lambda x: jnp.sum(x, 0),
      jax.lax.map(lambda wh: per_world(*wh, ids), (worlds, heads))))(
          setup.worlds, heads, jnp.asarray(client_ids))
  correct, count = np.asarray(sums['correct']), np.asarray(sums['count'])
  return {t: (float(correct[i] / count[i]) if count[i] else None)
          for i, t in enumerate(setup.spec.tasks)}


class Settings(NamedTuple):
  steps: int
  public_clients: int        # public users of each pretraining world
  batch_size: int            # examples per step ...
  users_per_batch: int = 16  # ... from this many public users
  learning_rate: float = 3e-3
  corpus_worlds: int = 0     # 0: the federation's own world; W: the public corpus
  contrastive: float = 0.0   # weight of the cross-modal InfoNCE term (0: supervised only)
  # Corpus: one head for every world on the tasks whose targets are physics, the same
  # function in every world (regression, detection: gaze point, box, codes); classes
  # stay per world (each world's own prototypes). False: a head per world for all.
  shared_target_heads: bool = False

  def check(self) -> None:
    for name in ('steps', 'public_clients', 'batch_size', 'users_per_batch'):
      if getattr(self, name) < 1:
        raise ConfigError(f'{name} must be >= 1, got {getattr(self, name)}')
    if self.corpus_worlds < 0:
      raise ConfigError(f'corpus_worlds must be >= 0, got {self.corpus_worlds}')
    if self.batch_size % self.users_per_batch:
      raise ConfigError(f'batch_size={self.batch_size} is not a multiple of '
                        f'users_per_batch={self.users_per_batch}')
    if not self.learning_rate > 0:
      raise ConfigError(f'learning_rate must be > 0, got {self.learning_rate}')
    if not self.contrastive >= 0:
      raise ConfigError(f'contrastive must be >= 0, got {self.contrastive}')
    if self.shared_target_heads and not self.corpus_worlds:
      raise ConfigError('shared target heads are one head across corpus worlds: they need '
                        '--corpus_worlds > 0')


def pretrain(config, settings: Settings, progress: bool = False) -> PretrainResult:
  """Trains every non-PEFT tree centrally on the public split."""
  settings.check()
  if config.model.pretrained:
    raise ConfigError('model.pretrained is set; pretraining starts from a random '
                      "init (set it to '')")
  ids = public_client_ids(config, settings.public_clients)
  setup = make_setup(config, settings.corpus_worlds)
  t0 = time.perf_counter()
  seed_key = jax.random.key(config.seed)
  # The federated run's init stream: same prompts (and scratch base) as it.
  init_key = rng.stream(seed_key, rng.INIT_STREAM)
  params = jax.jit(setup.problem.init_params)(init_key)
  train = {r: params[r] for r in pretrained.pretrainable(params)}
  fixed = {r: t for r, t in params.items() if r not in train}
  corpus = bool(setup.world_seeds)
  if corpus:   # heads per world: the seed's first, each further world's from its own key
    extra = [jax.jit(setup.problem.init_params)(jax.random.fold_in(init_key, w))['heads']
             for w in range(1, len(setup.world_seeds))]
    train['heads'] = jax.tree.map(lambda *h: jnp.stack(h), train['heads'], *extra)

  # Tasks whose one head every corpus world trains: targets that are physics.
  shared = tuple(t.name for t in setup.spec.task_defs
                 if corpus and settings.shared_target_heads and t.kind != 'classification')
  pool = make_pool(setup, ids)
  steps = settings.steps
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, settings.learning_rate, warmup_steps=max(1, steps // 20), decay_steps=steps)
  optimizer = optax.adam(schedule)
  opt_state = optimizer.init(train)
  step = make_step(setup.problem, optimizer, settings.users_per_batch,
                   settings.batch_size // settings.users_per_batch,
                   len(ids) if corpus else 0, settings.contrastive, shared)
  data_key = jax.random.fold_in(seed_key, _PRETRAIN_STREAM)
  losses = []
  train = jax.tree.map(jnp.copy, train)   # donated: keep `params` intact
  for i in tqdm.trange(steps, desc='pretrain', unit='step', disable=not progress):
    train, opt_state, loss = step(train, opt_state, fixed, pool,
                                  jax.random.fold_in(data_key, i))
    losses.append(loss)
  final = {**fixed, **train}
  if corpus:   # corpus heads belong to their worlds' classes: not kept
    heads = final.pop('heads')
    heads = jax.vmap(lambda w: world_heads(heads, w, shared))(
        jnp.arange(len(setup.world_seeds)))
  else:
    heads = jax.tree.map(lambda h: h[None], final['heads'])
  accuracy = public_accuracy(setup, final, heads, ids)
  return PretrainResult(final, params, np.asarray(jax.device_get(losses)),
                        accuracy, time.perf_counter() - t0, setup.world_seeds)


def save(config, output_dir: str, settings: Settings, result: PretrainResult,
         overwrite: bool = False) -> dict:
  """Saves the pretrained (non-PEFT) trees with metadata; returns the metadata."""
  # Corpus heads belong to their worlds' classes: not saved (params lacks them).
  saved = {r: result.params[r] for r in pretrained.pretrainable(result.params)}
  tail = result.losses[-max(1, len(result.losses) // 20):]
  accs = [a for a in result.public_accuracy.values() if a is not None]
  metadata = {
      'roles': pretrained.describe_roles(config, saved),
      'model': json.loads(config.model.to_json()),
      'data': json.loads(config.data.to_json()),
      'seed': config.seed,
      'public_first_id': PUBLIC_FIRST_ID,
      'corpus_world_seeds': list(result.world_seeds),
      # (the contrastive weight and shared target heads only where they are on:
      # checkpoints made before they existed keep their metadata bit for bit)
      **{k: v for k, v in settings._asdict().items()
         if k not in ('contrastive', 'shared_target_heads') or v},
      'initial_loss': float(result.losses[0]),
      'final_loss': float(np.mean(tail)),   # mean of the last 5% of steps
      'public_accuracy': result.public_accuracy,
      'public_mean_accuracy': float(np.mean(accs)) if accs else None,
      'wall_s': result.wall_s,
  }
  pretrained.save(output_dir, saved, metadata, overwrite=overwrite)
  return metadata


def run(config, output_dir: str, settings: Settings, overwrite: bool = False,
        progress: bool = False) -> dict:
  """Pretrains and saves to `output_dir`; returns the saved metadata."""
  # Fail on bad settings or a taken output dir before minutes of training.
  settings.check()
  pretrained.check_output_dir(output_dir, overwrite)
  result = pretrain(config, settings, progress)
  return save(config, output_dir, settings, result, overwrite)
