"""The baseline entries of version 2: which method runs on which track, with what.

  python -m fedxr_jax.bench.baselines [TRACK ...]   # one line per entry, in run order:
                                                    # TRACK NAME [--config.KEY=VALUE ...]
  python -m fedxr_jax.bench.baselines --version=N [TRACK ...]   # version N's (3, 4)
  python -m fedxr_jax.bench.baselines --table leaderboard/submissions leaderboard/verified
                                                    # the entries' markdown table
                                                    # (--table3, --table4: version N's)

`scripts/make_baselines.sh` runs the lines it prints; tests/test_tracks.py checks
every entry against its track's open part. The order is the run order: FedAvg on
every CPU track first (the reference curve of each page), each track's own
defence, one entry per research direction of the paper (Solutions 1-5 and TAP)
on the track closest to it, the other methods on xr-default, then FedAdam,
FedProx, Ditto, SCAFFOLD and FFA-LoRA on every other CPU track.
"""
import sys
from typing import NamedTuple


class Baseline(NamedTuple):
  track: str
  name: str
  overrides: tuple = ()   # ('key=value', ...): --config.key=value

  def line(self) -> str:
    return ' '.join([self.track, self.name] + [f'--config.{o}' for o in self.overrides])


CPU_TRACKS = ('xr-default', 'role-specific', 'social', 'cognitive-load', 'continual', 'd2d',
              'hetero-hardware', 'async-hetero', 'private', 'robust', 'hapt-30',
              'task-arrival')

FEDAVG = tuple(Baseline(t, 'fedavg') for t in CPU_TRACKS)

DEFENCES = (
    Baseline('robust', 'median', ('aggregator.name=median',)),
    Baseline('robust', 'trimmed_mean', ('aggregator.name=trimmed_mean',
                                        'aggregator.trimmed_mean.beta=0.25')),
    Baseline('private', 'dp_adaptive_clip', ('privacy.adaptive_clip.enabled=True',)),
    # Ranked apart on the private track: its personal models are outside epsilon.
    Baseline('private', 'ditto', ('algorithm.name=ditto',)),
    Baseline('continual', 'ewc', ('algorithm.name=ewc', 'algorithm.ewc.rounds=(10,)')),
)

# One per direction (issue 23), on the track whose SHIFT dimension it addresses.
SOLUTIONS = (
    Baseline('xr-default', 'crossmodal_distill', ('algorithm.name=crossmodal_distill',)),
    Baseline('hetero-hardware', 'resource_aware', ('resource_aware.policy=resource',)),
    Baseline('hetero-hardware', 'offload', ('algorithm.name=offload',)),
    Baseline('role-specific', 'module_library', ('model.m3t.library_size=4',)),
    Baseline('role-specific', 'signature_prompts', ('model.m3t.signature_tokens=2',)),
    # A forward per task path: 5.1x the default's FLOPs per example and local compute,
    # over every other world track's budget; LoRA rank 10 gives each of the 5 tasks two
    # components.
    Baseline('task-arrival', 'task_isolation', ('algorithm.name=task_isolation',
                                                'model.m3t.lora_rank=10')),
    Baseline('xr-default', 'dynamic_task_modules', ('algorithm.name=dynamic_task_modules',)),
    Baseline('task-arrival', 'dynamic_task_modules', ('algorithm.name=dynamic_task_modules',)),
    Baseline('continual', 'temporal_gate', ('algorithm.name=temporal_gate',)),
    Baseline('continual', 'lwf', ('algorithm.name=lwf', 'algorithm.lwf.rounds=(10,)')),
    Baseline('continual', 'mas', ('algorithm.name=mas', 'algorithm.mas.rounds=(10,)')),
    # TAP as published (pair modules, stage 2 once); its stage 1 compares the models on
    # 16 examples a client: on all of them, two forward passes over every example put
    # the slowest device over xr-default's compute budget (0.032 s against 0.028 s).
    Baseline('xr-default', 'tap', ('algorithm.name=tap', 'algorithm.tap.pair_modules=True',
                                   'algorithm.tap.distill_once=True',
                                   'algorithm.tap.compare_examples=16')),
)

# Four experts, one per token, replacing each block's MLP (Table 4's MoE).
MOE = ('model.m3t.num_experts=4', 'model.m3t.expert_top_k=1', 'plan.experts=shared')

