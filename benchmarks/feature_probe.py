r"""How much of a held-out world's classes can be read off a frozen M3T base, linearly?

  python benchmarks/feature_probe.py --own=DIR --bases=builtin:m3t-tiny,DIR2   # seed 0
  python benchmarks/feature_probe.py --seed=1 --own=DIR --bases=...

The federation's model (the default world config, its seed's held-out world)
with each base loaded as a federated run loads it (`compose.pretrained`); its
CLS features (what the task heads read) of `--train_clients` users' training
examples fit, per classification task, a nearest-class-mean classifier (cosine,
standardized features: FedNCM's head) and a linear softmax probe (Adam, full
batch); both are scored on `--test_clients` other users' test examples. Bases:
a random one (always), --own (pretrained on the held-out world itself: the
ceiling) and each of --bases; per task the fraction of the ceiling's gain over
random each base recovers, (base - random) / (own - random).

A minute on a CPU, against the transfer benchmark's federations (15 minutes
and more): what the representation holds, apart from how fast PEFT gets it out.
Writes RESULTS/feature_probe_seed{seed}.{json,md}.
"""
import json
import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedxr_jax.compose import experiment
from fedxr_jax.compose import pretrained
from fedxr_jax.configs import default as default_config
from fedxr_jax.core import trees

_SEED = flags.DEFINE_integer('seed', 0, 'Federation seed: the held-out world.')
_OWN = flags.DEFINE_string('own', '', 'Base pretrained on the held-out world (the ceiling).')
_BASES = flags.DEFINE_list('bases', ['builtin:m3t-tiny'], 'Bases to compare (dirs or builtin:).')
_TRAIN = flags.DEFINE_integer('train_clients', 32, 'Users whose training examples fit the '
                              'probes (a round\'s cohort of the default federation).')
_TEST = flags.DEFINE_integer('test_clients', 128, 'Other users the probes are scored on.')
_STEPS = flags.DEFINE_integer('probe_steps', 500, 'Adam steps of each linear probe.')
_RESULTS = flags.DEFINE_string('results', 'benchmarks/results', 'Where the tables go.')


def cls_features(model, params, data):
  """(features [E, width], labels [E, T], label mask [E, T]) of the examples held."""
  ex = data['examples']
  n, e = ex['modality_mask'].shape[:2]
  flat = lambda a: a.reshape((n * e,) + a.shape[2:])
  features = jax.jit(model.head_inputs)(trees.merge_roles(*params.values()),
                                        jax.tree.map(flat, ex['x']), flat(ex['modality_mask']))
  keep = flat(ex['example_mask'])
  mask = flat(ex['label_mask'] & data['task_mask'][:, None, :])
  return np.asarray(features)[keep], flat(ex['y'])[keep], mask[keep]


def probe_accuracies(train, test, num_classes: int, steps: int) -> dict:
  """{'ncm', 'linear'}: test accuracy of each probe fitted on train ((x, y) pairs)."""
  (x, y), (x_test, y_test) = train, test
  mean, std = x.mean(0), x.std(0) + 1e-6
  a, b = (x - mean) / std, (x_test - mean) / std
  unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
  centroids = np.stack([unit(a)[y == c].mean(0) if np.any(y == c) else np.zeros(a.shape[1])
                        for c in range(num_classes)])
  ncm = float(np.mean(np.argmax(unit(b) @ centroids.T, -1) == y_test))

  def loss(p):
    logits = a @ p['w'] + p['b']
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            + 1e-3 * jnp.sum(p['w'] ** 2))

  params = {'w': jnp.zeros((a.shape[1], num_classes)), 'b': jnp.zeros(num_classes)}
  optimizer = optax.adam(0.05)
  state = optimizer.init(params)

  def step(_, carry):
    params, state = carry
    updates, state = optimizer.update(jax.grad(loss)(params), state)
    return optax.apply_updates(params, updates), state

  params, _ = jax.jit(lambda p, s: jax.lax.fori_loop(0, steps, step, (p, s)))(params, state)
  linear = float(np.mean(np.argmax(b @ np.asarray(params['w']) + np.asarray(params['b']), -1)
                         == y_test))
  return {'ncm': ncm, 'linear': linear}


def main(argv):
  del argv
  if not _OWN.value:
    raise SystemExit('feature_probe: --own (a base pretrained on the held-out world, the '
                     'ceiling) is required')
  config = default_config.get_config()
  config.data.source, config.seed = 'world', _SEED.value
  spec, world, model, problem, _ = experiment.make_problem(config)

  def data(first, count, split):
    fn = jax.jit(jax.vmap(lambda c: problem.client_data(world, c, split, 0)))
    return jax.tree.map(np.asarray, fn(jnp.arange(first, first + count)))

  train = data(0, _TRAIN.value, 'train')
  test = data(config.population_size, _TEST.value, 'test')   # users past the population
  tasks = [(t, name, k) for t, (name, k) in enumerate(zip(spec.tasks, spec.num_classes))
           if spec.task_defs[t].kind == 'classification']
  bases = {'random': '', 'own': _OWN.value, **{b: b for b in _BASES.value}}
  results = {}
  for name, path in bases.items():
    config.model.pretrained = path
    loaded = pretrained.with_pretrained(problem, config, spec.model_modalities()) if path \
        else problem
    params = loaded.init_params(jax.random.key(config.seed))
    (x, y, m), (xt, yt, mt) = (cls_features(model, params, d) for d in (train, test))
    results[name] = {task: probe_accuracies((x[m[:, t]], y[m[:, t], t]),
                                            (xt[mt[:, t]], yt[mt[:, t], t]), k, _STEPS.value)
                     for t, task, k in tasks}
    print(name, json.dumps(results[name]), flush=True)

  lines = ['| base | ' + ' | '.join(f'{task}: NCM | linear' for _, task, _ in tasks) + ' |',
           '|---|' + '---|---|' * len(tasks)]
  gains = {}
  for name in bases:
    cells = []
    for _, task, _ in tasks:
      for kind in ('ncm', 'linear'):
        value = results[name][task][kind]
        lo, hi = results['random'][task][kind], results['own'][task][kind]
        gain = (value - lo) / (hi - lo) if hi != lo else float('nan')
        gains.setdefault(name, {}).setdefault(task, {})[kind] = gain
        cells.append(f'{value:.3f}' + (f' (**{gain:.2f}**)' if name not in ('random', 'own')
                                       else ''))
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  lines.append(f'\nHeld-out world of seed {_SEED.value}; probes fitted on the CLS features '
               f'of {_TRAIN.value} users\' training examples, scored on {_TEST.value} other '
               'users\' test examples; bold: the fraction of the own-world base\'s gain over '
               f'the random one recovered. Own world: {_OWN.value}.')
  table = '\n'.join(lines)
  print(table)
  os.makedirs(_RESULTS.value, exist_ok=True)
  stem = os.path.join(_RESULTS.value, f'feature_probe_seed{_SEED.value}')
  with open(stem + '.json', 'w') as f:
    json.dump({'seed': _SEED.value, 'bases': bases, 'accuracy': results, 'gain': gains,
               'train_clients': _TRAIN.value, 'test_clients': _TEST.value}, f, indent=2)
  with open(stem + '.md', 'w') as f:
    f.write(table + '\n')


if __name__ == '__main__':
  app.run(main)
