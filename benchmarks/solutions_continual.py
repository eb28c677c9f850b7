r"""The continual directions of issue 23: S4 (task variability), S5 (temporal drift) and TAP.

  python benchmarks/solutions_continual.py --seeds=3 --rounds=16 --population=24 --cohort=6 \
      --unseen=8                                   # every entry (the recorded run: ~11 CPU-min)
  python benchmarks/solutions_continual.py --entries=S5/lwf --seeds=1 --rounds=16
  python benchmarks/solutions_continual.py --table                   # the markdown again

`EXPERIMENTS`: {'<direction>/<method>': solutions_lib.Entry}, each method against its
plain baseline on the SHIFT setting it targets:
  S4  task arrival: emotion's labels first appear at round `ARRIVAL`; forgetting is the
      old tasks' (gesture, intent) accuracy just before the arrival minus at the end.
  S5  drift: a step change at round `DRIFT` (lighting, audio noise, tracking noise and
      bias: `data.temporal`); post-drift recovery rounds are the rounds trained after
      the drift until the population's accuracy on the drifted data is back within
      `RECOVERY_TOL` of its accuracy on the last calm data just before it (0: the drift
      cost nothing; not recovered within POST_ROUNDS: POST_ROUNDS + 1, `recovered` 0).
      The replay-free continual methods (EWC, LwF, MAS) consolidate at the drift;
      `pre_drift_retained` is the final model's accuracy on the last calm round's data
      (the context it should not forget).
  TAP task subsets (each task kept by a user with probability 1/2): the published TAP
      (modality-task pair modules, distillation once after training) against FedAvg;
      accuracy is each user's own (personal) model on its held-out data.
benchmarks/solutions.py imports these entries; run here (its flags, its configs and its
table; snapshots copied out of the donated state) they write --out/solutions_continual.{json,md}.
"""
import json
import os

from absl import app
import numpy as np

import solutions_lib
from solutions_lib import Arm, Entry, accuracy, mean_train

ARRIVAL = 8        # S4: the round emotion's labels arrive (tasks: gesture, intent, emotion)
DRIFT = 6          # S5: the round the step drift happens
POST_ROUNDS = 10   # S5: rounds measured after the drift (snapshots; --rounds >= DRIFT + this)
RECOVERY_TOL = 0.02
OLD_TASKS, NEW_TASK = ('gesture', 'intent'), 'emotion'


def _task_accuracy(stats: dict, tasks, names) -> float:
  """Mean over `names` of each task's success rate over every evaluated client."""
  correct, count = stats['correct'].sum(0), stats['count'].sum(0)
  rates = [correct[tasks.index(t)] / max(count[tasks.index(t)], 1.0) for t in names]
  return float(np.mean(rates))


def s4_metrics(arm: Arm, lane: int) -> dict:
  exp = arm.exps[lane]
  tasks = list(exp.spec.tasks)
  before = arm.per_client(lane, arm.population(lane), state=arm.snapshots[lane][ARRIVAL])
  after = arm.per_client(lane, arm.population(lane))
  old_before = _task_accuracy(before, tasks, OLD_TASKS)
  old_after = _task_accuracy(after, tasks, OLD_TASKS)
  server = arm.states[lane][0]
  state = server.algorithm if isinstance(server.algorithm, dict) else {}
  return {'forgetting': old_before - old_after,
          'old_tasks_before_arrival': old_before, 'old_tasks_final': old_after,
          'new_task_accuracy': _task_accuracy(after, tasks, (NEW_TASK,)),
          'accuracy': accuracy(after),
          # dynamic_task_modules: arriving tasks served by an adapter on an old head.
          'extended_tasks': float(np.sum(np.asarray(state['extend']))) if 'extend' in state
                            else 0.0,
          'shared_params': float(solutions_lib.tree_params(server.shared)),
          'upload_mb_per_round': mean_train(arm, lane, 'comm/uplink_bits') / 8e6}


def s5_metrics(arm: Arm, lane: int) -> dict:
  """Recovery after the step drift at DRIFT (module doc)."""
  pop = arm.population(lane)
  snaps = arm.snapshots[lane]
  at = lambda state, data_round=None: accuracy(arm.per_client(
      lane, pop, state=_on_data_of(state, data_round)))
  # An evaluation after r rounds reads the data of round r - 1 (the round just trained).
  pre = at(snaps[DRIFT])                  # trained on calm rounds, on the last calm data
  post = [at(snaps[DRIFT], DRIFT)] + [at(snaps[DRIFT + k]) for k in range(1, POST_ROUNDS + 1)]
  recovered = [k for k, a in enumerate(post) if a >= pre - RECOVERY_TOL]
  final = arm.states[lane]
  return {'recovery_rounds': float(recovered[0] if recovered else POST_ROUNDS + 1),
          'recovered': float(bool(recovered)),
          'pre_drift_accuracy': pre, 'drop_at_drift': pre - post[0],
          'post_drift_mean_accuracy': float(np.mean(post)),
          'final_accuracy': accuracy(arm.per_client(lane, pop)),
          'pre_drift_retained': at(final, DRIFT - 1),
          'upload_mb_per_round': mean_train(arm, lane, 'comm/uplink_bits') / 8e6}


