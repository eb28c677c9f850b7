"""Every Table 6 metric the project reports: keys, units, definitions, SHIFT dimensions.

The paper (Table 6, "Evaluation metrics for FedFMs in XR ecosystems") names
13 metrics, each with a description, a way to measure it and its SHIFT
dimensions: S(ensor and modality diversity), H(ardware heterogeneity),
I(nteractivity and embodied personalization), F(unctional/task
variability), T(emporality and environmental variability). Here each one
also says which metrics.jsonl keys hold it, in what unit, how the simulator
measures it, and what a run needs to produce it. Keys may be patterns:
`<task>`, `<device>`, `<class>`, `<group>` and `<event>` each stand for one
path segment.

This module imports nothing from the project: the report, the docs and the
evaluation all read it.
"""
import dataclasses
import functools
import re
from typing import Optional

SHIFT = {'S': 'Sensor and modality diversity',
         'H': 'Hardware heterogeneity and system-level constraints',
         'I': 'Interactivity and embodied personalization',
         'F': 'Functional/task variability',
         'T': 'Temporality and environmental variability'}
SHIFT_REF = 'section "SHIFT Dimensions and their Manifestation in XR Ecosystems"'
MISSING = 'not measured in this run'


@dataclasses.dataclass(frozen=True)
class Key:
  pattern: str        # a metrics.jsonl key, or a pattern with <placeholders>
  unit: str
  definition: str     # one line
  per_round: bool = False   # logged every round (a run reports its mean per round)

  @property
  def is_pattern(self) -> bool:
    return '<' in self.pattern

  @functools.cached_property
  def regex(self) -> re.Pattern:
    parts = re.split(r'(<[a-z]+>)', self.pattern)
    return re.compile(''.join('[^/]+' if p.startswith('<') else re.escape(p)
                              for p in parts) + '$')


@dataclasses.dataclass(frozen=True)
class Metric:
  slug: str                 # short id
  name: str                 # the paper's name (Table 6 "Metric")
  shift: tuple              # Table 6 "SHIFT Dimensions"
  paper_description: str    # Table 6 "Description"
  paper_measure: str        # Table 6 "How to Measure"
  paper_ref: str            # where the paper defines it
  measured: str             # how this project measures it
  module: str               # the function family that computes it
  needs: str                # what a run must produce for it to appear
  keys: tuple               # Key, ...
  headline: tuple           # concrete keys shown in the one-line-per-metric table


_T6 = 'Table 6, row "{}"'


def _k(pattern, unit, definition, per_round=False):
  return Key(pattern, unit, definition, per_round)


