r"""Transfer probe: does a representation learned on other worlds serve a held-out one?

  python benchmarks/world_probe.py                      # v2 (primitives), ~3 CPU min
  python benchmarks/world_probe.py --generator=v1       # the same probe on v1 worlds

Trains a small encoder (an MLP over every modality, flattened, with the
modality mask) on `corpus_worlds` public-corpus worlds (`world.corpus_seeds`,
each with its own heads), freezes it, and fits linear softmax probes on the
held-out federation world (seed 0), fitted on a few labelled users. Compares
with a random frozen encoder and with the same encoder pretrained on as many
of the held-out world's own public users (disjoint from the probe's), and
prints the fraction of the ceiling's gain the corpus recovers per task:
  (corpus - random) / (own world - random)
A proxy for the M3T measurement of issue 20 (>= 0.8 wanted), not that
measurement: a small MLP, central training, linear probes, classification
tasks only. It is lenient: v1, whose worlds share nothing but their
signature families, scores ~0.7 here against 0.21 with the M3T. Read it as
a comparison of generators under one protocol; the own-world encoder must
get the corpus's pretraining budget (it does), or the ratio flatters.

  --probe_clients=256    more labelled held-out users
  --corpus_worlds=24 --clients=64    more, smaller corpus worlds (same budget)
  --pretrain_targets=gaze_point,hand_pose,body_pose    physics targets too
  --set=environment_scale=0.0    any WorldSpec override (v2)
"""
import ast
import functools
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedxr_jax.data import synthetic
from fedxr_jax.data import world
from fedxr_jax.data.world import objectives
from fedxr_jax.data.world.spec import WorldSpec

_GENERATOR = flags.DEFINE_enum('generator', 'v2', ['v1', 'v2'], 'Which world generator.')
_WORLDS = flags.DEFINE_integer('corpus_worlds', 6, 'Public-corpus worlds to pretrain on.')
_CLIENTS = flags.DEFINE_integer('clients', 256, 'Training clients per world.')
_STEPS = flags.DEFINE_integer('steps', 2000, 'Encoder training steps.')
_PROBE_STEPS = flags.DEFINE_integer('probe_steps', 600, 'Linear probe steps (full batch).')
_TASKS = flags.DEFINE_list('tasks', ['gesture', 'intent', 'emotion', 'activity'],
                           'Classification tasks (names both generators know).')
_SEED = flags.DEFINE_integer('seed', 0, 'Held-out federation seed.')
_PROBE_CLIENTS = flags.DEFINE_integer('probe_clients', 64,
                                      'Labelled held-out clients the probes are fitted on.')
_TEST_CLIENTS = flags.DEFINE_integer('test_clients', 128, 'Held-out clients tested on.')
_TARGETS = flags.DEFINE_list(
    'pretrain_targets', [],
    'v2 regression/detection tasks added to the pretraining loss of both the corpus and '
    'the own-world encoder (world-independent physics, e.g. gaze_point,hand_pose,'
    'body_pose); probes stay on --tasks.')
_SET = flags.DEFINE_list('set', [], 'v2 WorldSpec overrides, e.g. environment_scale=0.0.')
_JSON = flags.DEFINE_string('json', '', 'Write the figures here too.')

MODALITIES = ('vision', 'audio', 'motion', 'gaze')
WIDTH, FEATURES = 256, 128


