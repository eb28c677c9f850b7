r"""The paper's Table 4 made measurable: every local tuning strategy and rule.

  python benchmarks/strategies.py                         # all variants, 30 rounds
  python benchmarks/strategies.py --variants=lora_fedit,moe --rounds=10

Each variant trains the default XR federation (500 users, 32 per round, 6
device types, 3 tasks) for --rounds rounds and reports
  - accuracy per task on participating users' held-out data, and on unseen users;
  - trainable parameters per client (shared + personal trees);
  - bytes a client uploads per round (the shared modules it holds);
  - modeled on-device training time per round (slowest client of a round:
    XLA-counted FLOPs per step x steps / device FLOP/s), and simulator wall
    time per round on this machine;
  - training memory per client: every parameter (the frozen base included:
    it is on the device), plus gradients and optimizer state of the trainable
    trees, plus XLA's temporary buffers of one local step.
Writes OUT/strategies.{json,md,png}.
"""
import json
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from fedxr_jax.configs import default as default_config
from fedxr_jax.core import trees
from fedxr_jax.compose import experiment
from fedxr_jax.training import loop

_ROUNDS = flags.DEFINE_integer('rounds', 30, 'Rounds per variant.')
_VARIANTS = flags.DEFINE_list('variants', [], 'Variants to run (default: all).')
_OUT = flags.DEFINE_string('out', 'runs/bench_strategies', 'Output folder.')
_REPLOT = flags.DEFINE_bool('replot', False, 'Only redraw from OUT/strategies.json.')
_MERGE = flags.DEFINE_bool('merge', False, 'Add/replace these variants in an existing '
                           'OUT/strategies.json instead of starting a new one.')

# name -> (strategy, config overrides {block: {key: value}})
VARIANTS = {
    'lora_fedit': ('LoRA', {}),
    'lora_ffa': ('LoRA', dict(lora=dict(rule='ffa'))),
    'lora_fedsa': ('LoRA', dict(lora=dict(rule='fedsa'))),
    'lora_exact': ('LoRA', dict(lora=dict(rule='exact'))),
    'lora_flora': ('LoRA', dict(lora=dict(rule='flora'))),
    # Glasses (Ray-Ban Meta, Vuzix Blade 2) rank 1, XReal 2, headsets 4.
    'lora_hetrank': ('LoRA', dict(lora=dict(device_ranks=(4, 4, 4, 1, 2, 1)))),
    'lora_hetlora': ('LoRA', dict(lora=dict(device_ranks=(4, 4, 4, 1, 2, 1),
                                            hetlora_weights=True))),
    'prompt_global': ('prompt', dict(plan=dict(lora='frozen', prompts='shared'))),
    'prompt_personal': ('prompt', dict(plan=dict(lora='frozen', prompts='personal'))),
    'prompt_shared_personal': ('prompt', dict(
        plan=dict(lora='frozen', prompts='shared', user_prompts='personal'),
        model=dict(num_user_prompts=4))),
    'adapter': ('adapter', dict(plan=dict(lora='frozen', prompts='frozen',
                                          adapters='shared'),
                                model=dict(adapter_dim=8))),
    'moe_experts': ('MoE expert', dict(plan=dict(lora='frozen', prompts='frozen',
                                                 experts='shared'),
                                       model=dict(num_experts=4, expert_top_k=2))),
    'full': ('full', dict(plan=dict(base='shared', lora='frozen', prompts='shared'))),
    'fedprox': ('LoRA + FedProx', dict(algorithm=dict(name='fedprox', prox_mu=0.01))),
    'fedadam': ('LoRA + FedAdam', dict(server_optimizer=dict(
        name='adam', learning_rate=0.01))),
    'fedper': ('LoRA + FedPer', dict(plan=dict(heads='personal'))),
    'fedrep': ('LoRA + FedRep', dict(plan=dict(heads='personal'),
                                     algorithm=dict(name='fedrep', fedrep_head_steps=4))),
    'ditto': ('LoRA + Ditto', dict(algorithm=dict(name='ditto', ditto_lambda=0.1))),
    'local_ft': ('LoRA + local FT', dict(algorithm=dict(name='local_ft',
                                                        finetune_steps=4))),
    'tap': ('LoRA + TAP', dict(algorithm=dict(name='tap', finetune_steps=4))),
    # Continual: emotion labels arrive at round 15 (SHIFT F); EWC anchors
    # what was learned on gesture and intent before it.
    'arrival_fedavg': ('LoRA, task arrival', dict(data=dict(
        functional=dict(arrival_rounds=(0, 0, 15))))),
    'arrival_ewc': ('LoRA + EWC, task arrival', dict(
        data=dict(functional=dict(arrival_rounds=(0, 0, 15))),
        algorithm=dict(name='ewc', ewc_lambda=10.0, ewc_rounds=(15,)))),
}


def make_config(overrides: dict):
  config = default_config.get_config()
  config.num_rounds = _ROUNDS.value
  config.eval_every = _ROUNDS.value
  config.checkpoint_every = _ROUNDS.value
  config.plot = False
  for block, values in overrides.items():
    for key, value in values.items():
      if isinstance(value, dict):
        config[block][key].update(value)
      else:
        config[block][key] = value
  return config


