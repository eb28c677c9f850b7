r"""The peerbench workloads W1 (`mlp`) and W2 (`lora`) on fedxr_jax's own round.

The workloads are defined in peerbench's README.md (`/work/shared/peerbench`);
data and initial weights come from its `common.py`, the model math from its
`jax_models.py`, so the global loss after k rounds can be compared directly
with every peer. The same process also times peerbench's bare-jax reference
(`bare_jax.build`: one jit per round, vmap x scan) on the same device arrays,
interleaved round by round with ours, so the ratio is measured under the same
machine load.

fedxr_jax expression (no framework internals are touched):
  * `FederatedProblem`: init_params -> {role: tree} from common.py (the key is
    ignored so the initial loss equals the peers'); client_data slices the
    stacked [C, N, ...] device arrays; loss = jax_models' math; module_weights
    = num_examples for every role.
  * `build_federation(plan, population_size=C, cohort_size=C, local_steps,
    batch_size, optax.sgd(lr), optax.sgd(1.0), chunk_size=K, shuffle=False)`:
    cohort = all clients in order, step s uses examples [s*B, (s+1)*B) --
    exactly the peer protocol. W1 plan {'model': 'shared'}; W2 (FedIT) plan
    {'base': 'frozen', 'lora': 'shared', 'heads': 'shared'}.
  * `jax.jit(fed.round, donate_argnums=(0, 1))`, compiled once.

Protocol (peerbench README): 1 warm-up round (compile reported separately),
then R timed rounds, median s/round, `jax.block_until_ready`; the global train
loss over all clients' data is computed after every round outside the timed
region with the peers' evaluator (`jax_models.xent` in chunks of eval_chunk).

  python benchmarks/peer_workloads.py --workload=mlp --clients=128 --check
  python benchmarks/peer_workloads.py --workload=mlp --clients=1024 \
      --chunk_size=32 --cpu_devices=2
  python benchmarks/peer_workloads.py --workload=lora --clients=256 \
      --chunk_size=4 --cpu_devices=2
  # several chunk sizes in one process (interleaved, same load):
  python benchmarks/peer_workloads.py --workload=mlp --clients=1024 \
      --sweep=0,16,32,64,128,256

The last stdout line is one JSON object (also written to --out); a table with
the published peer figures (RESULTS.md) comes before it. --check exits with
status 1 if fedxr_jax's loss after any round differs from bare-jax's by more
than --tol.

Speed knobs (medians on the shared 2-core AVX-512 dev VM, 2026-11-24, each
against bare-jax full vmap timed in the same process; ratio = ours / bare):
  mlp C=1024: chunk 32 0.186 s (0.60); + --cpu_devices=2 0.114 s (0.53)
  lora C=256: chunk 8 1.02 s (0.60); + --cpu_devices=2, chunk 4: 0.72 s (0.42)
  * --chunk_size: clients per vmapped group (lax.map over groups); 16-128 for
    mlp and 4-8 for lora beat the full vmap.
  * --cpu_devices=2: fedxr_jax's client mesh over 2 XLA:CPU host devices, so
    the two halves of each group run on separate threads. This is where most
    of the gain over bare-jax comes from on an idle 2-core machine (it loses
    when another process holds a core).
  * --model=fast (W2 only): the same model (same parameters and function,
    gradients equal to ~1e-8) with attention in [b, h, t, d] layout and a
    custom VJP of batched matmuls, plus custom VJPs for exact GELU and
    LayerNorm. 1.6x faster for one isolated vmapped step, but NOT faster
    inside the round (XLA fuses the reference differently there); kept so the
    measurement can be repeated. The default is the peers' math.
  * --xla_dots: XLA:CPU's dot/fusion library for OUR round only (bare-jax
    keeps the defaults the peers ran with unless --bare_same_xla); the
    default (YNNPACK) was as fast as the alternatives inside the round.
"""
import json
import os
import sys
import time