def _on_data_of(state, data_round):
  """`state` evaluated on the data of round `data_round` (None: of the round it last
  trained); the evaluation reads round server.round - 1 (core/evaluate.py)."""
  if data_round is None:
    return state
  server, clients, frozen = state
  return (server.replace(round=jax.numpy.full_like(server.round, data_round + 1)), clients,
          frozen)


def tap_metrics(arm: Arm, lane: int) -> dict:
  pop = arm.per_client(lane, arm.population(lane))
  new = arm.per_client(lane, arm.unseen(lane), from_population=False)
  per_user = [np.sum(pop['correct'][i]) / max(np.sum(pop['count'][i]), 1)
              for i in range(len(pop['device']))]
  return {'personalized_accuracy': accuracy(pop), 'unseen_accuracy': accuracy(new),
          'worst_user_accuracy': float(np.min(per_user)),
          'shared_params': float(solutions_lib.tree_params(arm.states[lane][0].shared)),
          'upload_mb_per_round': mean_train(arm, lane, 'comm/uplink_bits') / 8e6}


def _arrival():
  return {'data.functional.arrival_rounds': (0, 0, ARRIVAL)}


def _drift():
  return {'data.temporal.schedule': 'step', 'data.temporal.period_rounds': DRIFT,
          'data.temporal.lighting': 0.5, 'data.temporal.audio_noise': 2.0,
          'data.temporal.sensor_degradation': 2.0}


S5_SNAPSHOTS = tuple(range(DRIFT, DRIFT + POST_ROUNDS + 1))
_EWC = {'algorithm.name': 'ewc', 'algorithm.ewc.rounds': (DRIFT,)}

EXPERIMENTS = {
    'S4/task_isolation': Entry(
        method={'algorithm.name': 'task_isolation'}, baseline={'algorithm.name': 'fedavg'},
        shift=_arrival(), metrics=s4_metrics, primary='forgetting', higher_is_better=False,
        snapshot_rounds=(ARRIVAL,),
        tradeoff='old tasks kept (forgetting) vs. the new task\'s accuracy and a backbone '
                 'pass per task (compute); Table 7: modular vs. monolithic deployment'),
    'S4/dynamic_task_modules': Entry(
        method={'algorithm.name': 'dynamic_task_modules'},
        baseline={'algorithm.name': 'fedavg'}, shift=_arrival(), metrics=s4_metrics,
        primary='forgetting', higher_is_better=False, snapshot_rounds=(ARRIVAL,),
        tradeoff='the new task\'s accuracy vs. what it adds and trains (an adapter on an '
                 'old head instead of a head); Table 7: modular vs. monolithic deployment'),
    'S5/temporal_gate': Entry(
        method={'algorithm.name': 'temporal_gate'}, baseline={'algorithm.name': 'fedavg'},
        shift=_drift(), metrics=s5_metrics, primary='recovery_rounds',
        higher_is_better=False, snapshot_rounds=S5_SNAPSHOTS,
        tradeoff='post-drift recovery vs. accuracy under calm conditions (the gate can '
                 'also normalise away useful signal); Table 7: adaptivity vs. stability'),
    'S5/lwf': Entry(
        method={'algorithm.name': 'lwf', 'algorithm.lwf.rounds': (DRIFT,)}, baseline=_EWC,
        shift=_drift(), metrics=s5_metrics, primary='recovery_rounds',
        higher_is_better=False, snapshot_rounds=S5_SNAPSHOTS,
        tradeoff='the pre-drift context retained vs. post-drift recovery (a teacher pass per '
                 'step); Table 7: adaptivity vs. stability'),
    'S5/mas': Entry(
        method={'algorithm.name': 'mas', 'algorithm.mas.rounds': (DRIFT,)}, baseline=_EWC,
        shift=_drift(), metrics=s5_metrics, primary='recovery_rounds',
        higher_is_better=False, snapshot_rounds=S5_SNAPSHOTS,
        tradeoff='the pre-drift context retained vs. post-drift recovery (label-free '
                 'importance); Table 7: adaptivity vs. stability'),
    'TAP/tap': Entry(
        method={'algorithm.name': 'tap', 'algorithm.tap.pair_modules': True,
                'algorithm.tap.distill_once': True},
        baseline={'algorithm.name': 'fedavg'}, shift={'data.task_keep_prob': 0.5},
        metrics=tap_metrics, primary='personalized_accuracy',
        tradeoff='personalized accuracy vs. new users\' accuracy and per-user state; Table 7: '
                 'local personalization vs. global generalization'),
}


