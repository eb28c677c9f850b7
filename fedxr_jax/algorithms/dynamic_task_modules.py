"""Dynamic task module selection (SHIFT F; the paper's Solution 4).

When a task arrives (its labels first appear after round 0), the server
decides how the model grows for it:
  new head    its own head on the shared representation, trained with the
              body (what FedAvg does);
  extension   an adapter on the outputs of the most similar existing head:
              logits_t = A_t stop_gradient(z_s) + c_t, trained without any
              backpropagation into the model (a forward and a K_s x K_t
              adapter: what a device that cannot afford training a head
              still affords).
The decision, per arriving task t, from:
  representational similarity  linear CKA (Kornblith et al. 2019) between each
              existing head's outputs z_s and t's one-hot labels, on the
              cohort of the arrival round (sufficient statistics summed over
              clients); the source s is the most similar head that existed
              before t;
  early convergence  both candidates train for `probe_rounds` rounds (the
              extension beside the new head, its own loss added to the local
              objective); the cohort reports each candidate's loss after its
              local training;
  device resources  each candidate's parameter cost: the extension adds
              K_s K_t + K_t, a new head width K_t + K_t; the cheaper
              candidate may lose by up to `tolerance` (1 - cost ratio) nats.
  extend  <=>  CKA >= `similarity`  and  loss_ext <= loss_new + tolerance (1 - cost ratio).
The server writes its decisions (the source of each adapter, whether the
task uses it) into the global heads tree after its step (`edit_model`);
clients never train those entries. Before a decision the task's outputs
are its new head's, so an all-'new head' run trains as FedAvg does.
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.algorithms import model_extension
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError

NAME = 'task_modules'   # the modules' entry in the param dict (heads role)


def _offsets(sizes) -> np.ndarray:
  return np.concatenate([[0], np.cumsum(sizes)]).astype(int)


def extend_model(model, spec, plan, **unused):
  """The model with one head adapter per task over every head's outputs (module doc)."""
  del plan, unused
  tasks = tuple(spec.tasks)
  sizes = [int(spec.tasks[t]) for t in tasks]
  total = sum(sizes)

  def init(key, base):
    del key, base
    return {t: {'adapter': jnp.zeros((total, k)), 'bias': jnp.zeros((k,)),
                'source': jnp.zeros((total,)), 'extend': jnp.zeros(())}
            for t, k in zip(tasks, sizes)}

  def apply(base_apply, base, own, x, mask):
    outputs, routing = base_apply(base, x, mask)
    z = jax.lax.stop_gradient(jnp.concatenate([outputs[t] for t in tasks], axis=-1))
    out = dict(outputs)
    for t in tasks:
      m = own[t]
      ext = (z * jax.lax.stop_gradient(m['source'])) @ m['adapter'] + m['bias']
      out[t] = jnp.where(jax.lax.stop_gradient(m['extend']) > 0.5, ext, outputs[t])
    return out, routing

  def weights(counts):
    return {t: counts['labeled'][t] for t in tasks}

  return model_extension.with_modules(model, NAME, 'heads', init=init, apply=apply,
                                      weights=weights)


def linear_cka(s_z, s_y, s_zz, s_zy, s_yy, n):
  """Linear CKA of two representations from their sums over n examples."""
  n = jnp.maximum(n, 1e-9)
  mz, my = s_z / n, s_y / n
  czy = s_zy / n - jnp.outer(mz, my)
  czz = s_zz / n - jnp.outer(mz, mz)
  cyy = s_yy / n - jnp.outer(my, my)
  den = jnp.sqrt(jnp.sum(czz ** 2) * jnp.sum(cyy ** 2))
  return jnp.where(den > 0, jnp.sum(czy ** 2) / jnp.maximum(den, 1e-30), 0.0)


