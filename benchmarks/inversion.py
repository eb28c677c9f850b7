r"""Gradient inversion against one client's single-step update of the vision encoder.

  python benchmarks/inversion.py                # 8 examples, 4000 steps, 4 restarts
  python benchmarks/inversion.py --examples=2 --steps=100 --out=/tmp/inv

Threat: an honest-but-curious server sees one client's update after one
local SGD step on one example, u = -lr * g, where g is the gradient of the
example's loss w.r.t. the vision encoder (`encoders/vision`: patch
embedding and positions) of the default M3T model at initialisation (the
model round 1 broadcasts), everything else fixed. The example is a camera
frame (16x16, vision the only sensor present) with a gesture label.

The attack (privacy/inversion.py: Adam on a dummy frame, cosine gradient
matching as Geiping et al. 2020; the label is unknown and optimised
jointly as soft-label logits, DLG; the head is not in the gradient, so
iDLG's label read-out does not apply) rebuilds the frame from what the
server receives. Each gradient leaf is weighed alike in the cosine (the
position leaf carries each token's backward signal, which the patch
kernel's gradient mixes: without it the attack matches the gradient with
frames uncorrelated to the truth), and of --restarts random starts the
attacker keeps the best match. Released updates:
  raw    u itself;
  topk   the top-k 10% of u's coordinates (transforms.topk.keep_mask, the
         first round: no error-feedback residual); the attacker knows the
         support and matches only there;
  dp     u clipped to C (privacy.clip_norm) plus N(0, (sigma C)^2) per
         coordinate, sigma the noise multiplier the accountant gives the
         default run at --eps: the noise DP-FedAvg adds to the sum, i.e. what
         an attacker who could subtract every other client's clipped update
         from the release would see;
  topk+dp  both, in the pipeline's order (compress, then clip, then noise).
Reports PSNR of the reconstruction (data range: the true frame's
peak-to-peak) and label recovery (argmax of the recovered soft label).
Writes OUT/inversion.{json,md,png}.
"""
import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import fedxr_jax
from fedxr_jax.configs import default as default_config
from fedxr_jax.core import compilation_cache
from fedxr_jax.privacy import inversion
from fedxr_jax.core import noise
from fedxr_jax.compose import pipeline
from fedxr_jax.transforms import clip as clip_lib
from fedxr_jax.transforms import topk as topk_lib

_EXAMPLES = flags.DEFINE_integer('examples', 8, 'Examples attacked (one client each).')
_STEPS = flags.DEFINE_integer('steps', 4000, 'Adam steps of the attack.')
_LR = flags.DEFINE_float('lr', 0.05, 'Adam learning rate of the attack.')
_RESTARTS = flags.DEFINE_integer('restarts', 4, 'Random starts; the best match is kept.')
_EPS = flags.DEFINE_float('eps', 4.0, 'Epsilon whose sigma the dp condition uses.')
_CLIP = flags.DEFINE_float('clip_norm', 0.0, 'Clip norm C (0: the one '
                           'OUT/privacy_utility.json chose for the default run).')
_TOPK = flags.DEFINE_float('topk', 0.1, 'Top-k fraction of the topk conditions.')
_TASK = flags.DEFINE_string('task', 'gesture', 'Task whose label the example carries.')
_NORMALIZE = flags.DEFINE_bool('normalize_leaves', True, 'Weigh every gradient leaf '
                                'alike in the cosine (else one vector, Geiping et al.).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Output folder.')
_REPLOT = flags.DEFINE_bool('replot', False, 'Only rewrite the table (and, if the JSON '
                            'has the frames, the figure) from OUT/inversion.json.')

MODALITY = 'vision'
CONDITIONS = ('raw', 'topk', 'dp', 'topk+dp')
CLASSES = {'gesture': 6}   # for the chance level in the notes


def clip_norm() -> float:
  if _CLIP.value > 0:
    return _CLIP.value
  path = os.path.join(_OUT.value, 'privacy_utility.json')
  with open(path) as f:
    return json.load(f)['datasets']['default']['clip_norm']


def victims(exp, n: int):
  """(vision frames [n, 16, 16, 1], labels [n]): the first training example
  with a camera frame and a label of the task, of clients 0, 1, ..."""
  spec, task = exp.spec, list(exp.spec.tasks).index(_TASK.value)
  m = list(spec.modalities).index(MODALITY)
  xs, ys, c = [], [], 0
  while len(xs) < n:
    data = jax.device_get(exp.problem.client_data(exp.world, jnp.int32(c), 'train', 0))
    ex = data['examples']
    ok = (ex['example_mask'] & ex['modality_mask'][:, m]
          & bool(np.asarray(data['task_mask'])[task]))
    if ok.any():
      i = int(np.argmax(ok))
      xs.append(ex['x'][MODALITY][i])
      ys.append(int(ex['y'][i, task]))
    c += 1
  return jnp.asarray(np.stack(xs)), jnp.asarray(ys)