def make_source(generator_name, tasks, targets=()):
  """(spec, make_world(seed), client_data(world, ids, split) -> flat arrays)."""
  if generator_name == 'v2':
    overrides = {k: ast.literal_eval(v) for k, v in (item.split('=', 1) for item in _SET.value)}
    spec = WorldSpec(modalities=MODALITIES, tasks=tasks + tuple(targets), **overrides).check()
    make = lambda seed: world.make_world(world.world_key(seed), spec)
    one = lambda w, c, split: world.client_data(w, c, split, spec)
  else:
    spec = synthetic.XRSpec(
        modalities=MODALITIES, tasks=tasks,
        devices=WorldSpec().devices, device_weights=WorldSpec().weights)
    make = lambda seed: synthetic.make_world(world.world_key(seed), spec)
    one = lambda w, c, split: synthetic.client_data(w, c, split, spec)
  fns = {s: jax.jit(jax.vmap(functools.partial(one, split=s), in_axes=(None, 0)))
         for s in ('train', 'test')}

  def data(world, ids, split):
    """(x [E, F], labels [E, T], label mask [E, T], targets [E, D]) of ids' examples."""
    xs, ys, ms, ts = [], [], [], []
    for start in range(0, len(ids), 64):
      d = jax.tree.map(np.asarray, fns[split](world, jnp.asarray(ids[start:start + 64])))
      ex = d['examples']
      keep = ex['example_mask']
      flat = [ex['x'][m].reshape(ex['x'][m].shape[:2] + (-1,)) for m in MODALITIES]
      xs.append(np.concatenate(flat + [ex['modality_mask'].astype(np.float32)], -1)[keep])
      ys.append(ex['y'][keep])
      ms.append((ex.get('label_mask', keep[..., None]) & d['task_mask'][:, None, :])[keep])
      ts.append(np.concatenate([ex['targets'][t] for t in targets] + [ex['y'][..., :0]], -1)
                [keep].astype(np.float32))
    return tuple(np.concatenate(a) for a in (xs, ys, ms, ts))
  return spec, make, data


def encoder_init(key, dim):
  k1, k2, k3 = jax.random.split(key, 3)
  dense = lambda k, i, o: (jax.random.normal(k, (i, o)) * np.sqrt(2.0 / i), jnp.zeros(o))
  return [dense(k1, dim, WIDTH), dense(k2, WIDTH, WIDTH), dense(k3, WIDTH, FEATURES)]


def encode(params, x):
  for i, (w, b) in enumerate(params):
    x = x @ w + b
    if i < len(params) - 1:
      x = jax.nn.gelu(x)
  return x


def train_encoder(key, x, y, m, targets, world_of, num_worlds, classes, steps,
                  target_tasks=()):
  """Encoder + per-world linear heads, Adam on the summed masked task losses
  (`objectives.example_losses`: cross-entropy, and smooth-L1 for the targets)."""
  k_enc, k_head, k_batch = jax.random.split(key, 3)
  sizes = list(classes) + [t.size for t in target_tasks]
  params = {'enc': encoder_init(k_enc, x.shape[1]),
            'heads': [jax.random.normal(jax.random.fold_in(k_head, t),
                                        (num_worlds, FEATURES, k)) * 0.05
                      for t, k in enumerate(sizes)]}
  opt = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  state = opt.init(params)
  x, y, m, targets, world_of = map(jnp.asarray, (x, y, m, targets, world_of))

  def loss_fn(p, idx):
    f = jax.nn.gelu(encode(p['enc'], x[idx]))
    total, start = 0.0, 0
    for t, head in enumerate(p['heads']):
      out = jnp.einsum('nf,nfk->nk', f, head[world_of[idx]])
      if t < len(classes):
        ce = optax.softmax_cross_entropy_with_integer_labels(out, y[idx, t])
        total += jnp.sum(ce * m[idx, t]) / jnp.maximum(jnp.sum(m[idx, t]), 1.0)
      else:
        task = target_tasks[t - len(classes)]
        total += jnp.mean(objectives.example_losses(
            task, out, None, targets[idx, start:start + task.size]))
        start += task.size
    return total

  @jax.jit
  def step(p, s, k):
    idx = jax.random.randint(k, (256,), 0, x.shape[0])
    loss, g = jax.value_and_grad(loss_fn)(p, idx)
    updates, s = opt.update(g, s, p)
    return optax.apply_updates(p, updates), s, loss

  for i in range(steps):
    params, state, loss = step(params, state, jax.random.fold_in(k_batch, i))
  return params['enc'], float(loss)


