"""The local stage: what one client does in a round, vmapped over the cohort.

  data      its training data of this round (availability, step budget)
  train     local steps from its start model (the algorithm's regularizer,
            gradient correction and role schedule), its algorithm state, and
            personal models beside the global one (Ditto, TAP)
  weights   module weights of the trees it updated (a tree it did not update
            carries none)
  update    trained - start, through the chain of update transforms
  upload    the aggregator's contribution (summed in the chunk loop) or the
            whole `ClientUpdate` (stacked path)
  costs     bits it downloads and uploads, seconds it computes
"""
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import device_costs
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import transforms as transforms_lib
from fedxr_jax.core import trees
from fedxr_jax.core.problem import FederatedProblem

# Key streams of a client (folded into its round key).
PERSONAL_TRAIN_STREAM = 0x7E41
TRANSFORM_STREAM = 0x7F0E


class LocalStage(NamedTuple):
  """The static pieces of a round's local stage."""
  problem: FederatedProblem
  local_update: Callable
  algorithm: algorithm_lib.Algorithm
  transforms: transforms_lib.UpdateTransform
  aggregator: aggregation.Aggregator
  shared_roles: tuple
  personal_roles: tuple
  local_steps: int
  batch_size: int
  costs: device_costs.DeviceCosts
  streams: bool          # the aggregator's sums are added inside the chunk loop


def context(stage: LocalStage, data, key, frozen, start, trained, round_idx=None):
  """The `ClientContext` of one client (see core.algorithm) at the server's round."""
  problem, meta = stage.problem, problem_lib.client_meta(data)

  def train(params, regularizer=None, objective=None, steps=None):
    budget = data.get('step_budget', stage.local_steps) if steps is None else steps
    return stage.local_update(params, frozen, {**data, 'step_budget': budget},
                              jax.random.fold_in(key, PERSONAL_TRAIN_STREAM),
                              regularizer=regularizer, objective=objective,
                              role_active=stage.algorithm.role_schedule)

  def task_losses(params, first=None):
    examples = data['examples']
    if first is not None:   # the valid examples come first
      examples = jax.tree.map(lambda x: x[:first], examples)
    return problem.loss({**frozen, **params}, examples, meta)[1]['per_task']

  def example_grads(params):
    """Per-example gradients of the first `batch_size` valid examples."""
    first = jax.tree.map(lambda x: x[:stage.batch_size], data['examples'])
    one = lambda p, ex: problem.loss(
        {**frozen, **p}, jax.tree.map(lambda x: x[None], ex), meta)[0]
    grads = jax.vmap(jax.grad(one), in_axes=(None, 0))(params, first)
    valid = jnp.arange(jax.tree.leaves(first)[0].shape[0]) < data['num_examples']
    return grads, valid

  predict = None
  if problem.predict is not None:
    predict = lambda params, batch, meta: problem.predict({**frozen, **params}, batch, meta)
  return algorithm_lib.ClientContext(start=start, trained=trained, data=data, train=train,
                                     task_losses=task_losses, example_grads=example_grads,
                                     predict=predict, loss=problem.loss, round=round_idx)


def round_data(stage: LocalStage, source, client_id, round_idx):
  """A client's training data of a round; an unavailable client runs no step."""
  data = stage.problem.client_data(source, client_id, 'train', round_idx)
  available = jnp.asarray(data.get('available', True))
  data = {**data, 'step_budget': jnp.where(
      available, data.get('step_budget', stage.local_steps), 0)}
  return data, available


def train(stage: LocalStage, server, frozen, data, available, key, model, own, algo_state):
  """Local steps, the algorithm's client state and personal models.

  Returns (trained trees, local stats, new algorithm state, ClientCost).
  """
  algorithm = stage.algorithm
  objective = None if algorithm.objective is None else algorithm.objective(
      stage.problem, model, algo_state, server.algorithm)

  def run(view, stream=0):
    return stage.local_update(
        {**model, **own}, frozen, view, key if not stream else jax.random.fold_in(key, stream),
        regularizer=lambda p: algorithm.regularizer(p, model, algo_state, server.algorithm),
        correct_grads=lambda g: algorithm.correct_grads(g, algo_state, server.algorithm),
        role_active=algorithm.role_schedule, objective=objective)

  trained, stats = (run(data) if algorithm.local_train is None
                    else algorithm.local_train(run, data, server.algorithm))
  new_state = algorithm.update_client_state(algo_state, server.algorithm, model, trained,
                                            stats['steps'])
  extra = algorithm_lib.ClientCost()
  if algorithm.personalize is not None:
    ctx = context(stage, data, key, frozen, model, trained, server.round)
    new_state, extra = algorithm.personalize(ctx, new_state, server.algorithm)
  new_state = trees.where_tree(available, new_state, algo_state)
  return trained, stats, new_state, extra