def training_memory_bytes(exp) -> dict:
  """Bytes a client needs to train: params, grads + optimizer state, temporaries."""
  problem, plan = exp.problem, exp.federation.plan
  params = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  # The exact-LoRA residual is shared but set by the server, never trained.
  trainable = {r: params[r] for r, m in plan.items()
               if m != 'frozen' and r != 'lora_residual'}
  world = exp.world
  data = jax.eval_shape(lambda: problem.client_data(world, jax.numpy.int32(0), 'train', 0))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      (exp.config.batch_size,) + x.shape[1:], x.dtype), data['examples'])
  meta = {k: v for k, v in data.items() if k != 'examples'}
  frozen = {r: params[r] for r in params if r not in trainable}
  grad = jax.grad(lambda t, f, b, m: problem.loss({**f, **t}, b, m)[0])
  compiled = jax.jit(grad).lower(trainable, frozen, batch, meta).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  optimizer = experiment.make_optimizer(exp.config.client_optimizer, 'client_optimizer')
  opt_state = jax.eval_shape(optimizer.init, trainable)
  return dict(param_bytes=trees.tree_bytes(params),
              trainable_params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(trainable))),
              train_bytes=trees.tree_bytes(params) + trees.tree_bytes(trainable)
              + trees.tree_bytes(opt_state) + int(temp))


def run_variant(name: str) -> dict:
  strategy, overrides = VARIANTS[name]
  config = make_config(overrides)
  exp = experiment.build(config)
  memory = training_memory_bytes(exp)
  workdir = os.path.join(_OUT.value, 'runs', name)
  t0 = time.perf_counter()
  rows = loop.run(config, workdir, progress=False)
  wall = time.perf_counter() - t0
  last = rows[-1]
  tasks = exp.spec.tasks
  mean = lambda key: float(np.mean([r[key] for r in rows]))
  return dict(
      variant=name, strategy=strategy, rounds=len(rows),
      accuracy={t: last[f'eval/{t}/accuracy'] for t in tasks},
      mean_accuracy=last['eval/accuracy'], unseen_accuracy=last['eval_unseen/accuracy'],
      uplink_bytes_per_client=mean('comm/uplink_bits') / 8 / config.cohort_size,
      device_train_s=mean('cost/max_compute_s'), wall_s_per_round=wall / len(rows),
      **memory)


def write_outputs(results):
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'strategies.json'), 'w') as f:
    json.dump(results, f, indent=2)
  tasks = list(results[0]['accuracy'])
  lines = ['| variant | strategy | ' + ' | '.join(tasks) + ' | mean acc | unseen acc | '
           'trainable params | upload KB/client/round | device train s/round | '
           'train memory MB | sim wall s/round |',
           '|---|---|' + '---|' * len(tasks) + '---|---|---|---|---|---|---|']
  for r in results:
    accs = ' | '.join(f"{r['accuracy'][t]:.3f}" for t in tasks)
    lines.append(
        f"| {r['variant']} | {r['strategy']} | {accs} | {r['mean_accuracy']:.3f} | "
        f"{r['unseen_accuracy']:.3f} | {r['trainable_params']:,} | "
        f"{r['uplink_bytes_per_client'] / 1e3:.1f} | {r['device_train_s']:.4f} | "
        f"{r['train_bytes'] / 1e6:.2f} | {r['wall_s_per_round']:.2f} |")
  table = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'strategies.md'), 'w') as f:
    f.write(table + '\n')
  print(table)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
  for ax, key, label in ((axes[0], 'uplink_bytes_per_client', 'upload bytes / client / round'),
                         (axes[1], 'trainable_params', 'trainable parameters / client')):
    for r in results:
      ax.scatter(max(r[key], 1), r['mean_accuracy'], s=50)
      ax.annotate(r['variant'], (max(r[key], 1), r['mean_accuracy']), fontsize=7,
                  textcoords='offset points', xytext=(4, 3))
    ax.set(xlabel=label, ylabel='mean accuracy (participating users)', xscale='log')
  fig.suptitle(f"Tuning strategies on the default XR federation, {results[0]['rounds']} rounds")
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, 'strategies.png'), dpi=100)


def main(argv):
  del argv
  if _REPLOT.value:
    with open(os.path.join(_OUT.value, 'strategies.json')) as f:
      write_outputs(json.load(f))
    return
  names = _VARIANTS.value or list(VARIANTS)
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f'unknown variants {unknown}; known: {list(VARIANTS)}')
  results = []
  path = os.path.join(_OUT.value, 'strategies.json')
  if _MERGE.value and os.path.exists(path):
    with open(path) as f:
      results = [r for r in json.load(f) if r['variant'] not in names]
  for name in names:
    r = run_variant(name)
    print(json.dumps(r), flush=True)
    results.append(r)
  order = list(VARIANTS)
  write_outputs(sorted(results, key=lambda r: order.index(r['variant'])))


if __name__ == '__main__':
  app.run(main)