NOTES = """## Notes

- Size: reduced from solutions.py's defaults (48 users, 12 a round, 20 rounds) to 24 users,
  6 a round, 16 rounds and 8 new users, so that the whole run (10 arms x 3 seeds, one
  program per arm) stays within 15 CPU-minutes on 2 shared cores (the recorded run: 641
  CPU-s, `cpu_s` in the json; its wall time is long because the cores were shared). Seeds
  0-2 of each arm are lanes of one compiled program.
- S4 forgetting: the old tasks are still learning when emotion arrives in a run this short,
  so forgetting is negative for every arm (the old tasks improve after the arrival); lower
  is still better. dynamic_task_modules trains as FedAvg until it decides, and with the
  defaults (CKA >= 0.3 and an extension's loss within the cost-scaled tolerance) it gave
  every arriving task a new head (`extended_tasks` 0): its numbers are FedAvg's, bit for
  bit, plus the probed adapter's parameters.
- S5: the evaluation after r rounds reads the data of round r - 1; `recovery_rounds` counts
  rounds trained after the drift until the drifted-data accuracy is back within 0.02 of
  the last calm accuracy. Its spread over 3 seeds is large (std 1-4 rounds). EWC, LwF and
  MAS consolidate at the drift round; here LwF and MAS recover no faster than EWC and keep
  less of the pre-drift context (`pre_drift_retained`), MAS (lam 1) clearly so. The
  temporal gate's gain over FedAvg is within the seeds' spread.
- TAP: the published variant (modality-task pair modules, stage 2 once after the last
  round) against FedAvg; each user's accuracy is its personal model's. New users' accuracy
  includes TAP's stage 2 on their own training data (FedAvg's new users get none).
"""


def _append_notes(md_path: str) -> None:
  with open(md_path, 'a') as f:
    f.write('\n' + NOTES)


def main(argv):
  del argv
  import solutions   # pylint: disable=import-outside-toplevel  (it imports this module)
  json_path = os.path.join(solutions._OUT.value, 'solutions_continual.json')
  md_path = os.path.join(solutions._OUT.value, 'solutions_continual.md')
  if solutions._TABLE.value:
    with open(json_path) as f:
      solutions.write_table(json.load(f), md_path)
    _append_notes(md_path)
    return
  if solutions._ROUNDS.value < DRIFT + POST_ROUNDS:
    raise SystemExit(f'--rounds must be >= {DRIFT + POST_ROUNDS} (the drift at round {DRIFT} '
                     f'and {POST_ROUNDS} rounds after it)')
  names = solutions._ENTRIES.value or list(EXPERIMENTS)
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    raise SystemExit(f'unknown entries {unknown}; known: {sorted(EXPERIMENTS)}')
  t0, cache, entries = time.perf_counter(), {}, {}
  previous = {}
  if os.path.exists(json_path):   # other entries' results stay
    with open(json_path) as f:
      previous = json.load(f).get('entries', {})
  flags_used = (('seeds', solutions._SEEDS.value), ('rounds', solutions._ROUNDS.value),
                ('population', solutions._POPULATION.value),
                ('cohort', solutions._COHORT.value), ('unseen', solutions._UNSEEN.value))
  for name in names:   # written after each entry: a stopped run keeps what it measured
    entries[name] = solutions_lib.run_entry(name, EXPERIMENTS[name], cache,
                                            solutions.arm_config, solutions._SEEDS.value)
    results = {
        'command': 'python benchmarks/solutions_continual.py ' + ' '.join(
            f'--{k}={v}' for k, v in flags_used),
        'settings': f'{solutions._POPULATION.value} users, {solutions._COHORT.value} a '
                    f'round, {solutions._ROUNDS.value} rounds, {solutions._SEEDS.value} seeds, '
                    f'{solutions._UNSEEN.value} new users, the default model and data '
                    f'(configs/default.py); task arrival at round {ARRIVAL}, drift at round '
                    f'{DRIFT}, recovery within {RECOVERY_TOL} of the pre-drift accuracy',
        'device': jax.devices()[0].device_kind, 'cpu_s': time.process_time(),
        'wall_s': time.perf_counter() - t0, 'entries': {**previous, **entries}}
    os.makedirs(solutions._OUT.value, exist_ok=True)
    with open(json_path, 'w') as f:
      json.dump(results, f, indent=2)
  solutions.write_table(results, md_path)
  _append_notes(md_path)


if __name__ == '__main__':
  import solutions  # noqa: F401  (defines the flags main reads)
  app.run(main)