def _apply_cpu_devices_flag(argv):
  """--cpu_devices=N must reach XLA before jax initializes its backends."""
  n = 1
  for i, a in enumerate(argv[1:], 1):
    if a.startswith('--cpu_devices='):
      n = int(a.split('=', 1)[1])
    elif a == '--cpu_devices' and i + 1 < len(argv):
      n = int(argv[i + 1])
  if n > 1:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_force_host_platform_device_count=%d' % n).strip()


_apply_cpu_devices_flag(sys.argv)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from fedxr_jax.core import rng  # noqa: E402
from fedxr_jax.core.problem import FederatedProblem  # noqa: E402
from fedxr_jax import topology as topology_registry  # noqa: E402
from fedxr_jax.core.round import build_federation  # noqa: E402
from fedxr_jax.core.round_plan import RoundPlan  # noqa: E402
from fedxr_jax.core import vectorize  # noqa: E402

_PEERBENCH_CANDIDATES = (
    os.environ.get('PEERBENCH_DIR', ''),
    '/work/shared/peerbench',
    os.path.join(os.path.dirname(_REPO), 'shared', 'peerbench'),
)

_WORKLOAD = flags.DEFINE_enum('workload', None, ['mlp', 'lora'],
                              'W1 (mlp, FedAvg) or W2 (lora, FedIT).')
_CLIENTS = flags.DEFINE_integer('clients', None, 'Population = cohort size C.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Timed rounds after 1 warm-up round.')
_CHUNK = flags.DEFINE_string(
    'chunk_size', '0', "Clients per vmapped group (0 = vmap all C), or 'auto' "
    '(1 warm-up + 2 rounds per candidate of --sweep or a default list, on '
    'throw-away states; the fastest is then measured).')
_SWEEP = flags.DEFINE_list(
    'sweep', [], 'Also time fedxr_jax at these chunk sizes, interleaved with '
    'the main run (reported under "sweep").')
_MODEL = flags.DEFINE_enum(
    'model', 'reference', ['reference', 'fast'],
    'reference = peerbench jax_models math; fast = same model with XLA:CPU-'
    'friendly attention/GELU/LayerNorm VJPs (lora only; mlp ignores it).')
_XLA_DOTS = flags.DEFINE_enum(
    'xla_dots', 'default', ['default', 'eigen', 'ynn_individual_dot'],
    'XLA:CPU dot/fusion library for the fedxr_jax round: default (YNNPACK '
    'fusions), eigen (YNNPACK off), ynn_individual_dot (YNNPACK for single '
    'dots only, no multi-op fusions).')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 1, 'N > 1: expose N XLA:CPU devices '
    '(--xla_force_host_platform_device_count) and pass fedxr_jax a client mesh '
    'over them, so each vmapped group is split over N devices that run on '
    'separate threads; the data is replicated on every device. bare-jax stays '
    'on device 0.')
_BARE_SAME_XLA = flags.DEFINE_bool(
    'bare_same_xla', False, 'Compile bare-jax with the same --xla_dots.')
_BARE_CHUNK = flags.DEFINE_integer(
    'bare_chunk', 0, 'bare-jax reference: 0 = full vmap (the published '
    'reference), K = its --chunk K variant, -1 = do not run bare-jax.')
_CHECK = flags.DEFINE_bool(
    'check', False, 'Exit 1 unless every per-round loss matches bare-jax to --tol.')
_TOL = flags.DEFINE_float('tol', 1e-4, 'Loss tolerance for the equivalence check.')
_OUT = flags.DEFINE_string('out', '', 'Also write the JSON result here.')

