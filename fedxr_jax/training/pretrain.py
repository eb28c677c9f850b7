"""Central pretraining of the M3T model on a public split of the XR world.

The public split is users the federation never sees: ids from
PUBLIC_FIRST_ID (2^30) on, far past any population and its unseen-eval
users, so one pretrained base serves runs of any population size. Their data
comes from the same world (config.seed) as the federation's, as a public
dataset of the same sensors and tasks would.

What is trained: every tree but the PEFT ones (`base`, `encoders`, `heads`,
and `experts` in a MoE model; see pretrained.PEFT_ROLES), with adam on the
federated objective (`problem.loss`) averaged over batches mixed across many
public users. LoRA factors and adapters stay at init (identity: B = 0, up = 0)
and prompts stay at the run seed's init: with the same seed, a federated run
starts from the very prompts the base was pretrained with.
"""
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
from fedxr_jax.data import synthetic
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
  world: dict


class PretrainResult(NamedTuple):
  params: dict              # {role: tree}, all roles (LoRA and prompts at init)
  initial_params: dict
  losses: np.ndarray        # [steps] training loss of each step's batch
  public_accuracy: dict     # {task: accuracy or None} on public users' test split
  wall_s: float


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


def make_setup(config) -> Setup:
  """The run's data spec, model, problem (random init) and world."""
  experiment.validate(config)
  if config.data.source != 'synthetic':
    raise ConfigError('pretraining needs public users outside the federation; '
                      f"data.source={config.data.source!r} has none (use 'synthetic')")
  spec, world, model, problem, _ = experiment.make_problem(config)
  return Setup(spec, model, problem, world)


def make_pool(setup: Setup, client_ids) -> dict:
  """The public users' train data, stacked: examples [P, N, ...], meta [P]."""
  def one(cid):
    return setup.problem.client_data(setup.world, cid, 'train')

  return jax.jit(lambda ids: jax.lax.map(one, ids, batch_size=64))(
      jnp.asarray(client_ids))


def sample_batch(pool: dict, key, users: int, examples_per_user: int) -> dict:
  """`users` public users (with replacement), each with that many of its
  valid examples: a batch mixed across users, [U, E, ...] and meta [U]."""
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
  return data


def batch_loss(problem, params: dict, batch: dict):
  """Mean over the batch's users of the federated objective (`problem.loss`)."""
  def one(data):
    return problem.loss(params, data['examples'], problem_lib.client_meta(data))[0]
  return jnp.mean(jax.vmap(one)(batch))


def make_step(problem, optimizer, users: int, examples_per_user: int):
  """step(train, opt_state, fixed, pool, key) -> (train, opt_state, loss)."""

  def step(train, opt_state, fixed, pool, key):
    batch = sample_batch(pool, key, users, examples_per_user)
    loss, grads = jax.value_and_grad(
        lambda t: batch_loss(problem, {**fixed, **t}, batch))(train)
    updates, opt_state = optimizer.update(grads, opt_state, train)
    return optax.apply_updates(train, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def public_accuracy(setup: Setup, params: dict, client_ids) -> dict:
  """{task: accuracy} on the public users' held-out (test) examples."""
  def one(cid):
    return setup.problem.eval_stats(
        params, setup.problem.client_data(setup.world, cid, 'test'))

  sums = jax.jit(lambda ids: jax.tree.map(
      lambda x: jnp.sum(x, 0), jax.lax.map(one, ids, batch_size=64)))(
          jnp.asarray(client_ids))
  correct, count = np.asarray(sums['correct']), np.asarray(sums['count'])
  return {t: (float(correct[i] / count[i]) if count[i] else None)
          for i, t in enumerate(setup.spec.tasks)}


class Settings(NamedTuple):
  steps: int
  public_clients: int
  batch_size: int            # examples per step ...
  users_per_batch: int = 16  # ... from this many public users
  learning_rate: float = 3e-3

  def check(self) -> None:
    for name in ('steps', 'public_clients', 'batch_size', 'users_per_batch'):
      if getattr(self, name) < 1:
        raise ConfigError(f'{name} must be >= 1, got {getattr(self, name)}')
    if self.batch_size % self.users_per_batch:
      raise ConfigError(f'batch_size={self.batch_size} is not a multiple of '
                        f'users_per_batch={self.users_per_batch}')
    if not self.learning_rate > 0:
      raise ConfigError(f'learning_rate must be > 0, got {self.learning_rate}')


def pretrain(config, settings: Settings, progress: bool = False) -> PretrainResult:
  """Trains every non-PEFT tree centrally on the public split."""
  settings.check()
  if config.model.pretrained:
    raise ConfigError('model.pretrained is set; pretraining starts from a random '
                      "init (set it to '')")
  ids = public_client_ids(config, settings.public_clients)
  setup = make_setup(config)
  t0 = time.perf_counter()
  seed_key = jax.random.key(config.seed)
  # The federated run's init stream: same prompts (and scratch base) as it.
  params = jax.jit(setup.problem.init_params)(rng.stream(seed_key, rng.INIT_STREAM))
  train = {r: params[r] for r in pretrained.pretrainable(params)}
  fixed = {r: t for r, t in params.items() if r not in train}

  pool = make_pool(setup, ids)
  steps = settings.steps
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, settings.learning_rate, warmup_steps=max(1, steps // 20), decay_steps=steps)
  optimizer = optax.adam(schedule)
  opt_state = optimizer.init(train)
  step = make_step(setup.problem, optimizer, settings.users_per_batch,
                   settings.batch_size // settings.users_per_batch)
  data_key = jax.random.fold_in(seed_key, _PRETRAIN_STREAM)
  losses = []
  train = jax.tree.map(jnp.copy, train)   # donated: keep `params` intact
  for i in tqdm.trange(steps, desc='pretrain', unit='step', disable=not progress):
    train, opt_state, loss = step(train, opt_state, fixed, pool,
                                  jax.random.fold_in(data_key, i))
    losses.append(loss)
  final = {**fixed, **train}
  accuracy = public_accuracy(setup, final, ids)
  return PretrainResult(final, params, np.asarray(jax.device_get(losses)),
                        accuracy, time.perf_counter() - t0)


def save(config, output_dir: str, settings: Settings, result: PretrainResult,
         overwrite: bool = False) -> dict:
  """Saves the pretrained (non-PEFT) trees with metadata; returns the metadata."""
  saved = {r: result.params[r] for r in pretrained.pretrainable(result.params)}
  tail = result.losses[-max(1, len(result.losses) // 20):]
  accs = [a for a in result.public_accuracy.values() if a is not None]
  metadata = {
      'roles': pretrained.describe_roles(config, saved),
      'model': json.loads(config.model.to_json()),
      'data': json.loads(config.data.to_json()),
      'seed': config.seed,
      'public_first_id': PUBLIC_FIRST_ID,
      **settings._asdict(),
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