_METRICS = (
    Metric(
        'inference_latency', 'Inference Latency', ('H', 'I', 'T'),
        'Time between the reception of sensing inputs and model output generation; '
        'critical for responsiveness.',
        'Log time between input event (e.g., gesture, gaze) and output generation.',
        _T6.format('Inference Latency') + '; budgets from Table 2 "Real-Time Constraints" '
        '(Dimension 2: sub-50 ms gesture response; footnote 1: delays over 50 ms degrade '
        'responsiveness)',
        'On the host: wall time of the jitted forward of one example and of one test '
        'batch (median of eval.latency_repeats after a warm-up) on the machine running '
        'the simulator, once per evaluation (wall time: the one key family that differs '
        'between two runs of one seed; eval.measure_latency=False leaves it out). '
        'Modeled: FLOPs of the lowered forward of one example (XLA cost_analysis) x '
        'data.hardware.model_scale / each device\'s sustained FLOP/s at '
        'eval.latency_precision (data/devices.py); a panel user\'s latency is its '
        'device\'s times its straggler slowdown that round. A (user, task) pair violates '
        'the task\'s Table 2 budget (catalog latency_ms) when its latency exceeds it.',
        'fedxr_jax.metrics.latency',
        'an evaluation with a panel (eval.panel_size > 0) and Table 2 budgets for its tasks '
        '(eval.latency_classes for tasks outside Table 2)',
        (_k('latency/measured_example_ms', 'ms',
            'median wall time of the jitted forward of one example, on the host'),
         _k('latency/measured_batch_ms', 'ms',
            'median wall time of the jitted forward of one evaluation batch, on the host'),
         _k('latency/flops_per_example', 'FLOP',
            'XLA cost_analysis FLOPs of the forward of one example'),
         _k('latency/modeled_ms/<device>', 'ms',
            'modeled forward latency of one example on the device'),
         _k('latency/<task>/violation_rate', 'fraction',
            "share of the task's clients whose latency exceeds its Table 2 budget"),
         _k('latency/class/<class>/violation_rate', 'fraction',
            'share of (client, task) pairs of a Table 2 latency class over budget'),
         _k('latency/violation_rate', 'fraction',
            'share of all (client, task) pairs over their budget')),
        ('latency/violation_rate', 'latency/measured_example_ms')),
    Metric(
        'personalization_effectiveness', 'Personalization Effectiveness', ('I', 'F'),
        'Performance gain after local personalized (e.g., using prompt tuning or local '
        'training) vs. generic global model.',
        'Compare task accuracy or user satisfaction rate before and after '
        'personalization.',
        _T6.format('Personalization Effectiveness'),
        'Accuracy of the models the panel users run (personal trees, the algorithm\'s '
        'personal model, fine-tuning before evaluation) minus that of the generic global '
        'model (the global trees with the initial personal trees, no adaptation), per '
        'task, on the same users and test data in the same evaluation. Exactly 0 for a '
        'run that personalizes nothing (FedAvg without personal trees).',
        'fedxr_jax.metrics.personalization',
        'an evaluation with a panel (eval.panel_size > 0)',
        (_k('personalization/<task>/effectiveness', 'accuracy (fraction)',
            'personalized minus global-model accuracy on the task'),
         _k('personalization/effectiveness', 'accuracy (fraction)',
            'mean over tasks of the per-task gain')),
        ('personalization/effectiveness',)),
    Metric(
        'personalization_necessity', 'Personalization Necessity Rate', ('H', 'I', 'F'),
        'Proportion of users or tasks where global FedFM meets performance threshold, '
        'avoiding need for adaptation.',
        'Count users/tasks for which the global model exceeds a baseline accuracy '
        '(e.g., 90%) without fine-tuning.',
        _T6.format('Personalization Necessity Rate'),
        "From the panel users' correct/count under the generic global model: a (user, "
        "task) pair meets the bar when its accuracy is >= eval.necessity_threshold "
        "(absolute, default 0.9) or, for the _rel keys, >= eval.necessity_relative x the "
        "best panel user's accuracy on that task; a user meets it when all of its tasks "
        "do.",
        'fedxr_jax.metrics.personalization',
        'an evaluation with a panel (eval.panel_size > 0)',
        (_k('personalization/necessity_rate', 'fraction',
            'share of users whose every task meets the absolute threshold'),
         _k('personalization/necessity_rate_pairs', 'fraction',
            'share of (user, task) pairs meeting the absolute threshold'),
         _k('personalization/<task>/necessity_rate', 'fraction',
            "share of the task's users meeting the absolute threshold"),
         _k('personalization/necessity_rate_rel', 'fraction',
            "share of users whose every task reaches rel x the best user's accuracy"),
         _k('personalization/necessity_rate_pairs_rel', 'fraction',
            "share of (user, task) pairs reaching rel x the best user's accuracy"),
         _k('personalization/<task>/necessity_rate_rel', 'fraction',
            "share of the task's users reaching rel x the best user's accuracy")),
        ('personalization/necessity_rate', 'personalization/necessity_rate_pairs')),
    Metric(
        'cross_context_generalization', 'Cross-Context Generalization', ('S', 'F', 'T'),
        "The model's ability to generalize effectively across previously unseen users, "
        'environments, or tasks.',
        'Test model on data from new users or contexts not seen during training.',
        _T6.format('Cross-Context Generalization'),
        'Accuracy of a held-out group minus the round\'s participants\' accuracy, per '
        'task and averaged over tasks (summed stats of each group): unseen_users '
        '(eval_unseen_clients ids past the population), holdout_environments and '
        'holdout_devices (eval.holdout_environments / holdout_devices: training never '
        'draws a user in them; eval.holdout_clients dedicated users each, evaluated as new '
        'users). Under task arrival (data.functional.arrival_rounds), the panel\'s '
        'accuracy on its tasks whose labels have not arrived yet; each task has its own '
        'head in the M3T model, so before its labels arrive it is the untrained head.',
        'fedxr_jax.metrics.generalization',
        'unseen users (eval_unseen_clients > 0) or held-out contexts (eval.holdout_*)',
        (_k('generalization/<group>/accuracy', 'accuracy (fraction)',
            'mean over tasks of the held-out group\'s accuracy'),
         _k('generalization/<group>/<task>/gap', 'accuracy (fraction)',
            'held-out minus participating accuracy on the task (negative: a drop)'),
         _k('generalization/<group>/gap', 'accuracy (fraction)',
            'mean over tasks of the gap'),
         _k('generalization/before_arrival/<task>/accuracy', 'accuracy (fraction)',
            "panel accuracy on the task before its labels arrive (task arrival)"),
         _k('eval_unseen/<task>/accuracy', 'accuracy (fraction)',
            'accuracy of users outside the population (existing loop key)')),
        ('generalization/unseen_users/gap', 'generalization/holdout_environments/gap',
         'generalization/holdout_devices/gap')),
    Metric(
        'task_continuity', 'Task-Specific Continuity', ('F', 'T'),
        'Retaining performance on previously learned tasks during adaptation on the new '
        'tasks.',
        'Evaluate drop in earlier task accuracy post new-task fine-tuning (i.e., model '
        'forgetting measure under continual learning).',
        _T6.format('Task-Specific Continuity') + '; catastrophic forgetting: Dimension 5',
        'On a FIXED panel (eval.panel_size population users drawn once from the seed, the '
        'same at every evaluation): forgetting = best past panel accuracy minus the '
        'current one (clipped at 0; Chaudhry et al. 2018); backward transfer = current '
        'accuracy minus the accuracy when the task\'s training phase ended, i.e. just '
        'before the next task arrived (Lopez-Paz & Ranzato 2017).',
        'fedxr_jax.metrics.continuity',
        'repeated evaluations of a fixed panel (eval.panel_size > 0)',
        (_k('continuity/<task>/forgetting', 'accuracy (fraction)',
            'best past panel accuracy minus the current one (>= 0)'),
         _k('continuity/forgetting', 'accuracy (fraction)', 'mean over tasks'),
         _k('continuity/<task>/backward_transfer', 'accuracy (fraction)',
            'current accuracy minus that at the end of the task\'s phase'),
         _k('continuity/backward_transfer', 'accuracy (fraction)',
            'mean over tasks learned before the last arrival'),
         _k('panel/<task>/accuracy', 'accuracy (fraction)',
            'accuracy of the fixed panel on the task (the history continuity reads)'),
         _k('panel/accuracy', 'accuracy (fraction)', 'mean over tasks of the panel accuracy'),
         _k('eval/<task>/forgetting', 'accuracy (fraction)',
            'existing loop key: the same over changing cohorts (not a fixed panel)')),
        ('continuity/forgetting', 'continuity/backward_transfer')),
    Metric(
        'submodule_activation', 'Submodule Activation Efficiency', ('H', 'F'),
        'Average number of active FedFM modules per task; reflects model modularity.',
        'Count number of modules activated per task or per user interaction.',
        _T6.format('Submodule Activation Efficiency'),
        "Per task: encoders consulted (modalities present in the task's examples), "
        'experts whose routed token share is above a threshold (from expert_tokens '
        '[T, L, E]), the mean LoRA rank in use, and the task head; as counts and as a '
        'fraction of the selectable parameters (encoders, experts, LoRA ranks, heads).',
        'fedxr_jax.metrics.activation',
        'an evaluation with a panel (eval.panel_size > 0): its summed eval stats',
        (_k('activation/<task>/modules', 'modules',
            'encoders + active experts + heads the task uses'),
         _k('activation/<task>/encoders', 'modules', 'encoders consulted'),
         _k('activation/<task>/experts', 'modules', 'active experts over all layers'),
         _k('activation/<task>/experts_per_layer', 'modules', 'active experts per layer'),
         _k('activation/<task>/lora_rank', 'rank', 'mean LoRA rank of its examples'),
         _k('activation/<task>/heads', 'modules', 'task heads used'),
         _k('activation/<task>/param_fraction', 'fraction',
            'active share of the selectable parameters'),
         _k('activation/modules', 'modules', 'mean over tasks'),
         _k('activation/param_fraction', 'fraction', 'mean over tasks'),
         _k('eval/<task>/experts_active', 'modules',
            'existing loop key: experts with >= 5% of the tokens, mean per layer')),
        ('activation/modules', 'activation/param_fraction')),
    Metric(
        'storage_footprint', 'Model Storage Footprint', ('H',),
        'Total model size deployed on XR device, including adapters or quantized '
        'formats.',
        'Sum memory usage in MB for all active modules on device.',
        _T6.format('Model Storage Footprint'),
        'Bytes of every module a device class holds and runs, from the parameter shapes: '
        'frozen base, shared and personal trees and the client\'s algorithm and transform '
        'states (Ditto\'s personal model, SCAFFOLD\'s control variate, error feedback); '
        'only the encoders of the modalities it senses (Table 1 sensors, add-ons that fit '
        'it) and the heads of the tasks they carry; at float32 (4 B), bfloat16 (2 B) and '
        'int8 (1 B per weight + one float32 scale per tensor; integer leaves at their own '
        'size).',
        'fedxr_jax.metrics.storage',
        'an evaluation (the footprint is a fact of the run, repeated on every evaluated row)',
        (_k('storage/<device>/bytes_float32', 'bytes', 'modules held, at float32'),
         _k('storage/<device>/bytes_bfloat16', 'bytes', 'modules held, at bfloat16'),
         _k('storage/<device>/bytes_int8', 'bytes',
            'modules held, at int8 with a float32 scale per tensor'),
         _k('storage/<device>/ram_fraction', 'fraction',
            "float32 footprint over the device's RAM"),
         _k('storage/max_bytes_float32', 'bytes', 'largest device footprint, float32'),
         _k('storage/max_bytes_bfloat16', 'bytes', 'largest device footprint, bfloat16'),
         _k('storage/max_bytes_int8', 'bytes', 'largest device footprint, int8')),
        ('storage/max_bytes_float32', 'storage/max_bytes_int8')),
    Metric(
        'communication', 'Communication Overhead', ('H', 'T'),
        'Amount of data transferred per aggregation round or XR session.',
        'Monitor the bits exchanged during global aggregation rounds or XR sessions.',
        _T6.format('Communication Overhead'),
        'Bits of the shared modules each link carries in a round, by link type '
        '(topology/costs.py); a run reports the mean per round, the trade-offs the total.',
        'fedxr_jax.topology.costs',
        'the cost model in the round',
        (_k('comm/uplink_bits', 'bits', 'device -> base station / edge', True),
         _k('comm/downlink_bits', 'bits', 'base station / edge -> device', True),
         _k('comm/d2d_bits', 'bits', 'device -> device', True),
         _k('comm/backhaul_bits', 'bits', 'edge <-> cloud (wired)', True)),
        ('comm/uplink_bits', 'comm/downlink_bits', 'comm/d2d_bits')),
    Metric(
        'energy', 'Battery Impact / Energy Use', ('H', 'T'),
        'Device power consumption while running/adapting FedFM.',
        'Measure power draw in mW or energy used (Joules) via onboard or external '
        'sensors.',
        _T6.format('Battery Impact / Energy Use'),
        'Modeled: compute power x local compute time + transmit power x airtime per '
        'device (topology/costs.py, device power from data/devices.py); the round '
        'latency is its slowest link.',
        'fedxr_jax.topology.costs',
        'the cost model in the round',
        (_k('cost/energy_j', 'J', 'energy all devices spend in a round', True),
         _k('cost/max_device_energy_j', 'J', 'energy of the costliest device', True),
         _k('cost/latency_s', 's', 'wall-clock length of a round (slowest path)', True),
         _k('cost/max_compute_s', 's', 'longest local compute time in a round', True)),
        ('cost/energy_j', 'cost/max_device_energy_j', 'cost/latency_s')),
    Metric(
        'user_reported_qoe', 'User-Reported QoE', ('I', 'T'),
        'Subjective user-perceived quality of experience, focusing on responsiveness and '
        'interaction fluidity.',
        'Collect Likert-scale ratings, qualitative feedback, or lag reports through user '
        'surveys.',
        _T6.format('User-Reported QoE'),
        'A simulated survey: MOS = clip(1 + 4 x accuracy x D(latency / budget) + user '
        'bias, 1, 5), D(x) = 1 within budget, exp(-(x - 1) / tau) past it (IQX '
        'exponential QoS-QoE law, Fiedler et al. 2010; 1-5 MOS scale of ITU-T P.800; '
        'quality x delay degradation in the style of ITU-T G.1070/P.1203); '
        'Likert ratings sampled around it from the seed folded with the round; one rating '
        'per (panel user, task) from its accuracy and modeled latency; parameters in '
        'eval.qoe.',
        'fedxr_jax.metrics.qoe',
        'a panel (eval.panel_size > 0) and Table 2 budgets for its tasks',
        (_k('qoe/user_reported/mos', 'MOS (1-5)', 'mean sampled Likert rating'),
         _k('qoe/user_reported/<task>/mos', 'MOS (1-5)', 'mean rating on the task'),
         _k('qoe/user_reported/model_mos', 'MOS (1-5)',
            'expected MOS of the model, without user bias and rating noise'),
         _k('qoe/user_reported/poor_or_worse', 'fraction',
            'share of ratings <= 2 (%PoW, as in ITU-T G.107)')),
        ('qoe/user_reported/mos', 'qoe/user_reported/poor_or_worse')),
    Metric(
        'model_inferred_qoe', 'Model-Inferred QoE', ('I', 'T'),
        'System-side estimation of perceived interaction quality without explicit user '
        'input.',
        'Monitor implicit behavioral signals such as gaze jitter, task repetition, '
        'latency-induced hesitation, or input aborts.',
        _T6.format('Model-Inferred QoE'),
        'Behavioural proxies per (user, task): repetitions = error rate x retry '
        'probability; hesitation = a budget violation; abort probability = p_max x (1 - '
        'exp(-(latency / budget - 1)+ / tau_abort)); score = 1 + 4 x (1 - repetitions) x '
        '(1 - abort) x (1 - w_h x hesitation), per (panel user, task); parameters in '
        'eval.qoe. Gaze jitter is not simulated.',
        'fedxr_jax.metrics.qoe',
        'a panel (eval.panel_size > 0) and Table 2 budgets for its tasks',
        (_k('qoe/inferred/score', 'score (1-5)', 'mean inferred score'),
         _k('qoe/inferred/<task>/score', 'score (1-5)', 'mean inferred score on the task'),
         _k('qoe/inferred/repetition_rate', 'repetitions / interaction',
            'expected task repetitions after a wrong output'),
         _k('qoe/inferred/hesitation_rate', 'fraction',
            'share of interactions over their latency budget'),
         _k('qoe/inferred/abort_rate', 'fraction', 'expected share of aborted inputs')),
        ('qoe/inferred/score', 'qoe/inferred/abort_rate')),
    Metric(
        'on_device_training_time', 'On-Device Training Time', ('H', 'I', 'T'),
        'Duration required for local model adaptation, tuning, or fine-tuning directly '
        'on the XR device.',
        'Record duration of local fine-tuning routine on device per adaptation event.',
        _T6.format('On-Device Training Time'),
        'Modeled per adaptation event and device class: local_training = a round\'s '
        'local steps (the device\'s step budget, data.hardware) x FLOPs per local step '
        '(XLA cost_analysis of the lowered step of the trained trees, x model_scale) / '
        'sustained FLOP/s; fine_tuning = the adaptation before evaluation (local_ft, TAP) '
        'of the panel users, mean per device class; energy = compute power x that time '
        '(data/devices.py).',
        'fedxr_jax.metrics.training_time',
        'an evaluation (fine_tuning: an algorithm that adapts before evaluation)',
        (_k('train_time/<event>/<device>/seconds', 's', 'one adaptation event'),
         _k('train_time/<event>/<device>/energy_j', 'J', 'compute energy of one event'),
         _k('train_time/<event>/max_seconds', 's', 'slowest device class'),
         _k('train_time/<event>/max_energy_j', 'J', 'costliest device class')),
        ('train_time/local_training/max_seconds',
         'train_time/local_training/max_energy_j')),
    Metric(
        'privacy_leakage', 'Privacy Leakage Risk', ('S',),
        'Potential for data leakage through observation of model updates or '
        'representations during global aggregations.',
        'Run membership inference attacks, gradient inversion, or compute differential '
        'privacy bounds.',
        _T6.format('Privacy Leakage Risk'),
        'The DP bound of the run from the privacy accountant (config privacy.*, every '
        'round, when DP noise is on: client-level for DP-FedAvg, example-level per '
        'client for privacy.mode=example), and at every evaluation the AUC of '
        'the loss-threshold membership-inference attack (Yeom et al. 2018; '
        'privacy/membership.py): the per-example losses, under the model each panel user '
        'runs, of the training examples of panel users sampled in some cohort so far '
        '(members) against their test examples (non-members). Gradient inversion '
        '(privacy/inversion.py) is an attack library, not run in training rows.',
        'fedxr_jax.metrics.privacy',
        'DP noise (privacy/epsilon) or a panel user that has trained (privacy/mia_auc)',
        (_k('privacy/epsilon', 'epsilon', '(epsilon, delta)-DP bound of the run so far'),
         _k('privacy/delta', 'delta', 'the delta of that bound'),
         _k('privacy/mia_auc', 'AUC',
            'membership-inference attack AUC (0.5: no leakage)')),
        ('privacy/epsilon', 'privacy/mia_auc')),
)


def metrics() -> tuple:
  """The 13 Table 6 metrics, in the paper's order."""
  return _METRICS


def get(slug: str) -> Metric:
  for m in _METRICS:
    if m.slug == slug:
      return m
  raise KeyError(f'unknown metric {slug!r}; known: {[m.slug for m in _METRICS]}')


def lookup(key: str) -> Optional[tuple]:
  """(Metric, Key) a concrete metrics.jsonl key belongs to, or None."""
  for m in _METRICS:
    for k in m.keys:
      if k.regex.match(key):
        return m, k
  return None


def missing_reason(metric: Metric) -> str:
  return f'{MISSING} (needs {metric.needs})'