def make_loss(exp, params):
  """loss(vision_params, frame, soft_label): the example's cross-entropy, only
  vision present, every other tree fixed at `params`."""
  spec = exp.spec
  shapes = spec.model_modalities()
  mask = jnp.asarray([[m == MODALITY for m in spec.modalities]])
  meta = {'task_mask': jnp.asarray([t == _TASK.value for t in spec.tasks])}

  def loss(vision, frame, label):
    enc = params['encoders']
    inner = {**enc['encoders'], MODALITY: vision}
    p = {**params, 'encoders': {**enc, 'encoders': inner}}
    x = {m: (frame[None] if m == MODALITY else jnp.zeros((1,) + shapes[m][0]))
         for m in spec.modalities}
    batch = {'x': x, 'modality_mask': mask, 'example_mask': jnp.ones((1,), bool)}
    logits = exp.problem.predict(p, batch, meta)[_TASK.value][0]
    return -jnp.sum(label * jax.nn.log_softmax(logits))

  return loss, params['encoders']['encoders'][MODALITY]


def released(u, key, topk, dp, c: float, sigma: float):
  """(what the server sees of update u, the support the attacker matches on).

  topk, dp: bool scalars (traced, so every condition runs in one program).
  """
  everywhere = jax.tree.map(lambda x: jnp.ones(x.shape, bool), u)
  kept = topk_lib.keep_mask(u, everywhere, _TOPK.value, 'global')
  support = jax.tree.map(lambda k: k | ~topk, kept)
  u = jax.tree.map(lambda x, k: jnp.where(k, x, 0.0), u, support)
  clipped, _ = clip_lib.clip_update(u, c)
  noisy = noise.add_gaussian_noise(clipped, sigma * c, key)
  # Off the support the attacker ignores the release (it knows the support).
  seen = jax.tree.map(lambda a, b, k: jnp.where(k, jnp.where(dp, b, a), 0.0),
                      u, noisy, support)
  return seen, support


def attack_all(exp, params, frames, labels, c: float, sigma: float, lr_client: float):
  loss, vision = make_loss(exp, params)
  k = max(exp.spec.num_classes[list(exp.spec.tasks).index(_TASK.value)], 2)

  def one(frame, label, key, topk, dp):
    g = jax.grad(loss)(vision, frame, jax.nn.one_hot(label, k))
    u = jax.tree.map(lambda x: -lr_client * x, g)
    seen, support = released(u, jax.random.fold_in(key, 0), topk, dp, c, sigma)
    target = jax.tree.map(lambda x: -x / lr_client, seen)
    # Match only on the support the attacker sees (stop-gradient off it).
    # Each leaf counts alike (positions carry the per-token signal the patch
    # kernel mixes): match in coordinates q = p * ||target leaf||, where the
    # gradient is the leaf's divided by its norm.
    scale = jax.tree.map(lambda t: 1.0 / jnp.maximum(jnp.linalg.norm(t), 1e-12), target)
    if not _NORMALIZE.value:
      scale = jax.tree.map(jnp.ones_like, scale)
    masked = lambda q, x, y: loss(jax.tree.map(
        lambda a, s, m: jnp.where(m, a * s, jax.lax.stop_gradient(a * s)), q, scale,
        support), x, y)
    q0 = jax.tree.map(lambda a, s: a / s, vision, scale)
    target_q = jax.tree.map(lambda t, s: t * s, target, scale)
    # Restarts from random frames; the attacker keeps the best match.
    x0 = jax.random.normal(jax.random.fold_in(key, 1), (_RESTARTS.value,) + frame.shape)
    recs = jax.vmap(lambda x: inversion.invert_gradients(
        masked, q0, target_q, x, num_classes=k, steps=_STEPS.value,
        learning_rate=_LR.value))(x0)
    rec = jax.tree.map(lambda a: a[jnp.argmin(recs.match_loss)], recs)
    x0 = x0[0]
    peak = jnp.max(frame) - jnp.min(frame)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(u)))
    return dict(psnr=inversion.psnr(rec.x, frame, peak),
                psnr_start=inversion.psnr(x0, frame, peak),
                psnr_mean_frame=inversion.psnr(jnp.full_like(frame, jnp.mean(frame)), frame,
                                               peak),
                label=jnp.argmax(rec.label) == label, match_loss=rec.match_loss,
                update_norm=norm, x=rec.x)

  n = frames.shape[0]
  topk = jnp.asarray(['topk' in c_ for c_ in CONDITIONS])
  dp = jnp.asarray(['dp' in c_ for c_ in CONDITIONS])
  keys = jax.random.split(jax.random.key(0), n)   # the same start per example
  per_example = jax.vmap(one, in_axes=(0, 0, 0, None, None))
  fn = jax.jit(jax.vmap(per_example, in_axes=(None, None, None, 0, 0)))
  res = jax.device_get(fn(frames, labels, keys, topk, dp))
  out = {}
  for i, condition in enumerate(CONDITIONS):
    out[condition] = {key: (np.asarray(v[i]) if key == 'x' else
                            [v[i][j].item() for j in range(n)]) for key, v in res.items()}
  return out


