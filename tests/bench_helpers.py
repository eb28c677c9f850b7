"""A hand-made track registry and submissions for the benchmark tests.

TRACKS is also what `fedxr-leaderboard --tracks=bench_helpers` loads.
"""
import copy
import html.parser
import json
import os

from fedxr_jax.bench import model_facts
from fedxr_jax.bench import submission
from fedxr_jax.bench.track import Between, Budget, OneOf, Track

ACCURACY = Track(
    id='xr-accuracy', version=1, description='Held-out accuracy of the tiny XR federation.',
    frozen={'data.source': 'synthetic', 'data.tasks': ('gesture', 'intent'),
            'model.m3t.width': 32, 'num_rounds': 4},
    open={'algorithm.name': OneOf(('fedavg', 'fedprox')),
          'client_optimizer.learning_rate': Between(1e-4, 1.0),
          'local_steps': Between(1, 16, integer=True)},
    seeds=(0, 1, 2), primary_metric='eval/accuracy', higher_is_better=True,
    cost_metrics=('comm/uplink_bits', 'energy/joules', 'qoe/latency_violations',
                  'privacy/epsilon'))
LATENCY = Track(
    id='xr-latency', version=2, description='95th-percentile inference latency.',
    frozen={'data.source': 'hapt', 'model.m3t.width': 16},
    open={'algorithm.name': OneOf(('fedavg', 'ditto'))},
    seeds=(0, 1, 2), primary_metric='latency/p95_ms', higher_is_better=False,
    cost_metrics=('energy/joules',))
GPU = Track(
    id='xr-gpu', version=1, description='A track that must run on a GPU.',
    frozen={'model.m3t.width': 256}, open={}, seeds=(0,), primary_metric='eval/accuracy',
    requires=('gpu',))
# A version-2 track with a per-device budget (1000 trainable parameters...).
BUDGETED = Track(
    id='xr-budget', version=2, description='A budget the open architecture must fit.',
    frozen={'model.m3t.width': 16}, open={'model.m3t.lora_rank': Between(0, 64, integer=True)},
    seeds=(0, 1, 2), primary_metric='eval/accuracy', target=0.8,
    budget=Budget(trainable_params=1000, upload_bytes=4000, flops_per_example=1e6,
                  compute_s=0.5))
TRACKS = (ACCURACY, LATENCY, GPU, BUDGETED)
# A model within BUDGETED's budget: 900 trainable parameters (800 shared, 100 personal).
FACTS = model_facts.count({'base': 'frozen', 'lora': 'shared', 'heads': 'personal'},
                          {'base': 5000, 'lora': 800, 'heads': 100}, 2e6, 5e5)

HARDWARE = {'device_kind': 'cpu', 'device_platform': 'cpu', 'device_count': 1,
            'cpu_model': 'Test CPU @ 2.0GHz', 'cpu_count': 2, 'os': 'Linux-test'}
VERSIONS = {'fedxr_jax': '0.1.0', 'git_commit': 'a' * 40, 'git_dirty': False,
            'python': '3.11.7', 'packages': {'jax': '0.10.2', 'jaxlib': '0.10.2',
                                             'flax': '0.12.0', 'optax': '0.2.6',
                                             'numpy': '2.1.0'}}


def nested(dotted: dict) -> dict:
  """{'a.b': 1} -> {'a': {'b': 1}}."""
  out = {}
  for key, value in dotted.items():
    node = out
    *parents, leaf = key.split('.')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = list(value) if isinstance(value, tuple) else value
  return out


def make_doc(track, name, finals, open_values=None, hardware=HARDWARE, facts=FACTS,
             compute_s=0.25, created_utc='2025-01-02T03:04:05Z', **method):
  """A submission whose seed s has final metrics finals[s] (3 logged rounds,
  the last equal to the finals; earlier rows a little worse; each round 0.5
  simulated seconds and `compute_s` of local compute)."""
  curves = {}
  for seed, final in finals.items():
    early = {k: (None if v is None else v * 0.5) for k, v in final.items()}
    clock = {'cost/latency_s': 0.5, 'cost/max_compute_s': compute_s}
    curves[seed] = [{'round': 1, **early, **clock}, {'round': 2, **early, **clock},
                    {'round': 3, **clock}, {'round': 4, **final, **clock}]
  config = nested({**track.frozen, **(open_values or {}), 'seed': 0})
  return submission.build(
      track_id=track.id, track_version=track.version, frozen=track.frozen,
      budget=track.budget_json, config=config, seeds=list(finals), curves=curves,
      finals=finals, method={'name': name, **method}, hardware=hardware, versions=VERSIONS,
      wall_s=12.5, compile_s=3.25, model_facts=facts, created_utc=created_utc)


