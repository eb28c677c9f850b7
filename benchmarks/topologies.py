r"""Accuracy against energy and latency for every coordination topology.

  python benchmarks/topologies.py                       # 1024 clients, 5 topologies
  python benchmarks/topologies.py --clients=256 --rounds=10 --out=/tmp/topo

The paper's Table 7 trade-off "centralized vs D2D aggregation" made
measurable: each topology trains the default XR federation with every
client in every round (decentralized gossip needs that), and reports final
accuracy (participating users' held-out data), total device energy, mean
round latency and bits per link type. Writes OUT/topologies.json,
OUT/topologies.md and OUT/topologies.png. --speed_clients also times one
gossip round against one centralized round at that size (median of
--speed_rounds, after a warm-up).
"""
import json
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from fedxr_jax.configs import default as default_config
from fedxr_jax.compose import experiment
from fedxr_jax.training import loop

_CLIENTS = flags.DEFINE_integer('clients', 1024, 'Population = cohort size.')
_ROUNDS = flags.DEFINE_integer('rounds', 20, 'Rounds per topology.')
_LOCAL_STEPS = flags.DEFINE_integer('local_steps', 4, 'Local steps (tier-1.0 device).')
_CHUNK = flags.DEFINE_integer('chunk_size', 256, 'Clients per vmapped chunk.')
_KINDS = flags.DEFINE_list('kinds', ['centralized', 'hierarchical', 'semi',
                                     'decentralized', 'tree'], 'Topologies.')
_SPEED_CLIENTS = flags.DEFINE_integer('speed_clients', 4096,
                                      '0 to skip the gossip-vs-centralized timing.')
_SPEED_ROUNDS = flags.DEFINE_integer('speed_rounds', 3, 'Timed rounds per variant.')
_OUT = flags.DEFINE_string('out', 'runs/bench_topologies', 'Output folder.')
_REPLOT = flags.DEFINE_bool('replot', False, 'Only redraw OUT/topologies.{md,png}.')


def make_config(kind: str, clients: int):
  config = default_config.get_config()
  config.population_size = config.cohort_size = clients
  config.local_steps = _LOCAL_STEPS.value
  config.chunk_size = _CHUNK.value if _CHUNK.value < clients else 0
  config.num_rounds = _ROUNDS.value
  config.eval_every = _ROUNDS.value
  config.checkpoint_every = _ROUNDS.value
  config.eval_unseen_clients = 256
  config.plot = False
  config.data.area_m = 200.0          # ~ 25 users per 1000 m^2 at 1024 users
  config.data.walk_m_per_round = 2.0
  config.topology.kind = kind
  config.topology.num_clusters = 16
  config.topology.gamma = 4
  config.topology.k2 = 2
  config.topology.d2d_fallback = 'ring'
  return config


def train(kind: str) -> dict:
  config = make_config(kind, _CLIENTS.value)
  workdir = os.path.join(_OUT.value, 'runs', kind)
  t0 = time.perf_counter()
  rows = loop.run(config, workdir, progress=False)
  wall = time.perf_counter() - t0
  last = rows[-1]
  total = lambda key: float(sum(r[key] for r in rows))
  return dict(
      kind=kind, clients=_CLIENTS.value, rounds=len(rows),
      accuracy=last['eval/accuracy'], unseen_accuracy=last['eval_unseen/accuracy'],
      energy_j=total('cost/energy_j'), latency_s_per_round=total('cost/latency_s') / len(rows),
      uplink_bits=total('comm/uplink_bits'), downlink_bits=total('comm/downlink_bits'),
      d2d_bits=total('comm/d2d_bits'), backhaul_bits=total('comm/backhaul_bits'),
      consensus_distance=last.get('consensus/distance'), wall_s=wall)


def time_round(kind: str, clients: int) -> float:
  config = make_config(kind, clients)
  exp = experiment.build(config)
  server, clients_state, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  round_fn = jax.jit(exp.federation.round, donate_argnums=(0, 1))
  times = []
  for r in range(_SPEED_ROUNDS.value + 1):
    topo, _ = exp.layout(r)
    t0 = time.perf_counter()
    server, clients_state, metrics = round_fn(server, clients_state, frozen,
                                              exp.world, topo)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return float(np.median(times[1:]))


def write_outputs(results, speed):
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'topologies.json'), 'w') as f:
    json.dump({'results': results, 'speed': speed}, f, indent=2)
  lines = ['| topology | accuracy | unseen acc | energy J (all devices, all rounds) | '
           'latency s/round | uplink Mbit | downlink Mbit | D2D Mbit | backhaul Mbit |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in results:
    lines.append(
        f"| {r['kind']} | {r['accuracy']:.3f} | {r['unseen_accuracy']:.3f} | "
        f"{r['energy_j']:.2f} | {r['latency_s_per_round']:.3f} | "
        f"{r['uplink_bits'] / 1e6:.1f} | {r['downlink_bits'] / 1e6:.1f} | "
        f"{r['d2d_bits'] / 1e6:.1f} | {r['backhaul_bits'] / 1e6:.1f} |")
  lines.append('')
  lines.append('Accuracy: held-out data of participating users with the global model; '
               'decentralized uses each client\'s own model (unseen users: the mean model).')
  if speed:
    lines.append('')
    lines.append(f"Round time at {speed['clients']} clients (median of "
                 f"{_SPEED_ROUNDS.value}): centralized {speed['centralized_s']:.2f} s, "
                 f"decentralized gossip {speed['decentralized_s']:.2f} s, ratio "
                 f"{speed['ratio']:.2f}.")
  table = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'topologies.md'), 'w') as f:
    f.write(table + '\n')
  print(table)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, key, label in ((axes[0], 'energy_j', 'total device energy (J)'),
                         (axes[1], 'latency_s_per_round', 'mean round latency (s)')):
    for r in results:
      ax.scatter(r[key], r['accuracy'], s=60)
      ax.annotate(r['kind'], (r[key], r['accuracy']), textcoords='offset points',
                  xytext=(5, 5))
    ax.set(xlabel=label, ylabel='accuracy (participating users)')
    ax.set_xscale('log')
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  fig.suptitle(f"{results[0]['clients']} XR clients, {results[0]['rounds']} rounds")
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, 'topologies.png'), dpi=100)


def main(argv):
  del argv
  if _REPLOT.value:   # redraw table and plot from a saved topologies.json
    with open(os.path.join(_OUT.value, 'topologies.json')) as f:
      saved = json.load(f)
    write_outputs(saved['results'], saved['speed'])
    return
  results = []
  for kind in _KINDS.value:
    r = train(kind)
    print(json.dumps(r), flush=True)
    results.append(r)
  speed = None
  if _SPEED_CLIENTS.value:
    c = time_round('centralized', _SPEED_CLIENTS.value)
    d = time_round('decentralized', _SPEED_CLIENTS.value)
    speed = dict(clients=_SPEED_CLIENTS.value, centralized_s=c, decentralized_s=d,
                 ratio=d / c)
  write_outputs(results, speed)


if __name__ == '__main__':
  app.run(main)