def main(argv):
  del argv
  if _REPLOT.value:
    with open(os.path.join(_OUT.value, 'inversion.json')) as f:
      return write_outputs(json.load(f))
  compilation_cache.enable()
  t0 = time.perf_counter()
  config = default_config.get_config()
  c = clip_norm()
  dp = default_config.get_config()
  dp.privacy.target_epsilon, dp.privacy.delta, dp.privacy.clip_norm = _EPS.value, 1e-5, c
  sigma = pipeline.make_privacy(dp).noise_multiplier
  exp = fedxr_jax.build_experiment(config)
  server, _, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  params = {**frozen, **server.shared}
  frames, labels = victims(exp, _EXAMPLES.value)
  lr_client = float(config.client_optimizer.learning_rate)
  res = attack_all(exp, params, frames, labels, c, sigma, lr_client)
  wall = time.perf_counter() - t0
  rows = [dict(condition=k, psnr_mean=float(np.mean(v['psnr'])),
               psnr_median=float(np.median(v['psnr'])),
               label_recovery=float(np.mean(v['label'])), psnr=v['psnr'],
               label_recovered=v['label'], match_loss=v['match_loss'])
          for k, v in res.items()]
  baseline = dict(start=float(np.mean(res['raw']['psnr_start'])),
                  mean_frame=float(np.mean(res['raw']['psnr_mean_frame'])))
  settings = dict(examples=_EXAMPLES.value, steps=_STEPS.value, lr=_LR.value,
                  restarts=_RESTARTS.value, normalize_leaves=_NORMALIZE.value,
                  eps=_EPS.value, delta=1e-5, clip_norm=c, noise_multiplier=sigma,
                  topk=_TOPK.value, task=_TASK.value, client_lr=lr_client,
                  update_norms=res['raw']['update_norm'], wall_s=wall)
  rounded = lambda x: np.round(np.asarray(x)[..., 0], 4).tolist()
  write_outputs({'settings': settings, 'rows': rows, 'baseline_psnr': baseline,
                 'frames': rounded(frames),
                 'reconstructions': {k: rounded(v['x']) for k, v in res.items()}})


def write_outputs(data: dict) -> None:
  s, rows, baseline = data['settings'], data['rows'], data['baseline_psnr']
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'inversion.json'), 'w') as f:
    json.dump(data, f, indent=None if 'frames' in data else 2)   # images: one line
  lines = ['| released update | PSNR dB (mean) | PSNR dB (median) | label recovery |',
           '|---|---|---|---|']
  names = {'raw': 'raw', 'topk': f"top-k {s['topk']:.0%}",
           'dp': f"DP (C={s['clip_norm']:.3g}, sigma={s['noise_multiplier']:.3g}: "
                 f"eps {s['eps']:g})",
           'topk+dp': f"top-k {s['topk']:.0%} + DP"}
  for r in rows:
    lines.append(f"| {names[r['condition']]} | {r['psnr_mean']:.1f} | "
                 f"{r['psnr_median']:.1f} | {r['label_recovery']:.2f} |")
  norms = s['update_norms']
  lines += ['', f"{s['examples']} camera frames (16x16, one per client, {s['task']} label), "
            f"one SGD step (lr {s['client_lr']:g}) of the default M3T model's vision encoder "
            f"at initialisation; cosine gradient matching"
            f"{' with every leaf weighed alike' if s.get('normalize_leaves', True) else ''}, "
            f"{s['steps']} Adam steps (lr {s['lr']:g}), best match of "
            f"{s.get('restarts', 4)} random starts, label optimised jointly (DLG; chance "
            f"1/{CLASSES.get(s['task'], '?')}). PSNR against the frame's peak-to-peak range. "
            f"DP: sigma of eps={s['eps']:g}, delta=1e-5 for the default run (60 rounds, 32 "
            f"of 500), the noise of the sum on this one update; ||u|| "
            f"{min(norms):.3g}..{max(norms):.3g}. No-information baselines: the attack's "
            f"random start {baseline['start']:.1f} dB, the frame's own mean value "
            f"{baseline['mean_frame']:.1f} dB. {s['wall_s']:.0f} s."]
  text = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'inversion.md'), 'w') as f:
    f.write(text + '\n')
  print(text)
  if 'frames' not in data:
    return

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  frames, recon = np.asarray(data['frames']), data['reconstructions']
  psnr = {r['condition']: r['psnr'] for r in rows}
  n = frames.shape[0]
  fig, axes = plt.subplots(1 + len(recon), n, figsize=(1.3 * n, 1.4 * (1 + len(recon))),
                           squeeze=False)
  for j in range(n):
    lo, hi = frames[j].min(), frames[j].max()
    axes[0, j].imshow(frames[j], cmap='gray', vmin=lo, vmax=hi)
    for i, cond in enumerate(recon, 1):
      axes[i, j].imshow(np.asarray(recon[cond][j]), cmap='gray', vmin=lo, vmax=hi)
      axes[i, j].set_title(f"{psnr[cond][j]:.0f} dB", fontsize=7)
  for i, name in enumerate(['truth'] + [names[c] for c in recon]):
    axes[i, 0].set_ylabel(name.split(' (')[0], fontsize=7)
  for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, 'inversion.png'), dpi=100)


if __name__ == '__main__':
  app.run(main)