def updated_weights(weights, stats, available):
  """Module weights with zero for every tree the client did not update.

  Unavailable, unable to afford the tree, or a schedule that never reached
  it within the step budget: it sends nothing for that tree.
  """
  ran = stats['role_steps']
  return {r: jax.tree.map(
      lambda w: w * (available & (ran.get(r, 1) > 0)).astype(w.dtype), weights[r])
          for r in weights}


def with_hyperparams(stage: LocalStage, server) -> LocalStage:
  """The stage whose local steps take the server's client-optimizer hyperparameters."""
  hyperparams = server.hyperparams.get('client_optimizer') if isinstance(
      server.hyperparams, dict) else None
  if not hyperparams:
    return stage
  return stage._replace(local_update=functools.partial(stage.local_update,
                                                       hyperparams=hyperparams))


def make_client_fn(stage: LocalStage, server, frozen, source) -> Callable:
  """client_fn(client_id, key, own, algo_state, transform_state[, start]) -> (per_client, summed)."""
  stage = with_hyperparams(stage, server)
  shared_roles, algorithm = stage.shared_roles, stage.algorithm

  def client_fn(client_id, key, own, algo_state, transform_state, start=None):
    data, available = round_data(stage, source, client_id, server.round)
    model = server.shared if start is None else start
    trained, stats, new_algo_state, extra = train(
        stage, server, frozen, data, available, key, model, own, algo_state)
    raw_weights = stage.problem.module_weights(data, stats)
    weights = updated_weights(raw_weights, stats, available)
    start_shared = {r: model[r] for r in shared_roles}
    shared_out = {r: trained[r] for r in shared_roles}
    update = jax.tree.map(jnp.subtract, shared_out, start_shared)
    info = transforms_lib.ClientInfo(client_id=client_id, start=start_shared,
                                     trained=shared_out, data=data, server=server.transforms,
                                     aggregator=server.aggregator)
    new_update, new_transform_state, sent_weights, transform_stats = stage.transforms.update(
        update, transform_state, jax.random.fold_in(key, TRANSFORM_STREAM),
        {r: weights[r] for r in shared_roles}, info)
    upload = aggregation.ClientUpdate(
        model=transforms_lib.sent_model(start_shared, shared_out, update, new_update),
        update=new_update, weights=sent_weights, client_id=client_id,
        stats=dict(transform_stats))

    device = device_costs.device_profile(data)
    examples = data['num_examples'].astype(jnp.float32) * available
    stats = {k: v for k, v in stats.items() if k not in ('sums', 'role_steps')}
    stats['examples'] = examples
    stats['available'] = available.astype(jnp.float32)
    stats['upload_bits'] = transform_stats.pop(
        'upload_bits', device_costs.payload_bits(sent_weights, server.shared))
    stats['download_bits'] = device_costs.payload_bits(
        {r: jax.tree.map(lambda w: w * available, raw_weights[r]) for r in shared_roles},
        server.shared)
    extra_download = transform_stats.pop('extra_download_bits', None)   # secure aggregation
    if extra_download is not None:
      stats['download_bits'] = stats['download_bits'] + extra_download
    stats['compute_s'] = device_costs.compute_seconds(stage.costs, stats['steps'], extra,
                                                      device['train_flops'],
                                                      device['half_rate'])
    stats['compute_power_w'] = jnp.float32(device['compute_power_w'])
    stats['tx_power_dbm'] = jnp.float32(device['tx_power_dbm'])
    per_client = {'personal': {r: trained[r] for r in stage.personal_roles},
                  'stats': stats, 'algorithm': new_algo_state,
                  'transforms': new_transform_state}
    summed = {'transforms': transform_stats}
    if stage.streams:   # summed over clients inside the chunk loop
      summed['aggregate'] = stage.aggregator.contribute(upload)
    else:
      per_client['upload'] = upload
    if algorithm.client_report is not None:
      ctx = context(stage, data, key, frozen, model, trained, server.round)
      report = algorithm.client_report(ctx, server.algorithm)
      summed['report'] = (jax.tree.map(lambda x: examples * x, report), examples)
    return per_client, summed

  return client_fn