# The other methods of issue 21 on the default track.
METHODS = (
    Baseline('xr-default', 'fedadam', ('algorithm.name=fedadam',)),
    Baseline('xr-default', 'fedprox', ('algorithm.name=fedprox', 'algorithm.fedprox.mu=0.01')),
    Baseline('xr-default', 'scaffold', ('algorithm.name=scaffold',)),
    Baseline('xr-default', 'ditto', ('algorithm.name=ditto',)),
    Baseline('xr-default', 'fedrep', ('algorithm.name=fedrep', 'plan.heads=personal')),
    Baseline('xr-default', 'ffa_lora', ('lora.rule=ffa',)),
    Baseline('xr-default', 'adapters', ('model.m3t.lora_rank=0', 'model.m3t.adapter_dim=8',
                                        'plan.adapters=shared')),
    # From a random base (hapt-30); on the world tracks below, the experts are upcycled
    # from the checkpoint's MLPs.
    Baseline('hapt-30', 'moe', MOE),
)

# A second reference on every other CPU track: FedAdam (the FedOpt preset).
FEDADAM = tuple(Baseline(t, 'fedadam', ('algorithm.name=fedadam',))
                for t in CPU_TRACKS if t != 'xr-default')

# Then FedProx and Ditto on every other CPU track (the grid is filled method by method).
FEDPROX = tuple(Baseline(t, 'fedprox', ('algorithm.name=fedprox', 'algorithm.fedprox.mu=0.01'))
                for t in CPU_TRACKS if t != 'xr-default')
DITTO = tuple(Baseline(t, 'ditto', ('algorithm.name=ditto',))
              for t in CPU_TRACKS if t not in ('xr-default', 'private'))

# Then SCAFFOLD (not supported yet with buffered asynchrony, async-hetero, nor without a
# central server to hold its control variate, d2d) and a LoRA rule other than FedIT (FFA-LoRA).
SCAFFOLD = tuple(Baseline(t, 'scaffold', ('algorithm.name=scaffold',))
                 for t in CPU_TRACKS if t not in ('xr-default', 'async-hetero', 'd2d'))
FFA_LORA = tuple(Baseline(t, 'ffa_lora', ('lora.rule=ffa',))
                 for t in CPU_TRACKS if t != 'xr-default')

# FedAvg with a local adaptive optimizer (client Adam; the optimizers are open on every
# track): the learning rate of a sweep on xr-default seed 0 (SGD 0.1 0.331, Adam 0.01 0.424).
FEDAVG_ADAM = tuple(Baseline(t, 'fedavg_adam', ('client_optimizer.name=adam',
                                                'client_optimizer.learning_rate=0.01'))
                    for t in CPU_TRACKS)

# Then FedRep (personal heads) and bottleneck adapters in place of LoRA on every other CPU
# track: Table 4's personalised and adapter strategies across the grid.
FEDREP = tuple(Baseline(t, 'fedrep', ('algorithm.name=fedrep', 'plan.heads=personal'))
               for t in CPU_TRACKS if t != 'xr-default')
ADAPTERS = tuple(Baseline(t, 'adapters', ('model.m3t.lora_rank=0', 'model.m3t.adapter_dim=8',
                                          'plan.adapters=shared'))
                 for t in CPU_TRACKS if t != 'xr-default')

# FedAvg from closed-form heads (Fed3R's ridge readout of round 1's cohort, issue 20),
# where the statistics may leave a device unprotected (not under DP or attack) and a
# server sees every upload (not d2d's semi-decentralized clusters).
RIDGE_HEADS = tuple(Baseline(t, 'fedavg_ridge_heads', ('warm_start.heads=ridge',))
                    for t in CPU_TRACKS if t not in ('private', 'robust', 'd2d'))

# MoE on every other CPU track: sparse upcycling of the checkpoint's MLPs
# (`models.m3t.upcycle`).
MOE_UPCYCLED = tuple(Baseline(t, 'moe', MOE) for t in CPU_TRACKS if t != 'hapt-30')

BASELINES = (FEDAVG + DEFENCES + SOLUTIONS + METHODS + FEDADAM + FEDPROX + DITTO + SCAFFOLD
             + FFA_LORA + FEDAVG_ADAM + FEDREP + ADAPTERS + RIDGE_HEADS + MOE_UPCYCLED)

# Version 3 (the world tracks with the decayed client rate): FedAvg first, each track's
# reference curve and the stretch rule's subject; then the methods of issue 21 on
# xr-default, and the defences of the private and robust tracks. Each method keeps its own
# settings of version 2 and trains with the track's client optimizer and schedule.
WORLD_TRACKS = tuple(t for t in CPU_TRACKS if t != 'hapt-30')
# SCAFFOLD's control variates correct SGD steps: it refuses client Adam, and trains with
# client SGD at the rate of the SGD sweep's best under the cosine (0.4: 0.352 after 100
# rounds on xr-default, where 0.1 gave 0.310 and 0.2 0.345).
SCAFFOLD_V3 = Baseline('xr-default', 'scaffold', ('algorithm.name=scaffold',
                                                  'client_optimizer.name=sgd',
                                                  'client_optimizer.learning_rate=0.4'))