# Published peer figures, copied from /work/shared/peerbench/RESULTS.md
# (2-core x86-64 AVX-512 VM, no GPU, 2026-11-23; median of 5 timed rounds after
# 1 warm-up). Reference figures of OTHER frameworks on ANOTHER machine -- not
# results of this script. (framework, s/round, client-updates/s, loss after 6)
PUBLISHED = {
    ('mlp', 128): [
        ('bare-jax (vmap all clients)', 0.0126, 50856, 2.056),
        ('fedjax 0.0.17', 0.0624, 10255, 2.056),
        ('pfl 0.6.0', 0.154, 4146, 2.056),
        ('flwr 1.41', 0.530, 1208, 2.056),
    ],
    ('mlp', 1024): [
        ('bare-jax (vmap all clients)', 0.151, 33958, 2.095),
        ('bare-jax, chunks of 128', 0.0732, 69921, 2.095),
        ('fedjax 0.0.17', 0.555, 9233, 2.095),
        ('pfl 0.6.0', 1.45, 3520, 2.095),
        ('flwr 1.41', 8.32, 616, 2.095),
    ],
    ('lora', 256): [
        ('bare-jax (vmap all clients)', 1.27, 806, 1.153),
        ('bare-jax, chunks of 16', 0.743, 1377, 1.153),
        ('fedjax 0.0.17', 1.19, 862, 1.152),
        ('pfl 0.6.0', 2.17, 471, 1.153),
        ('flwr 1.41', 3.48, 294, 1.153),
    ],
}
# Published bare-jax initial loss and loss after 6 rounds (RESULTS.md /
# results-2026-11-23.json); reported only when bare-jax is not run here
# (--bare_chunk=-1).
PUBLISHED_LOSS = {('mlp', 128): (2.3714, 2.0556), ('mlp', 1024): (2.3756, 2.0951),
                  ('lora', 256): (1.3710, 1.1525)}

_AUTO_CANDIDATES = {'mlp': (16, 32, 64, 128, 256), 'lora': (4, 8, 16, 32, 64)}
_XLA_OPTIONS = {
    'default': None,
    'eigen': {'xla_cpu_experimental_ynn_fusion_type': ''},
    'ynn_individual_dot': {
        'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'},
}


def import_peerbench():
  """Imports peerbench's common, jax_models and bare_jax (numpy/jax only)."""
  for d in _PEERBENCH_CANDIDATES:
    if d and os.path.isfile(os.path.join(d, 'common.py')):
      if d not in sys.path:
        sys.path.insert(0, d)
      import common  # pylint: disable=import-outside-toplevel
      import jax_models  # pylint: disable=import-outside-toplevel
      import bare_jax  # pylint: disable=import-outside-toplevel
      return d, common, jax_models, bare_jax
  raise SystemExit(
      'peer_workloads: the peerbench folder (common.py, jax_models.py, '
      'bare_jax.py) was not found; looked in: '
      + ', '.join(repr(d) for d in _PEERBENCH_CANDIDATES if d)
      + '. Set PEERBENCH_DIR=/path/to/peerbench.')


# ----------------------------------------------------------------------------
# W2 model written for XLA:CPU (same function and parameters as jax_models).
# ----------------------------------------------------------------------------
_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def _attention_fwd(q, k, v, scale):
  """q, k, v: [B, H, T, D]: batch dims lead in every batched matmul."""
  s = jnp.einsum('bhqd,bhkd->bhqk', q, k) * scale
  s = s - jnp.max(s, -1, keepdims=True)
  e = jnp.exp(s)
  p = e / jnp.sum(e, -1, keepdims=True)
  return jnp.einsum('bhqk,bhkd->bhqd', p, v), (q, k, v, p)


def _attention_bwd(scale, res, do):
  q, k, v, p = res
  dp = jnp.einsum('bhqd,bhkd->bhqk', do, v)
  ds = p * (dp - jnp.sum(dp * p, -1, keepdims=True)) * scale
  dq = jnp.einsum('bhqk,bhkd->bhqd', ds, k)
  dk = jnp.einsum('bhkq,bhqd->bhkd', jnp.swapaxes(ds, -1, -2), q)
  dv = jnp.einsum('bhkq,bhqd->bhkd', jnp.swapaxes(p, -1, -2), do)
  return dq, dk, dv


attention = jax.custom_vjp(lambda q, k, v, scale: _attention_fwd(q, k, v, scale)[0],
                           nondiff_argnums=(3,))
attention.defvjp(_attention_fwd, _attention_bwd)


def _gelu_fwd(x):
  cdf = 0.5 * jax.lax.erfc(-x * _SQRT_HALF)
  return x * cdf, (x, cdf)


def _gelu_bwd(res, g):
  x, cdf = res
  return (g * (cdf + x * _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)),)


