r"""fedxr-pretrain: pretrain the backbone centrally on public users.

  fedxr-pretrain --config.data.source=world --corpus_worlds=16 --output_dir=runs/corpus
  fedxr-train --config.data.source=world --config.model.pretrained=runs/corpus
  fedxr-pretrain --output_dir=runs/pretrained      # the federation's own world

--corpus_worlds=W > 0 pretrains on W public-corpus worlds of the primitives
world (data.source=world), seeds no federation uses, each world with its own
heads (not saved): base and encoders learn the shared physics. With
--corpus_worlds=0 the public users come from the federation's own world (ids
from 2^30 on), the transfer ceiling; base, encoders and heads are saved.
Trained with adam; the federated run must use the same model and data blocks.
--code_targets adds every block's code (the latents each world reads its
classes from) as regression targets; --shared_target_heads trains one head for
every corpus world on the regression and detection targets.
The shipped checkpoints (builtin:m3t-tiny, builtin:m3t-tiny-codes) are this
program's output; see BUILD_NOTES.md for their commands and weights' sha256.
"""
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

_PROGRAM = 'fedxr-pretrain'
_OUTPUT_DIR = flags.DEFINE_string('output_dir', os.path.join('runs', 'pretrained'),
                                  'Where the pretrained checkpoint goes.')
_STEPS = flags.DEFINE_integer('steps', 2000, 'Adam steps.')
_PUBLIC_CLIENTS = flags.DEFINE_integer(
    'public_clients', 512, 'Public users of each pretraining world.')
_CORPUS_WORLDS = flags.DEFINE_integer(
    'corpus_worlds', 0, 'Public-corpus worlds to pretrain on (needs '
    '--config.data.source=world); 0: public users of the federation\'s own world.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64,
                                   'Examples per step, mixed across public users.')
_USERS_PER_BATCH = flags.DEFINE_integer(
    'users_per_batch', 16, 'Public users each batch mixes (divides --batch_size).')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 3e-3,
                                    'Peak learning rate (warmup, cosine decay).')
_CONTRASTIVE = flags.DEFINE_float(
    'contrastive', 0.0, 'Weight of the self-supervised cross-modal InfoNCE term (two '
    'modality views of each example); 0: the supervised objective only.')
_CODE_TARGETS = flags.DEFINE_bool(
    'code_targets', False, 'Also regress every block\'s code, the latents each world '
    'reads its classes from (data.world.tasks.CODE_TASKS; needs '
    '--config.data.source=world): what transfers to worlds the corpus never saw.')
_SHARED_TARGET_HEADS = flags.DEFINE_bool(
    'shared_target_heads', False, 'With --corpus_worlds: one head for every corpus world on '
    'the regression and detection tasks (their targets are physics, the same in every '
    'world); classification heads stay per world.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a non-empty --output_dir.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
_CONFIG = None


def main(argv):
  if len(argv) > 1:
    common.fail(_PROGRAM, f'unexpected arguments: {argv[1:]} (flags are --name=value)')
  from fedxr_jax.core import compilation_cache  # after flags: keeps --help fast
  from fedxr_jax.compose import pretrained
  from fedxr_jax.training import pretrain
  compilation_cache.enable()
  common.quiet_logs()
  try:
    config = _CONFIG.value
  except Exception as e:  # pylint: disable=broad-except
    common.fail(_PROGRAM, common.config_error(e))
  try:
    if _CODE_TARGETS.value:
      config = pretrain.with_code_targets(config)
    settings = pretrain.Settings(
        steps=_STEPS.value, public_clients=_PUBLIC_CLIENTS.value,
        batch_size=_BATCH_SIZE.value, users_per_batch=_USERS_PER_BATCH.value,
        learning_rate=_LEARNING_RATE.value, corpus_worlds=_CORPUS_WORLDS.value,
        contrastive=_CONTRASTIVE.value, shared_target_heads=_SHARED_TARGET_HEADS.value)
    meta = pretrain.run(config, _OUTPUT_DIR.value, settings,
                        overwrite=_OVERWRITE.value, progress=_PROGRESS.value)
  except FedXRError as e:
    common.fail(_PROGRAM, str(e))
  except OSError as e:
    common.fail(_PROGRAM, f'{e.filename or _OUTPUT_DIR.value}: {e.strerror or e}')
  accs = ', '.join(f'{t} {a:.3f}' if a is not None else f'{t} -'
                   for t, a in meta['public_accuracy'].items())
  where = (f"{len(meta['corpus_world_seeds'])} corpus worlds x "
           if meta['corpus_world_seeds'] else '')
  print(f"pretrained {meta['steps']} steps on {where}{meta['public_clients']} "
        f"public users in {meta['wall_s']:.1f} s: loss {meta['initial_loss']:.3f} -> "
        f"{meta['final_loss']:.3f}; public test accuracy {accs}")
  print(f'saved to {os.path.abspath(_OUTPUT_DIR.value)}; use it with '
        f'--config.model.pretrained={_OUTPUT_DIR.value}')
  print('weights sha256 (every array; the same for every run of this command): '
        + pretrained.weights_sha256(pretrained.read_metadata(_OUTPUT_DIR.value)))


def entry():
  global _CONFIG
  if common.wants_help(sys.argv[1:]):
    common.print_help(_PROGRAM, __doc__, __name__)
    sys.exit(0)
  try:
    common.check_config_file(sys.argv[1:])
    # ml_collections applies --config.KEY overrides while defining the flag.
    _CONFIG = config_flags.DEFINE_config_file(
        'config', common.DEFAULT_CONFIG, 'Run config file (ml_collections).',
        lock_config=True)
    remaining = flags.FLAGS(sys.argv)   # parsed here: errors become one line
  except (flags.Error, FedXRError) as e:
    common.fail(_PROGRAM, str(e))
  except Exception as e:  # pylint: disable=broad-except
    common.fail(_PROGRAM, common.config_error(e))
  app.run(main, flags_parser=lambda _: remaining)


if __name__ == '__main__':
  entry()