def accuracy_doc(name, accuracies, uplink=1e6, energy=None, **kw):
  finals = {}
  for seed, acc in zip(ACCURACY.seeds, accuracies):
    final = {'eval/accuracy': acc, 'comm/uplink_bits': uplink, 'train/loss': 1.0 - acc}
    if energy is not None:
      final['energy/joules'] = energy
    finals[seed] = final
  return make_doc(ACCURACY, name, finals, {'algorithm.name': 'fedavg'}, **kw)


def latency_doc(name, latencies, energy):
  finals = {s: {'latency/p95_ms': v, 'energy/joules': energy}
            for s, v in zip(LATENCY.seeds, latencies)}
  return make_doc(LATENCY, name, finals, {'algorithm.name': 'ditto'})


def write_raw(path, doc):
  """Writes a (possibly tampered) dict as JSON, bypassing the builder."""
  with open(path, 'w') as f:
    json.dump(doc, f)
  return str(path)


def tampered(doc, edit, rehash=False):
  """A deep copy of doc changed by edit(copy); rehash: recompute the content hash."""
  out = copy.deepcopy(doc)
  edit(out)
  if rehash:
    out['content_sha256'] = submission.content_hash(out)
  return out


SCRIPT = '<script>alert(1)</script>'
# Known order: B (0.91) > C (0.82, std 0) > A (0.82, std 0.02) > D (0.5333). Their 95%
# intervals (t(0.975, 2) = 4.303): B [0.885, 0.935], C [0.82, 0.82], A [0.770, 0.870],
# D [0.390, 0.677]: C and A overlap (rank 2 both), D is below all three (rank 4).
ACCURACY_ORDER = ['B fedprox', 'C steady', 'A fedavg', SCRIPT]
ACCURACY_RANKS = [1, 2, 2, 4]
LATENCY_ORDER = ['F fast', 'E mid', 'G slow']     # lower is better: 9 < 11 < 21
LATENCY_RANKS = [1, 1, 3]                          # E's [8.5, 13.5] holds 9


def make_submissions(folder) -> dict:
  """Writes the hand-made set (two tracks, seven entries, three invalid files)."""
  os.makedirs(folder, exist_ok=True)
  docs = {
      'a.json': accuracy_doc('A fedavg', [0.80, 0.82, 0.84], uplink=2e6, energy=5.0),
      'b.json': accuracy_doc('B fedprox', [0.90, 0.91, 0.92], uplink=8e6, energy=9.0),
      'c.json': accuracy_doc('C steady', [0.82, 0.82, 0.82], uplink=1e6, energy=4.0),
      'd.json': accuracy_doc(SCRIPT, [0.5, 0.5, 0.6], uplink=4e6),
      'e.json': latency_doc('E mid', [10.0, 11.0, 12.0], energy=2.0),
      'f.json': latency_doc('F fast', [9.0, 9.0, 9.0], energy=3.0),
      'g.json': latency_doc('G slow', [20.0, 21.0, 22.0], energy=1.0),
  }
  for name, doc in docs.items():
    submission.write(doc, os.path.join(folder, name))
  edited = tampered(docs['b.json'], lambda d: d['runs'][0]['final'].update(
      {'eval/accuracy': 0.99}))
  write_raw(os.path.join(folder, 'tampered.json'), edited)
  with open(os.path.join(folder, 'garbage.json'), 'wb') as f:
    f.write(b'\xff\xfe\x00binary')
  submission.write(docs['a.json'], os.path.join(folder, 'copy-of-a.json'))
  return docs


class _Rows(html.parser.HTMLParser):
  """Method cells of each `table.board` in document order: {track: [method]}."""

  def __init__(self):
    super().__init__()
    self.tables, self._track, self._cell, self._text = {}, None, False, []

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    if tag == 'table' and 'board' in a.get('class', ''):
      self._track = a['data-track']
      self.tables[self._track] = []
    elif tag == 'td' and a.get('class') == 'method' and self._track:
      self._cell, self._text = True, []
    elif tag == 'span' and self._cell:
      self._cell = 'badge'

  def handle_endtag(self, tag):
    if tag == 'span' and self._cell == 'badge':
      self._cell = True
    elif tag == 'td' and self._cell:
      self.tables[self._track].append(''.join(self._text))
      self._cell = False
    elif tag == 'table':
      self._track = None

  def handle_data(self, data):
    if self._cell is True:
      self._text.append(data)


def board_rows(page: str) -> dict:
  parser = _Rows()
  parser.feed(page)
  return parser.tables