gelu_exact = jax.custom_vjp(lambda x: _gelu_fwd(x)[0])
gelu_exact.defvjp(_gelu_fwd, _gelu_bwd)


def _normalize_fwd(x, eps):
  mu = jnp.mean(x, -1, keepdims=True)
  xc = x - mu
  rstd = jax.lax.rsqrt(jnp.mean(jnp.square(xc), -1, keepdims=True) + eps)
  xh = xc * rstd
  return xh, (xh, rstd)


def _normalize_bwd(eps, res, dy):
  del eps
  xh, rstd = res
  m1 = jnp.mean(dy, -1, keepdims=True)
  m2 = jnp.mean(dy * xh, -1, keepdims=True)
  return ((dy - m1 - xh * m2) * rstd,)


_normalize = jax.custom_vjp(lambda x, eps: _normalize_fwd(x, eps)[0],
                            nondiff_argnums=(1,))
_normalize.defvjp(_normalize_fwd, _normalize_bwd)


def make_fast_lora_logits(w2):
  """jax_models.lora_logits, same math, laid out for XLA:CPU."""
  d, nh, s, eps = w2['d'], w2['heads'], w2['lora_scale'], w2['ln_eps']
  hd = d // nh
  scale = 1.0 / float(hd) ** 0.5

  def logits(tr, fr, x):
    b, t, _ = x.shape
    heads = lambda z: z.reshape(b, t, nh, hd).transpose(0, 2, 1, 3)
    h = x @ fr['in_w'] + fr['in_b']
    for l in range(w2['blocks']):
      p = f'b{l}.'
      a = _normalize(h, eps) * fr[p + 'ln1_g'] + fr[p + 'ln1_b']
      q = a @ fr[p + 'wq'] + fr[p + 'bq'] + s * ((a @ tr[p + 'qa']) @ tr[p + 'qb'])
      k = a @ fr[p + 'wk'] + fr[p + 'bk']
      v = a @ fr[p + 'wv'] + fr[p + 'bv'] + s * ((a @ tr[p + 'va']) @ tr[p + 'vb'])
      o = attention(heads(q), heads(k), heads(v), scale)
      o = o.transpose(0, 2, 1, 3).reshape(b, t, d)
      h = h + o @ fr[p + 'wo'] + fr[p + 'bo']
      a = _normalize(h, eps) * fr[p + 'ln2_g'] + fr[p + 'ln2_b']
      h = h + gelu_exact(a @ fr[p + 'w1'] + fr[p + 'b1']) @ fr[p + 'w2'] + fr[p + 'b2']
    return jnp.mean(h, axis=1) @ tr['head_w'] + tr['head_b']

  return logits


