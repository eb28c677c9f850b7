"""The baseline entries of version 2: which method runs on which track, with what.

  python -m fedxr_jax.bench.baselines [TRACK ...]   # one line per entry, in run order:
                                                    # TRACK NAME [--config.KEY=VALUE ...]

`scripts/make_baselines.sh` runs the lines it prints; tests/test_tracks.py checks
every entry against its track's open part. The order is the run order: FedAvg on
every CPU track first (the reference curve of each page), each track's own
defence, one entry per research direction of the paper (Solutions 1-5 and TAP)
on the track closest to it, the other methods on xr-default, then FedAdam,
FedProx and Ditto on every other CPU track.
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
              'hetero-hardware', 'async-hetero', 'private', 'robust', 'hapt-30')

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
    # task_isolation has none: a forward per task path costs 3.0-5.1x the default
    # forward's FLOPs per example on every world track, over their 2.5x budget.
    Baseline('xr-default', 'dynamic_task_modules', ('algorithm.name=dynamic_task_modules',)),
    Baseline('continual', 'temporal_gate', ('algorithm.name=temporal_gate',)),
    Baseline('continual', 'lwf', ('algorithm.name=lwf', 'algorithm.lwf.rounds=(10,)')),
    Baseline('continual', 'mas', ('algorithm.name=mas', 'algorithm.mas.rounds=(10,)')),
    # TAP has none either: its slowest device's local compute is 0.064 s a round with
    # pair modules and 0.032 s without, over xr-default's 0.028 s budget, whatever the
    # local steps (its stage-1 fine-tuning and distillation steps dominate).
)

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
    # Experts replace the body's dense MLPs, which the shipped checkpoint holds: a MoE
    # entry runs where the base is random (sparse upcycling of the checkpoint's MLPs
    # into experts is not supported yet).
    Baseline('hapt-30', 'moe', ('model.m3t.num_experts=4', 'model.m3t.expert_top_k=1',
                                'plan.experts=shared')),
)

# A second reference on every other CPU track: FedAdam (the FedOpt preset).
FEDADAM = tuple(Baseline(t, 'fedadam', ('algorithm.name=fedadam',))
                for t in CPU_TRACKS if t != 'xr-default')

# Then FedProx and Ditto on every other CPU track (the grid is filled method by method).
FEDPROX = tuple(Baseline(t, 'fedprox', ('algorithm.name=fedprox', 'algorithm.fedprox.mu=0.01'))
                for t in CPU_TRACKS if t != 'xr-default')
DITTO = tuple(Baseline(t, 'ditto', ('algorithm.name=ditto',))
              for t in CPU_TRACKS if t not in ('xr-default', 'private'))

BASELINES = FEDAVG + DEFENCES + SOLUTIONS + METHODS + FEDADAM + FEDPROX + DITTO


def overrides(b: Baseline) -> dict:
  """{'key': value} of an entry, values read as `fedxr-bench run` reads them."""
  from fedxr_jax.bench import run   # pylint: disable=g-import-not-at-top
  return run.parse_overrides([f'--config.{o}' for o in b.overrides])


def main(argv) -> None:
  wanted = set(argv[1:])
  for b in BASELINES:
    if not wanted or b.track in wanted:
      print(b.line())


if __name__ == '__main__':
  main(sys.argv)
