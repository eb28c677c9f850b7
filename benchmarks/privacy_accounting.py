r"""Epsilon at a fixed sigma and the sigma for epsilon 4, per accountant, on the private track.

  python benchmarks/privacy_accounting.py                 # the track's settings
  python benchmarks/privacy_accounting.py --rounds=60      # the default config's 60 rounds

The private track (bench/tracks/definitions.py `private`: client-level DP,
delta 1e-5, epsilon <= 4; 32 clients a round of 500) is accounted by every
(sampler, mechanism, accountant) the run can be given (privacy.sampling,
privacy.mechanism, privacy.accountant), each with dp-accounting, exactly as
`fedxr-train` would (`privacy.feature.make_privacy`):
  fixed / dp_fedavg / rdp     the track today: replace-one neighbours
  poisson / dp_fedavg / rdp   add-or-remove-one neighbours
  poisson / dp_fedavg / pld
  fixed / dp_ftrl / rdp|pld   tree noise, no amplification, the sensitivity
                              of the track's cohort schedule (worst seed)
  prv                         refused: dp-accounting has none
The fixed sigma is the one the track calibrates today (fixed, rdp, for
epsilon 4), so the epsilon column reads "what the same noise is worth" and
the sigma column "how much less noise the same epsilon needs". Rows of the
two neighbouring relations are different guarantees (see
`privacy.accountants`). Writes OUT/privacy_accounting.{json,md}.

  python benchmarks/privacy_accounting.py --train          # + the end-to-end runs

--train also trains the private track's federation (500 clients, 32 a
round, 20 rounds, delta 1e-5) with the CPU-sized model of configs/test.py,
as `fedxr-train` would (`training.loop.run`), once per row of TRAIN_RUNS:
the track as it is (fixed, RDP, epsilon 4), Poisson + PLD at epsilon 4 with
100 audit canaries (the audited lower bound beside the accountant's), and
Poisson + PLD at the track's sigma. Each row gives its `fedxr-train`
command and the last row's privacy/* and eval/accuracy (about 2 min a run on
2 CPU cores).
"""
from importlib import metadata
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedxr_jax.bench.tracks import definitions  # noqa: E402
from fedxr_jax.compose import pipeline  # noqa: E402
from fedxr_jax.configs import test as test_config  # noqa: E402
from fedxr_jax.core import algorithm as algorithm_lib  # noqa: E402
from fedxr_jax.errors import ConfigError  # noqa: E402
from fedxr_jax.privacy import feature  # noqa: E402

_ROUNDS = flags.DEFINE_integer('rounds', 0, 'Rounds (0: the track\'s).')
_SIGMA = flags.DEFINE_float('sigma', 0.0, 'The fixed sigma (0: the track\'s calibration, '
                            'fixed sampler, RDP).')
_TARGET = flags.DEFINE_float('target', 4.0, 'The target epsilon.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Results folder.')
_TRAIN = flags.DEFINE_bool('train', False, 'Also train the end-to-end runs (TRAIN_RUNS).')

SETTINGS = (('fixed', 'dp_fedavg', 'rdp'), ('poisson', 'dp_fedavg', 'rdp'),
            ('poisson', 'dp_fedavg', 'pld'), ('fixed', 'dp_ftrl', 'rdp'),
            ('fixed', 'dp_ftrl', 'pld'), ('poisson', 'dp_fedavg', 'prv'))


# The private track's federation with configs/test.py's model; then each run's privacy block.
TRACK = {'population_size': 500, 'cohort_size': 32, 'num_rounds': 20, 'eval_every': 10,
         'checkpoint_every': 10, 'privacy.delta': 1e-5}
TRAIN_RUNS = (
    ('fixed_rdp_eps4', {'privacy.target_epsilon': 4.0}),
    ('poisson_pld_eps4_audit', {'privacy.target_epsilon': 4.0, 'privacy.sampling': 'poisson',
                                'privacy.accountant': 'pld', 'privacy.audit.canaries': 100}),
    ('poisson_pld_track_sigma', {'privacy.noise_multiplier': None,
                                 'privacy.sampling': 'poisson', 'privacy.accountant': 'pld'}),
)
TRAIN_KEYS = ('privacy/sampling', 'privacy/accountant', 'privacy/noise_multiplier',
              'privacy/epsilon', 'privacy/audit_epsilon', 'eval/accuracy', 'train/participation')


def _set(config, key, value):
  *parents, leaf = key.split('.')
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def train_row(name, overrides, sigma) -> dict:
  """One end-to-end run (`training.loop.run`): its command and its last row's privacy keys."""
  from fedxr_jax.training import loop   # pylint: disable=import-outside-toplevel
  config = test_config.get_config()
  settings = {**TRACK, **{k: (sigma if v is None else v) for k, v in overrides.items()}}
  for key, value in settings.items():
    _set(config, key, value)
  command = 'fedxr-train --config=fedxr_jax/configs/test.py ' + ' '.join(
      f'--config.{k}={v}' for k, v in settings.items())
  t0 = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    rows = loop.run(config, workdir, progress=False)
  last = {k: v for r in rows for k, v in r.items() if k in TRAIN_KEYS}
  return {'run': name, 'command': command, **last,
          'seconds': round(time.perf_counter() - t0, 1)}


def _run(config, seed):
  facts = algorithm_lib.RunFacts(seed=seed, population_size=config.population_size,
                                 cohort_size=config.cohort_size, num_rounds=config.num_rounds)
  return pipeline.RunContext(facts, config.num_rounds, None, None, None, None)


def _privacy(config, seed, sampling, mechanism, accountant, **noise):
  p = config.privacy.copy_and_resolve_references()
  p.sampling, p.mechanism, p.accountant = sampling, mechanism, accountant
  p.target_epsilon, p.noise_multiplier = noise.get('target', 0.0), noise.get('sigma', 0.0)
  return feature.make_privacy(p, _run(config, seed))