# ----------------------------------------------------------------------------
# The workloads as fedxr_jax FederatedProblems.
# ----------------------------------------------------------------------------
class PeerWorkload:
  """Data, weights, problem and evaluator of one peerbench workload."""

  def __init__(self, pb, workload, clients, model):
    self.common, self.models, self.bare_jax = pb
    self.name, self.clients = workload, clients
    self.spec = self.common.spec(workload)
    x, y = self.common.all_data(workload, clients)       # [C, N, ...], [C, N]
    self.x_np, self.y_np = x, y
    self.num_examples = x.shape[1]
    self.source = {'x': jax.device_put(x), 'y': jax.device_put(y)}
    self.x_all = jax.device_put(x.reshape((-1,) + x.shape[2:]))
    self.y_all = jax.device_put(y.reshape(-1))
    M = self.models
    if workload == 'mlp':
      self.model = 'reference'
      self.plan = {'model': 'shared'}
      self._logits = lambda p, x: M.mlp_logits(p['model'], x)
    else:
      self.model = model
      self.plan = {'base': 'frozen', 'lora': 'shared', 'heads': 'shared'}
      lg = M.lora_logits if model == 'reference' else make_fast_lora_logits(self.spec)
      self._logits = lambda p, x: lg({**p['lora'], **p['heads']}, p['base'], x)
    self._eval = jax.jit(lambda p, x, y: M.xent(self._peer_logits(p, x), y))

  def _peer_logits(self, p, x):
    """The peers' forward (jax_models), used for every reported loss."""
    if self.name == 'mlp':
      return self.models.mlp_logits(p['model'], x)
    return self.models.lora_logits({**p['lora'], **p['heads']}, p['base'], x)

  def initial_params(self):
    if self.name == 'mlp':
      return {'model': {k: jnp.asarray(v) for k, v in self.common.init_mlp().items()}}
    frozen, trainable = self.common.init_lora()
    return {'base': {k: jnp.asarray(v) for k, v in frozen.items()},
            'lora': {k: jnp.asarray(v) for k, v in trainable.items()
                     if not k.startswith('head')},
            'heads': {k: jnp.asarray(v) for k, v in trainable.items()
                      if k.startswith('head')}}

  def problem(self):
    n = self.num_examples
    xent = self.models.xent

    def init_params(key):
      del key  # weights come from common.py, as for every peer
      return self.initial_params()

    def client_data(source, client_id, split, round_idx=0):
      del split  # the peer benchmark evaluates on the training data
      return {'examples': {'x': source['x'][client_id], 'y': source['y'][client_id]},
              'num_examples': jnp.int32(n)}

    def loss(params, batch, meta):
      del meta
      logits = self._logits(params, batch['x'])
      return xent(logits, batch['y'])[0], {}

    def module_weights(data, stats=None):
      w = data['num_examples'].astype(jnp.float32)
      return {r: w for r in self.plan}

    def eval_stats(params, data):
      ex = data['examples']
      count = data['num_examples'].astype(jnp.float32)
      ce, acc = xent(self._peer_logits(params, ex['x']), ex['y'])
      return {'loss_sum': ce * count, 'correct': acc * count, 'count': count}

    return FederatedProblem(init_params=init_params, loss=loss,
                            client_data=client_data, module_weights=module_weights,
                            eval_stats=eval_stats)

  def global_loss(self, params):
    """(loss, acc) over all clients' data, exactly as peerbench's bare_jax."""
    return self.models.chunked_eval(lambda a, b: self._eval(params, a, b),
                                    self.x_all, self.y_all, self.spec['eval_chunk'])

  def client_updates(self):
    return self.clients * self.spec['steps']


# ----------------------------------------------------------------------------
# Runners: one compiled round + its state; step() is the timed region.
# ----------------------------------------------------------------------------
class FedxrRunner:

  def __init__(self, wl, chunk, xla_options, mesh=None):
    self.wl, self.chunk = wl, chunk
    w = wl.spec
    self.source = wl.source
    if mesh is not None:
      self.source = jax.device_put(wl.source, NamedSharding(mesh, PartitionSpec()))
    # The peers have no radio model: a central server without cost metrics.
    topology = topology_registry.make({'kind': 'centralized', 'centralized': {}}, facts=None, geography=None,
                                      channel=None)
    self.fed = build_federation(
        wl.problem(), wl.plan, population_size=wl.clients,
        cohort_size=wl.clients, local_steps=w['steps'], batch_size=w['batch'],
        client_optimizer=optax.sgd(w['lr']), server_optimizer=optax.sgd(1.0),
        topology=topology, chunk_size=chunk, shuffle=False, mesh=mesh)
    self.server, self.clients, self.frozen = self.fed.init(self.source, rng.key_data(0))
    # Every client, in order, every round.
    self.extra = (RoundPlan(cohort=jnp.arange(wl.clients, dtype=jnp.int32), topo={}),)
    jax.block_until_ready((self.server, self.frozen))
    t = time.perf_counter()
    self.compiled = jax.jit(self.fed.round, donate_argnums=(0, 1)).lower(
        self.server, self.clients, self.frozen, self.source, *self.extra).compile(
            compiler_options=xla_options)
    self.compile_s = time.perf_counter() - t

  def step(self):
    self.server, self.clients, self.metrics = self.compiled(
        self.server, self.clients, self.frozen, self.source, *self.extra)
    jax.block_until_ready(self.server)

  def params(self):
    return {**self.frozen, **self.server.shared}

  def fedxr_evaluate(self):
    """Global loss through fedxr_jax's own `evaluate` (cross-check, untimed)."""
    ids = jnp.arange(self.wl.clients, dtype=jnp.int32)
    s = jax.jit(self.fed.evaluate, static_argnums=(5,))(
        self.server, self.clients, self.frozen, self.source, ids, 'train')
    return float(s['loss_sum'] / s['count'])