BASELINES_V3 = (tuple(Baseline(t, 'fedavg') for t in WORLD_TRACKS)
                + tuple(SCAFFOLD_V3 if b.name == 'scaffold' else b
                        for b in METHODS if b.track == 'xr-default')
                + (Baseline('xr-default', 'moe', MOE),)
                + tuple(b for b in DEFENCES if b.track in ('private', 'robust')))


# Version 4 (version 3 over 800 rounds, where FedAvg's curve on xr-default flattens) takes
# version 3's entries; each takes about 2.5x as long (10-11 minutes on 2 cores: FedAvg 630 s).
BY_VERSION = {2: BASELINES, 3: BASELINES_V3, 4: BASELINES_V3}


def overrides(b: Baseline) -> dict:
  """{'key': value} of an entry, values read as `fedxr-bench run` reads them."""
  from fedxr_jax.bench import run   # pylint: disable=g-import-not-at-top
  return run.parse_overrides([f'--config.{o}' for o in b.overrides])


# The table's columns: (heading, final metric averaged over seeds, scale, digits).
COLUMNS = (('unseen users', 'eval_unseen/accuracy', 1.0, 3),
           ('latency violations', 'latency/violation_rate', 1.0, 3),
           ('MIA AUC', 'privacy/mia_auc', 1.0, 3),
           ('uplink (Mbit, run)', 'total/comm/uplink_bits', 1e-6, 0))


def table(board, keys) -> list:
  """Markdown lines: the entries of `board` (a leaderboard.Board) on the tracks `keys`
  ((id, version), in order), by rank: ranked, ranked apart, unranked."""
  import statistics   # pylint: disable=g-import-not-at-top
  lines = ['| track | rank | method | ranked accuracy (mean ± std over seeds) | '
           + ' | '.join(c[0] for c in COLUMNS) + ' | verified | wall (s) |',
           '|---' * (6 + len(COLUMNS)) + '|']
  for key in keys:
    track_id = key[0]
    rows = [(str(e.rank), e) for e in board.entries.get(key, [])]
    rows += [(f'apart {e.rank}', e) for e in board.apart.get(key, [])]
    rows += [('unranked', e) for e in board.unranked.get(key, [])]
    for rank, e in rows:
      runs = e.submission.doc['runs']
      finals = lambda k: [r['final'][k] for r in runs if r['final'].get(k) is not None]
      acc = finals(board.tracks[key].primary_metric)
      cells = []
      for _, k, scale, digits in COLUMNS:
        values = finals(k)
        cells.append(f'{scale * statistics.mean(values):.{digits}f}' if values else '-')
      lines.append(f'| {track_id} | {rank} | {e.submission.method} | '
                   f'{statistics.mean(acc):.3f} ± {statistics.stdev(acc):.3f} | '
                   + ' | '.join(cells) + f' | {e.verification.state} | '
                   f"{e.submission.doc['timing']['wall_s']:.0f} |")
  lines.append('')
  for key in keys:   # each track's reference curve against the plateau rule
    verdict = board.plateau(key)
    if verdict is not None:
      lines.append(f'- {key[0]}: {board.tracks[key].reference} mean curve {verdict.describe()}')
  return lines


def main(argv) -> None:
  table_flag = argv[1] if len(argv) > 1 and argv[1].startswith('--table') else None
  if table_flag:   # --table[N] SUBMISSIONS VERIFIED_DIR [TRACK ...]
    from fedxr_jax.bench import leaderboard   # pylint: disable=g-import-not-at-top
    from fedxr_jax.bench import tracks   # pylint: disable=g-import-not-at-top
    version = _version(table_flag[len('--table'):] or '2')
    board = leaderboard.collect(argv[2], tracks.all_tracks(), argv[3])
    default = CPU_TRACKS if version == 2 else WORLD_TRACKS
    print('\n'.join(table(board, [(t, version) for t in argv[4:] or default])))
    return
  entries = BASELINES
  if argv[1:2] and argv[1].startswith('--version='):
    entries, argv = BY_VERSION[_version(argv[1][len('--version='):])], argv[1:]
  wanted = set(argv[1:])
  for b in entries:
    if not wanted or b.track in wanted:
      print(b.line())


def _version(text: str) -> int:
  if not text.isdigit() or int(text) not in BY_VERSION:
    raise SystemExit(f'baselines: no version {text!r}; versions: {sorted(BY_VERSION)}')
  return int(text)


if __name__ == '__main__':
  main(sys.argv)