def dynamic_task_modules(facts, *, probe_rounds: int = 2, similarity: float = 0.3,
                         tolerance: float = 0.05) -> algorithm_lib.Algorithm:
  """probe_rounds: rounds both candidates train before the decision; similarity:
  the CKA an extension's source needs; tolerance: nats the cheaper candidate may
  lose by, scaled by its saving (module doc)."""
  tasks = tuple(facts.tasks)
  num = len(tasks)
  if probe_rounds < 1 or tolerance < 0 or not 0.0 <= similarity <= 1.0:
    raise ConfigError('algorithm.dynamic_task_modules: need probe_rounds >= 1, '
                      'tolerance >= 0 and similarity in [0, 1]')
  if facts.plan.get('heads') != 'shared':
    raise ConfigError('algorithm.name=dynamic_task_modules writes its decisions into the '
                      'global heads: needs --config.plan.heads=shared')
  if num < 2:
    raise ConfigError('algorithm.name=dynamic_task_modules needs >= 2 tasks (a new one '
                      'extends an existing head)')

  def sizes_of(shared):
    return [shared['heads'][NAME][t]['bias'].shape[0] for t in tasks]

  def init_server_state(shared):
    sizes = sizes_of(shared)
    width = shared['heads']['heads'][tasks[0]]['kernel'].shape[0]
    # cost[t, s]: parameters of t's extension over head s / of a new head for t.
    cost = np.array([[(ks * kt + kt) / (width * kt + kt) for ks in sizes] for kt in sizes])
    return {'first': jnp.full((num,), -1, jnp.int32), 'source': jnp.full((num,), -1, jnp.int32),
            'similarity': jnp.zeros((num,)), 'decided': jnp.zeros((num,), bool),
            'extend': jnp.zeros((num,), bool), 'cost': jnp.asarray(cost, jnp.float32)}

  def arriving(state):
    return state['first'] > 0

  def probing(state):
    return arriving(state) & ~state['decided'] & (state['source'] >= 0)

  def with_extension(params, on):
    """params whose arriving tasks' outputs are their extensions where `on`."""
    heads = params['heads']
    modules = {t: {**heads[NAME][t], 'extend': on[i].astype(jnp.float32)}
               for i, t in enumerate(tasks)}
    return {**params, 'heads': {**heads, NAME: modules}}

  def objective(problem, anchor, client_state, server_state):
    del anchor, client_state
    probe = probing(server_state)

    def loss(params, batch, meta):
      total, aux = problem.loss(params, batch, meta)
      active = meta['task_mask'].astype(jnp.float32)
      held = (meta['task_mask'] & probe).astype(jnp.float32)

      def extension_loss():
        per_task = problem.loss(with_extension(params, probe), batch, meta)[1]['per_task']
        return jnp.sum(per_task * held) / jnp.maximum(jnp.sum(active), 1.0)

      extra = jax.lax.cond(jnp.any(probe), extension_loss, lambda: jnp.zeros(()))
      return total + extra, aux

    return loss

  def client_report(ctx, server_state):
    del server_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    start = {**ctx.start, **own}
    ex = ctx.data['examples']
    scale = 1.0 / jnp.maximum(ctx.data['num_examples'].astype(jnp.float32), 1.0)
    labels = (ex['example_mask'][:, None] & ctx.data['task_mask'][None, :]).astype(jnp.float32)
    if 'label_mask' in ex:
      labels = labels * ex['label_mask']
    outputs = ctx.predict(start, ex, ctx.data)
    z = jnp.concatenate([outputs[t] for t in tasks], axis=-1)
    report = {'labeled': jnp.sum(labels, 0) * scale, 'cka': {}}
    for i, t in enumerate(tasks):
      w = labels[:, i]
      y = jax.nn.one_hot(ex['y'][:, i], outputs[t].shape[-1])
      wz, wy = z * w[:, None], y * w[:, None]
      report['cka'][t] = jax.tree.map(lambda v: v * scale, {
          'z': jnp.sum(wz, 0), 'y': jnp.sum(wy, 0), 'zz': wz.T @ z, 'zy': wz.T @ y,
          'yy': wy.T @ y, 'n': jnp.sum(w)})
    # Each candidate's loss after the local steps, weighted by the task's labels.
    every = jnp.ones((num,), bool)
    report['loss_new'] = ctx.task_losses(ctx.trained) * jnp.sum(labels, 0) * scale
    report['loss_ext'] = ctx.task_losses(with_extension(ctx.trained, every)) * jnp.sum(
        labels, 0) * scale
    return report

  def similarities(report, sizes):
    """[T, T]: CKA of head s's outputs with task t's labels, this round's cohort."""
    edges = _offsets(sizes)
    rows = []
    for t in tasks:
      c = report['cka'][t]
      row = []
      for s in range(num):
        a, b = edges[s], edges[s + 1]
        row.append(linear_cka(c['z'][a:b], c['y'], c['zz'][a:b, a:b], c['zy'][a:b],
                              c['yy'], c['n']))
      rows.append(jnp.stack(row))
    return jnp.stack(rows)

  def update_server_state(state, update):
    rep, r = update.report, update.round
    sizes = [rep['cka'][t]['y'].shape[0] for t in tasks]
    labeled = rep['labeled'] > 0
    newly = labeled & (state['first'] < 0)
    first = jnp.where(newly, r, state['first'])
    # Candidate sources: tasks seen in an earlier round than t (never t itself).
    earlier = (first[None, :] >= 0) & (first[None, :] < first[:, None])
    sim = jnp.where(earlier, similarities(rep, sizes), -1.0)
    best = jnp.argmax(sim, axis=1).astype(jnp.int32)
    found = jnp.take_along_axis(sim, best[:, None], 1)[:, 0] >= 0
    choose = newly & (first > 0)
    source = jnp.where(choose, jnp.where(found, best, -1), state['source'])
    sim_of = jnp.where(choose, jnp.where(found, jnp.take_along_axis(
        sim, best[:, None], 1)[:, 0], 0.0), state['similarity'])
    state = {**state, 'first': first, 'source': source, 'similarity': sim_of}
    ready = (probing(state) & labeled & (r >= first + probe_rounds))
    count = jnp.maximum(rep['labeled'], 1e-9)
    loss_new, loss_ext = rep['loss_new'] / count, rep['loss_ext'] / count
    ratio = jnp.take_along_axis(state['cost'], jnp.maximum(source, 0)[:, None], 1)[:, 0]
    extend = ((sim_of >= similarity) & (loss_ext <= loss_new + tolerance * (1.0 - ratio)))
    no_source = arriving(state) & (source < 0) & ~state['decided']
    return {**state, 'extend': jnp.where(ready, extend, state['extend']),
            'decided': state['decided'] | ready | no_source}

  def edit_model(shared, state):
    segment = np.repeat(np.arange(num), sizes_of(shared))   # [sum K]: each output's head
    modules = dict(shared['heads'][NAME])
    for i, t in enumerate(tasks):
      mask = (jnp.asarray(segment) == state['source'][i]).astype(jnp.float32)
      modules[t] = {**modules[t], 'source': mask,
                    'extend': state['extend'][i].astype(jnp.float32)}
    return {**shared, 'heads': {**shared['heads'], NAME: modules}}

  return algorithm_lib.plain('dynamic_task_modules', init_server_state=init_server_state,
                             objective=objective, client_report=client_report,
                             update_server_state=update_server_state, edit_model=edit_model,
                             needs_server=True)