class BareRunner:

  def __init__(self, wl, chunk, xla_options):
    self.wl, self.chunk = wl, chunk
    c = wl.common
    if wl.name == 'mlp':
      p0, fr = c.init_mlp(), {}
    else:
      fr, p0 = c.init_lora()
    xb, yb = c.batched(wl.name, wl.x_np, wl.y_np)
    self.X, self.Y = jax.device_put(xb), jax.device_put(yb)
    self.nex = jax.device_put(np.full((wl.clients,), wl.num_examples, np.float32))
    self.p = jax.tree.map(jax.device_put, p0)
    self.fr = jax.tree.map(jax.device_put, fr)
    round_fn, _ = wl.bare_jax.build(wl.name, wl.clients, chunk)
    t = time.perf_counter()
    self.compiled = jax.jit(round_fn).lower(self.p, self.fr, self.X, self.Y,
                                            self.nex).compile(compiler_options=xla_options)
    self.compile_s = time.perf_counter() - t

  def step(self):
    self.p = self.compiled(self.p, self.fr, self.X, self.Y, self.nex)
    jax.block_until_ready(self.p)

  def params(self):
    if self.wl.name == 'mlp':
      return {'model': self.p}
    return {'base': self.fr,
            'lora': {k: v for k, v in self.p.items() if not k.startswith('head')},
            'heads': {k: v for k, v in self.p.items() if k.startswith('head')}}


def run_interleaved(runners, rounds):
  """1 warm-up round each, then `rounds` timed rounds, round-robin over runners
  (so slow drifts of machine load hit every runner alike). Loss after every
  round is evaluated outside the timed region."""
  out = {}
  for name, r in runners.items():
    t = time.perf_counter()
    r.step()
    out[name] = {'warmup_run_s': time.perf_counter() - t, 'times': [], 'cpu': [],
                 'losses': [r.wl.global_loss(r.params())[0]]}
  for _ in range(rounds):
    for name, r in runners.items():
      c, t = time.process_time(), time.perf_counter()
      r.step()
      out[name]['times'].append(time.perf_counter() - t)
      out[name]['cpu'].append(time.process_time() - c)
      out[name]['losses'].append(r.wl.global_loss(r.params())[0])
  return out


def autotune_chunk(wl, candidates, xla_options, mesh):
  """Fastest chunk size: 1 warm-up + 2 rounds each on throw-away states."""
  best, trials = None, {}
  for k in candidates:
    r = FedxrRunner(wl, k, xla_options, mesh)
    r.step()
    ts = []
    for _ in range(2):
      t = time.perf_counter()
      r.step()
      ts.append(time.perf_counter() - t)
    trials[k] = min(ts)
    if best is None or trials[k] < trials[best]:
      best = k
    del r
  return best, trials