def probe(enc, train, test, classes, steps):
  """Accuracy per task of linear softmax probes on frozen features."""
  feats = jax.jit(lambda x: jax.nn.gelu(encode(enc, x)))
  f_tr, f_te = feats(jnp.asarray(train[0])), feats(jnp.asarray(test[0]))
  mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
  f_tr, f_te = (f_tr - mu) / sd, (f_te - mu) / sd
  accs = []
  for t, k in enumerate(classes):
    y, m = jnp.asarray(train[1][:, t]), jnp.asarray(train[2][:, t], jnp.float32)
    w = {'w': jnp.zeros((FEATURES, k)), 'b': jnp.zeros(k)}
    opt = optax.adam(1e-2)
    s = opt.init(w)

    def loss_fn(w):
      ce = optax.softmax_cross_entropy_with_integer_labels(f_tr @ w['w'] + w['b'], y)
      return jnp.sum(ce * m) / jnp.sum(m) + 1e-4 * jnp.sum(w['w'] ** 2)

    @jax.jit
    def fit(w, s):
      def body(carry, _):
        w, s = carry
        g = jax.grad(loss_fn)(w)
        u, s = opt.update(g, s, w)
        return (optax.apply_updates(w, u), s), None
      return jax.lax.scan(body, (w, s), None, length=steps)[0]

    w, _ = fit(w, s)
    pred = np.asarray(jnp.argmax(f_te @ w['w'] + w['b'], -1))
    mask = test[2][:, t]
    accs.append(float(np.mean(pred[mask] == test[1][mask, t])))
  return np.array(accs)


def main(argv):
  del argv
  t0 = time.time()
  tasks = tuple(_TASKS.value)
  target_tasks = tuple(world.TASKS[t] for t in _TARGETS.value)
  spec, make, data = make_source(_GENERATOR.value, tasks, _TARGETS.value)
  classes = spec.num_classes[:len(tasks)]
  n, p = _CLIENTS.value, _PROBE_CLIENTS.value
  # The held-out world: as many public users as the whole corpus has
  # ([0, worlds * n)) pretrain the own-world encoder, an equal budget; the
  # probes fit on the next p users and test on the test_clients after them.
  train_ids, own = np.arange(n), _WORLDS.value * n
  held = make(_SEED.value)
  train = data(held, np.arange(own), 'train')
  labelled = data(held, np.arange(own, own + p), 'train')
  test = data(held, np.arange(own + p, own + p + _TEST_CLIENTS.value), 'test')
  parts = [data(make(s), train_ids, 'train') for s in world.corpus_seeds(_WORLDS.value)]
  pool = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
  world_of = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
  print(f'data: {len(pool[0])} corpus examples from {_WORLDS.value} worlds, '
        f'held-out world: {len(train[0])} pretraining, {len(labelled[0])} probe, '
        f'{len(test[0])} test examples; {time.time() - t0:.0f} s')

  key = jax.random.key(1)
  dim = train[0].shape[1]
  random_enc = encoder_init(jax.random.fold_in(key, 0), dim)
  corpus_enc, l1 = train_encoder(jax.random.fold_in(key, 1), *pool, world_of,
                                 _WORLDS.value, classes, _STEPS.value, target_tasks)
  own_enc, l2 = train_encoder(jax.random.fold_in(key, 2), *train,
                              np.zeros(len(train[0]), np.int32), 1, classes, _STEPS.value,
                              target_tasks)
  acc = {name: probe(enc, labelled, test, classes, _PROBE_STEPS.value)
         for name, enc in (('random', random_enc), ('corpus', corpus_enc), ('own', own_enc))}
  gain = (acc['corpus'] - acc['random']) / np.maximum(acc['own'] - acc['random'], 1e-6)
  total = ((acc['corpus'] - acc['random']).sum()
           / max((acc['own'] - acc['random']).sum(), 1e-6))
  extra = f' + targets {",".join(_TARGETS.value)}' if _TARGETS.value else ''
  print(f'generator {_GENERATOR.value}{extra}, {_WORLDS.value} corpus worlds, '
        f'{_STEPS.value} steps '
        f'(final train loss corpus {l1:.3f}, own {l2:.3f}); {time.time() - t0:.0f} s')
  print(f'{"task":<10} {"random":>7} {"corpus":>7} {"own":>7} {"recovered":>9}')
  for t, name in enumerate(tasks):
    print(f'{name:<10} {acc["random"][t]:7.3f} {acc["corpus"][t]:7.3f} {acc["own"][t]:7.3f} '
          f'{gain[t]:9.2f}')
  print(f'{"all":<10} {acc["random"].mean():7.3f} {acc["corpus"].mean():7.3f} '
        f'{acc["own"].mean():7.3f} {total:9.2f}')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump({'generator': _GENERATOR.value, 'tasks': tasks,
                 'pretrain_targets': _TARGETS.value, 'set': _SET.value,
                 **{k: v.tolist() for k, v in acc.items()}, 'recovered': total}, f)


if __name__ == '__main__':
  app.run(main)