def row(config, sigma, target, sampling, mechanism, accountant) -> dict:
  relation = ('zero_out' if mechanism == 'dp_ftrl' else
              'add_remove' if sampling == 'poisson' else 'replace_one')
  out = {'sampling': sampling, 'mechanism': mechanism, 'accountant': accountant,
         'relation': relation}
  t0 = time.perf_counter()
  # DP-FTRL's sensitivity comes from the cohort schedule: the worst of the track's seeds.
  seeds = definitions.SEEDS if mechanism == 'dp_ftrl' else (0,)
  try:
    eps = [_privacy(config, s, sampling, mechanism, accountant, sigma=sigma)
           .epsilon_per_round[-1] for s in seeds]
    sig = [_privacy(config, s, sampling, mechanism, accountant, target=target).noise_multiplier
           for s in seeds]
  except ConfigError as e:
    return {**out, 'refused': str(e)}
  return {**out, 'epsilon_at_sigma': max(eps), 'sigma_for_target': max(sig),
          'seconds': round(time.perf_counter() - t0, 2)}


def markdown(result) -> str:
  s = result['settings']
  lines = [f"# Privacy accounting of the private track ({s['rounds']} rounds, "
           f"{s['cohort_size']} of {s['population']} clients, delta {s['delta']:g})", '',
           f"Epsilon at sigma = {s['sigma']:.4f} (the track's calibration: fixed sampler, RDP, "
           f"epsilon {s['target_epsilon']:g}) and the sigma for epsilon {s['target_epsilon']:g}, "
           'per accountant (dp-accounting ' + result['dp_accounting'] + '). DP-FTRL: '
           'the worst of the track\'s seeds ' + str(list(definitions.SEEDS)) + '.', '',
           '| sampling | mechanism | accountant | neighbours | epsilon at sigma | '
           'sigma for target |', '|---|---|---|---|---|---|']
  for r in result['rows']:
    if 'refused' in r:
      cells = ['refused: ' + r['refused'], '-']
    else:
      cells = [f"{r['epsilon_at_sigma']:.4f}", f"{r['sigma_for_target']:.4f}"]
    lines.append('| ' + ' | '.join([r['sampling'], r['mechanism'], r['accountant'],
                                    r['relation']] + cells) + ' |')
  lines += ['', 'Neighbours: replace_one (a client replaced by another; the fixed-size '
            'sampler needs it, the population size being public), add_remove (a client '
            'added or removed; Poisson), zero_out (a client\'s updates replaced by zeros under '
            'the fixed schedule; DP-FTRL, Kairouz et al. 2021). They are different guarantees: '
            'replace-one is about add-or-remove at twice the sensitivity, so a Poisson row is '
            'not "the same privacy for less noise"; an add_remove (eps, delta) implies '
            'replace_one (2 eps, (1 + e^eps) delta). DP-FTRL claims no amplification by '
            'sampling: with 32 of 500 clients a round it needs far more noise than a sampled '
            'Gaussian; it pays off when the cohort is a large share of the population or '
            'sampling cannot be trusted.', '',
            'Command: `' + result['command'] + '`', '']
  if result.get('train'):
    lines += ['## End to end (`fedxr-train`, the private track with the test model)', '',
              '| run | sampling | accountant | sigma | epsilon (accountant) | '
              'audited epsilon | eval/accuracy | seconds |', '|---|---|---|---|---|---|---|---|']
    num = lambda r, k: f'{r[k]:.4g}' if isinstance(r.get(k), (int, float)) else '-'
    for r in result['train']:
      lines.append('| ' + ' | '.join([
          r['run'], r['privacy/sampling'], r['privacy/accountant'],
          num(r, 'privacy/noise_multiplier'), num(r, 'privacy/epsilon'),
          num(r, 'privacy/audit_epsilon'), num(r, 'eval/accuracy'), num(r, 'seconds')]) + ' |')
    lines += ['', 'Commands (`PYTHONPATH=.` where the package is not installed):', '']
    lines += [f"- {r['run']}: `{r['command']}`" for r in result['train']] + ['']
  return '\n'.join(lines)


def main(argv):
  del argv
  config = definitions.private()
  if _ROUNDS.value:
    config.num_rounds = _ROUNDS.value
  p = config.privacy
  sigma = _SIGMA.value or _privacy(config, 0, 'fixed', 'dp_fedavg', 'rdp',
                                   target=p.target_epsilon).noise_multiplier
  settings = {'rounds': config.num_rounds, 'population': config.population_size,
              'cohort_size': config.cohort_size, 'delta': p.delta, 'sigma': sigma,
              'target_epsilon': _TARGET.value}
  rows = [row(config, sigma, _TARGET.value, *s) for s in SETTINGS]
  for r in rows:
    print(r)
  command = 'python benchmarks/privacy_accounting.py' + (
      f' --rounds={_ROUNDS.value}' if _ROUNDS.value else '') + (
      f' --sigma={_SIGMA.value}' if _SIGMA.value else '')
  if _TRAIN.value:
    command += ' --train'
  result = {'settings': settings, 'rows': rows, 'command': command,
            'dp_accounting': metadata.version('dp-accounting')}
  if _TRAIN.value:
    result['train'] = [train_row(name, overrides, sigma) for name, overrides in TRAIN_RUNS]
    for r in result['train']:
      print(r)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'privacy_accounting.json'), 'w') as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(_OUT.value, 'privacy_accounting.md'), 'w') as f:
    f.write(markdown(result))
  print(markdown(result))


if __name__ == '__main__':
  app.run(main)
