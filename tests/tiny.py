"""A tiny linear federated problem for round-, algorithm- and topology-level tests.

Softmax regression on F features, two parameter trees: `body` (weights,
module weight = the client's examples) and `head` (a bias, module weight =
its labelled examples: clients of device class 1 hold no labels for it, so
a module some clients lack is always in play). Each client has its own
example count, step budget, device class and position. Compiles in well
under a second, so tests can afford many rounds and topologies.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedxr_jax import algorithms
from fedxr_jax import topology as topology_registry
from fedxr_jax.attacks import malicious as malicious_lib
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import rng
from fedxr_jax.core import round_plan
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.topology import channel as channel_lib

FEATURES, CLASSES, MAX_EXAMPLES, AREA_M = 4, 3, 8, 100.0


def make_source(num_clients: int, local_steps: int, seed: int = 0) -> dict:
  """Every client's data, drawn once: x [P, 2, N, F], y [P, 2, N] (train, test)."""
  rng = np.random.default_rng(seed)
  true_w = rng.normal(size=(FEATURES, CLASSES))
  x = rng.normal(size=(num_clients, 2, MAX_EXAMPLES, FEATURES)).astype(np.float32)
  shift = rng.normal(scale=0.5, size=(num_clients, 1, 1, FEATURES))   # per-user skew
  y = np.argmax((x + shift) @ true_w, axis=-1).astype(np.int32)
  return {
      'x': x, 'y': y,
      'num_examples': rng.integers(MAX_EXAMPLES // 2, MAX_EXAMPLES + 1, num_clients,
                                   dtype=np.int32),
      'budget': rng.integers(1, local_steps + 1, num_clients, dtype=np.int32),
      'device': (np.arange(num_clients) % 2).astype(np.int32),
      'positions': rng.uniform(0, AREA_M, (num_clients, 2)).astype(np.float32),
  }


def problem(walk_m_per_round: float = 0.0) -> FederatedProblem:
  def init_params(key):
    return {'body': {'w': 0.1 * jax.random.normal(key, (FEATURES, CLASSES))},
            'head': {'b': jnp.zeros((CLASSES,))}}

  def logits(params, x):
    return x @ params['body']['w'] + params['head']['b']

  def loss(params, batch, meta):
    del meta
    ce = optax.softmax_cross_entropy_with_integer_labels(logits(params, batch['x']),
                                                         batch['y'])
    m = batch['example_mask'].astype(jnp.float32)
    total = jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0)
    return total, {'per_task': total[None], 'sums': {}}

  def client_data(source, client_id, split, round_idx=0):
    del round_idx
    s = 0 if split == 'train' else 1
    n = source['num_examples'][client_id]
    mask = jnp.arange(MAX_EXAMPLES) < n
    device = source['device'][client_id]
    return {'examples': {'x': source['x'][client_id, s], 'y': source['y'][client_id, s],
                         'example_mask': mask},
            'num_examples': n, 'step_budget': source['budget'][client_id],
            'task_mask': jnp.ones((1,), bool), 'device': device,
            'device_profile': {'train_flops': jnp.where(device == 0, 1e12, 2.5e11),
                               'tx_power_dbm': jnp.float32(20.0),
                               'compute_power_w': jnp.float32(5.0)}}

  def module_weights(data, stats=None):
    del stats
    n = data['num_examples'].astype(jnp.float32)
    return {'body': n, 'head': n * (data['device'] == 0)}

  def eval_stats(params, data):
    ex = data['examples']
    out = logits(params, ex['x'])
    m = ex['example_mask']
    ce = optax.softmax_cross_entropy_with_integer_labels(out, ex['y'])
    return {'correct': jnp.sum((jnp.argmax(out, -1) == ex['y']) & m)[None].astype(jnp.float32),
            'count': jnp.sum(m)[None].astype(jnp.float32),
            'loss_sum': jnp.sum(ce * m)[None]}

  def client_position(source, client_id, round_idx):
    return jnp.clip(source['positions'][client_id] + walk_m_per_round * round_idx, 0, AREA_M)

  return FederatedProblem(
      init_params=init_params, loss=loss, client_data=client_data,
      module_weights=module_weights, eval_stats=eval_stats,
      predict=lambda params, batch, meta: {'t': logits(params, batch['x'])},
      client_position=client_position, client_device=lambda source, c: source['device'][c],
      area_m=AREA_M)


class Setup(NamedTuple):
  federation: round_lib.Federation
  world: dict
  problem: FederatedProblem
  sample_cohort: Callable
  key: np.ndarray   # the seed's key data (`ServerState.key`)

  def plan(self, round_idx):
    return round_plan.make_plan(self.sample_cohort, self.federation.topology.layout,
                                round_idx)


def setup(*, population: int = 8, cohort: int = 8, local_steps: int = 3,
          batch_size: int = 4, kind: str = 'centralized', d2d=None, topology=None,
          algorithm: str = 'fedavg', algorithm_settings=None, plan=None,
          lr: float = 0.1, server_optimizer=None, chunk_size: int = 0, mesh=None,
          transforms=None, aggregator=None, seed: int = 0, unseen: int = 4,
          walk_m_per_round: float = 0.0, budgets=None, private_grads=None,
          client_optimizer=None, malicious: float = 0.0, attack_seed: int = 0,
          facts=None, problem_fn=None, lr_schedule=None) -> Setup:
  """A federation of the tiny problem; `topology`: the kind's own settings;
  `budgets`: every client's step budget (cycled), instead of random ones;
  `private_grads`: DP-SGD in local training (`privacy.dpsgd.local_grads`);
  `client_optimizer`: instead of optax.sgd(lr); `malicious`: that fraction of the
  population attacks (the set drawn from key(attack_seed), `attacks.malicious`);
  `facts`: more RunFacts fields (modalities, devices); `problem_fn`: the problem
  instead of `problem` (the same source and signature)."""
  plan = plan or {'body': 'shared', 'head': 'shared'}
  prob = (problem_fn or problem)(walk_m_per_round)
  source = make_source(population + unseen, local_steps, seed)
  if budgets is not None:
    source['budget'] = np.resize(np.asarray(budgets, np.int32), population + unseen)
  if malicious:
    prob = malicious_lib.mark(prob, population)
    source.update(malicious_lib.source_arrays(jax.random.key(attack_seed), malicious,
                                              population))
  world = jax.tree.map(jnp.asarray, source)
  facts = algorithm_lib.RunFacts(seed=seed, population_size=population, cohort_size=cohort,
                                 local_steps=local_steps, batch_size=batch_size, plan=plan,
                                 tasks=('t',), client_optimizer='sgd',
                                 client_learning_rate=lr, **(facts or {}))
  block = {'kind': kind, 'd2d': dict(d2d or {}), kind: dict(topology or {})}
  topo = topology_registry.make(block, facts=facts,
                                geography=problem_lib.geography(prob, world),
                                channel=channel_lib.Channel())
  fed = round_lib.build_federation(
      prob, plan, population_size=population, cohort_size=cohort,
      local_steps=local_steps, batch_size=batch_size, client_optimizer=client_optimizer or optax.sgd(lr),
      server_optimizer=server_optimizer or optax.sgd(1.0), topology=topo,
      chunk_size=chunk_size, mesh=mesh,
      algorithm=algorithms.make(algorithm, algorithm_settings or {}, facts),
      transforms=transforms, aggregator=aggregator, private_grads=private_grads,
      **({} if lr_schedule is None else {'lr_schedule': lr_schedule}))
  return Setup(fed, world, prob, round_plan.cohort_sampler(seed, population, cohort),
               rng.key_data(seed))