def _divisor_candidates(clients, ks):
  return [k for k in ks if 0 < k < clients and clients % k == 0] or [0]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # no jax backend-probing chatter
  if _WORKLOAD.value is None or _CLIENTS.value is None:
    raise app.UsageError('--workload and --clients are required')
  pb_dir, common, jax_models, bare_jax = import_peerbench()
  W, C = _WORKLOAD.value, _CLIENTS.value
  load0 = os.getloadavg()
  t0 = time.perf_counter()
  wl = PeerWorkload((common, jax_models, bare_jax), W, C, _MODEL.value)
  setup_s = time.perf_counter() - t0
  xla_opts = _XLA_OPTIONS[_XLA_DOTS.value]
  mesh = None
  if _CPU_DEVICES.value > 1:
    if len(jax.devices()) < _CPU_DEVICES.value:
      raise SystemExit('--cpu_devices=%d but jax sees %s' % (_CPU_DEVICES.value, jax.devices()))
    mesh = vectorize.client_mesh(jax.devices()[:_CPU_DEVICES.value])
  init_loss, init_acc = wl.global_loss(wl.initial_params())

  # Model check (fast W2 only): loss and gradients of client 0's first batch.
  model_check = None
  if wl.model == 'fast':
    p0 = wl.initial_params()
    tr0 = {**p0['lora'], **p0['heads']}
    xb = wl.source['x'][0, :wl.spec['batch']]
    yb = wl.source['y'][0, :wl.spec['batch']]
    fast = make_fast_lora_logits(wl.spec)
    lf = lambda t, lg: jax_models.xent(lg(t, p0['base'], xb), yb)[0]
    (l1, g1) = jax.value_and_grad(lambda t: lf(t, jax_models.lora_logits))(tr0)
    (l2, g2) = jax.value_and_grad(lambda t: lf(t, fast))(tr0)
    model_check = {
        'loss_absdiff': float(abs(l1 - l2)),
        'grad_max_absdiff': max(float(jnp.max(jnp.abs(a - b)))
                                for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2))),
        'grad_max_abs': max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g1))}

  autotune = None
  t0 = time.perf_counter()
  if _CHUNK.value == 'auto':
    cands = _divisor_candidates(C, [int(k) for k in _SWEEP.value] or _AUTO_CANDIDATES[W])
    chunk, trials = autotune_chunk(wl, cands, xla_opts, mesh)
    autotune = {'candidates': cands, 'min_s_of_2_rounds': trials, 'chosen': chunk,
                'autotune_s': time.perf_counter() - t0}
  else:
    chunk = int(_CHUNK.value)

  runners = {'fedxr': FedxrRunner(wl, chunk, xla_opts, mesh)}
  sweep = [int(k) for k in _SWEEP.value if int(k) != chunk] if _CHUNK.value != 'auto' else []
  for k in sweep:
    runners['fedxr_chunk%d' % k] = FedxrRunner(wl, k, xla_opts, mesh)
  if _BARE_CHUNK.value >= 0:
    runners['bare'] = BareRunner(wl, _BARE_CHUNK.value,
                                 xla_opts if _BARE_SAME_XLA.value else None)
  res = run_interleaved(runners, _ROUNDS.value)

  def summary(name):
    r, o = runners[name], res[name]
    med = float(np.median(o['times']))
    return {'median_s_per_round': med, 'min_s_per_round': float(np.min(o['times'])),
            'cpu_s_per_round': float(np.median(o['cpu'])),
            'round_times_s': [round(t, 6) for t in o['times']],
            'client_updates_per_s': wl.client_updates() / med,
            'compile_s': r.compile_s, 'warmup_run_s': o['warmup_run_s'],
            'warmup_s': r.compile_s + o['warmup_run_s'],
            'loss_after_round': o['losses']}

  main_s = summary('fedxr')
  fedxr_runner = runners['fedxr']
  final_loss, final_acc = wl.global_loss(fedxr_runner.params())
  result = {
      'framework': 'fedxr_jax', 'workload': W, 'clients': C,
      'chunk_size': chunk, 'model': wl.model, 'xla_dots': _XLA_DOTS.value,
      'cpu_devices': _CPU_DEVICES.value,
      'local_steps': wl.spec['steps'], 'rounds_timed': _ROUNDS.value,
      **main_s,
      'init_loss': init_loss, 'init_acc': init_acc,
      'final_loss': final_loss, 'final_acc': final_acc,
      'final_loss_fedxr_evaluate': fedxr_runner.fedxr_evaluate(),
      'setup_s': setup_s,
  }
  if autotune:
    result['autotune'] = autotune
    result['warmup_s'] += autotune['autotune_s']
  if model_check:
    result['model_check_vs_jax_models'] = model_check
  if 'bare' in runners:
    b = summary('bare')
    diffs = [abs(a - c) for a, c in zip(main_s['loss_after_round'], b['loss_after_round'])]
    result.update({
        'bare_jax_chunk': _BARE_CHUNK.value,
        'bare_jax_xla_dots': _XLA_DOTS.value if _BARE_SAME_XLA.value else 'default',
        'bare_jax_median_s_per_round': b['median_s_per_round'],
        'bare_jax_min_s_per_round': b['min_s_per_round'],
        'bare_jax_round_times_s': b['round_times_s'],
        'bare_jax_warmup_s': b['warmup_s'],
        'bare_jax_loss_after_round': b['loss_after_round'],
        'ratio_vs_bare_jax': main_s['median_s_per_round'] / b['median_s_per_round'],
        'max_loss_diff_vs_bare_jax': max(diffs),
        'equivalent_to_bare_jax': max(diffs) <= _TOL.value,
    })
  elif (W, C) in PUBLISHED_LOSS:
    pi, pf = PUBLISHED_LOSS[(W, C)]
    result['published_bare_jax_init_final_loss'] = [pi, pf]
  if sweep:
    result['sweep'] = {str(k): {kk: v for kk, v in summary('fedxr_chunk%d' % k).items()
                                if kk != 'round_times_s'}
                       for k in sweep}
    result['sweep'][str(chunk)] = {kk: v for kk, v in main_s.items() if kk != 'round_times_s'}
    result['best_chunk_size'] = int(min(result['sweep'],
                                        key=lambda k: result['sweep'][k]['median_s_per_round']))
  result.update({
      'peerbench_dir': pb_dir, 'jax': jax.__version__, 'devices': str(jax.devices()),
      'cpu_count': os.cpu_count(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'loadavg_start': load0, 'loadavg_end': os.getloadavg(),
  })

  print_table(result, runners, summary)
  line = json.dumps(result)
  if _OUT.value:
    d = os.path.dirname(os.path.abspath(_OUT.value))
    os.makedirs(d, exist_ok=True)
    with open(_OUT.value, 'w') as f:
      json.dump(result, f, indent=1)
  print(line, flush=True)
  if _CHECK.value and not result.get('equivalent_to_bare_jax', False):
    sys.exit(1)


def print_table(result, runners, summary):
  W, C = result['workload'], result['clients']
  steps = result['local_steps']
  print('\n%s, %d clients x %d local steps per round' % (W, C, steps))
  print('%-52s %10s %10s %11s %s' % ('run', 'med s/rnd', 'warm-up s', 'updates/s',
                                     'loss init->after each round'))
  for name in runners:
    s = summary(name)
    if name == 'bare':
      label = 'bare-jax %s (this run)' % (
          'vmap all' if not result['bare_jax_chunk'] else 'chunk %d' % result['bare_jax_chunk'])
    else:
      k = runners[name].chunk
      label = 'fedxr_jax chunk %d, %s%s (this run)' % (
          k, result['model'], ', %d devices' % result['cpu_devices']
          if result['cpu_devices'] > 1 else '')
    print('%-52s %10.4f %10.2f %11.0f %.3f->%s' % (
        label, s['median_s_per_round'], s['warmup_s'], s['client_updates_per_s'],
        result['init_loss'], ','.join('%.4f' % v for v in s['loss_after_round'])))
  pub = PUBLISHED.get((W, C))
  if pub:
    print('published peers (RESULTS.md, another 2-core machine, 2026-11-23):')
    for name, sec, ups, loss6 in pub:
      print('  %-50s %10.4f %10s %11.0f loss after 6 rounds %.3f' % (name, sec, '', ups, loss6))
  if 'bare_jax_median_s_per_round' in result:
    print('fedxr_jax / bare-jax (same run): %.3f   max |loss diff| over rounds: %.2e (%s)' % (
        result['ratio_vs_bare_jax'], result['max_loss_diff_vs_bare_jax'],
        'equivalent' if result['equivalent_to_bare_jax'] else 'NOT EQUIVALENT'))
  print('machine load average start/end: %s / %s' % (
      ' '.join('%.2f' % v for v in result['loadavg_start']),
      ' '.join('%.2f' % v for v in result['loadavg_end'])))


if __name__ == '__main__':
  app.run(main)
