"""The primitives world (data v2): shared physics, per-world class definitions.

  WorldSpec, default_config, spec_from_config    spec.py
  make_world, with_holdouts, check_spec          worlds.py (a world: definitions, tables)
  client_profile, client_device, partner_of, ... clients.py (profiles, user state, groups)
  example_latents                                latents.py (per-example primitives)
  client_data                                    generator.py (render, masks, layout)
  TASKS, TaskDef                                 tasks.py (registry)
  objectives                                     losses and metrics per task kind
  robustness                                     FedMultimodal's protocol, any source
  presets                                        Table 8's needed datasets
  corpus_seeds, world_key                        corpus.py (disjoint pretraining worlds)
v1 (`data.synthetic`) is untouched and stays the default source.
"""
from fedxr_jax.data.world import objectives
from fedxr_jax.data.world import presets
from fedxr_jax.data.world import robustness
from fedxr_jax.data.world.corpus import corpus_seeds
from fedxr_jax.data.world.corpus import world_key
from fedxr_jax.data.world.clients import client_device
from fedxr_jax.data.world.clients import client_position
from fedxr_jax.data.world.clients import client_profile
from fedxr_jax.data.world.clients import partner_of
from fedxr_jax.data.world.generator import client_data
from fedxr_jax.data.world.latents import example_latents
from fedxr_jax.data.world.worlds import check_spec
from fedxr_jax.data.world.worlds import make_world
from fedxr_jax.data.world.worlds import with_holdouts
from fedxr_jax.data.world.robustness import Robustness
from fedxr_jax.data.world.spec import WorldSpec
from fedxr_jax.data.world.spec import default_config
from fedxr_jax.data.world.spec import spec_from_config
from fedxr_jax.data.world.tasks import TASKS
from fedxr_jax.data.world.tasks import TaskDef
