"""`WorldSpec`: the static description of a primitives world (v2), and its checks.

Hashable and jit-static like `synthetic.XRSpec`, and duck-compatible with it:
the fields v1's client machinery reads (devices, environments, SHIFT blocks,
held-out contexts) have v1's names, so `synthetic.client_round_state`,
`task_mask_at`, `trainable`, `client_position`, `holdout_ids` and
`check_spec` accept a WorldSpec (held-out contexts: `world.with_holdouts`).
Every default is written once, here, as a literal: `default_config()` derives
a config block from the fields.
"""
import dataclasses
import difflib

from fedxr_jax.data import catalog
from fedxr_jax.data import shift
from fedxr_jax.data.world import robustness as robustness_lib
from fedxr_jax.data.world import tasks as tasks_lib
from fedxr_jax.errors import ConfigError

MODALITIES = ('vision', 'audio', 'motion', 'gaze', 'depth', 'hand', 'thermal', 'physio')
# Channels of the time-series modalities (see render.py for what each holds).
CHANNELS = {'audio': None, 'motion': 6, 'gaze': 3, 'hand': 18, 'physio': 4}
_BLOCKS = {'sensors': shift.Sensors, 'hardware': shift.HardwareKnobs,
           'interactivity': shift.Interactivity, 'functional': shift.Functional,
           'temporal': shift.Temporal, 'robustness': robustness_lib.Robustness}


@dataclasses.dataclass(frozen=True)
class WorldSpec:
  """A primitives world: who the users are, what they sense, what is asked."""
  modalities: tuple = ('vision', 'audio', 'motion', 'gaze')
  tasks: tuple = ('gesture', 'intent', 'emotion', 'gaze_point', 'object_box')
  devices: tuple = ('apple_vision_pro', 'meta_quest_3', 'hololens_2', 'ray_ban_meta',
                    'xreal_air', 'vuzix_blade_2')
  device_weights: tuple = ()      # () = uniform
  max_examples: int = 48          # train examples per client (padded size)
  min_examples: int = 16
  test_examples: int = 32
  local_steps: int = 4
  dirichlet_alpha: float = 0.5    # per-client class priors ~ Dirichlet(alpha)
  task_keep_prob: float = 1.0
  modality_dropout: float = 0.1   # per-sample chance a present sensor drops
  noise_std: float = 1.0          # x each sensor's own noise level (render.NOISE)
  style_scale: float = 0.5        # strength of the per-user style
  environment_scale: float = 0.5  # strength of the environment's look and sound
  class_spread: float = 2.0       # class prototypes' spread / within-class spread
  environments: tuple = ()        # () = all of catalog.ENVIRONMENTS
  area_m: float = 100.0
  walk_m_per_round: float = 0.0
  # Resolution: what the model asks for.
  image_size: int = 16            # vision is [image_size, image_size, image_channels]
  image_channels: int = 1         # 1 (gray) or 3 (RGB)
  image_patch: int = 8            # the model's vision token is a patch of this side
  map_size: int = 8               # depth and thermal maps are [map_size, map_size, 1]
  steps: int = 16                 # samples per time-series window (2 s)
  audio_bins: int = 16            # log-frequency bins of the spectrogram
  # Table 8 presets (presets.py); all off by default.
  roles: int = 0                  # role-specific: roles users are drawn into
  role_strength: float = 1.0      # how much a role changes what an intent looks like
  drift_rate: float = 0.0         # longitudinal: behaviour changes per client per round
  drift_max_events: int = 8       # changes a client can have (a static bound)
  group_size: int = 1             # social: co-located users per group
  partner_coupling: float = 0.5   # level of a partner's voice in a user's microphone
  shared_focus: float = 0.6       # chance a group member attends the group's focus
  load_effect: float = 1.0        # how strongly cognitive load shows in gaze and physiology
  sensors: shift.Sensors = shift.Sensors()
  hardware: shift.HardwareKnobs = shift.HardwareKnobs()
  interactivity: shift.Interactivity = shift.Interactivity()
  functional: shift.Functional = shift.Functional()
  temporal: shift.Temporal = shift.Temporal()
  robustness: robustness_lib.Robustness = robustness_lib.Robustness()
  holdout_environments: tuple = ()
  holdout_devices: tuple = ()
  holdout_first_id: int = 0
  holdout_clients: int = 0

  @property
  def weights(self) -> tuple:
    """One relative frequency per device (uniform when device_weights is empty)."""
    return tuple(self.device_weights) or (1.0,) * len(self.devices)

  # -- what v1's machinery reads ---------------------------------------------
  @property
  def holdout_groups(self) -> tuple:
    return tuple(g for g, names in (('holdout_environments', self.holdout_environments),
                                    ('holdout_devices', self.holdout_devices)) if names)

  @property
  def environment_names(self) -> tuple:
    return tuple(self.environments) or tuple(catalog.ENVIRONMENTS)

  # -- what the model reads --------------------------------------------------
  @property
  def task_defs(self) -> tuple:
    return tuple(tasks_lib.TASKS[t] for t in self.tasks)

  @property
  def latency_classes(self) -> tuple:
    """((task, Table 2 latency class), ...): the world defines every task's class,
    those outside Table 2's own list (gaze_point, object_box, ...) included."""
    return tuple((t.name, t.latency_class) for t in self.task_defs)

  @property
  def head_sizes(self) -> tuple:
    """Outputs of each task's head: classes, or target dims."""
    return tuple(t.size for t in self.task_defs)

  @property
  def num_classes(self) -> tuple:
    """Classes per task, 0 for regression and detection (robustness.apply)."""
    return tuple(t.size if t.kind == 'classification' else 0 for t in self.task_defs)

  def task_modalities(self, task: str) -> tuple:
    return tuple(m for m in tasks_lib.TASKS[task].carriers if m in self.modalities)

  def shape(self, modality: str) -> tuple:
    s, t = self.image_size, self.steps
    if modality == 'vision':
      return (s, s, self.image_channels)
    if modality in ('depth', 'thermal'):
      return (self.map_size, self.map_size, 1)
    if modality == 'audio':
      return (t, self.audio_bins)
    return (t, CHANNELS[modality])

  def token_shape(self, modality: str) -> tuple:
    """Vision: image_patch patches; maps: 4 quadrants; series: 4 windows."""
    shape = self.shape(modality)
    if modality == 'vision':
      return (self.image_patch, self.image_patch, self.image_channels)
    if len(shape) == 3:
      return (shape[0] // 2, shape[1] // 2, 1)
    return (shape[0] // 4, shape[1])

  def model_modalities(self) -> dict:
    """{name: (shape, token_shape)} for `models.m3t.M3TModel`."""
    return {m: (self.shape(m), self.token_shape(m)) for m in self.modalities}

  # -- checks ------------------------------------------------------------------
  def check(self) -> 'WorldSpec':
    """Refuses impossible values, one line each (ConfigError); returns self."""
    w = 'data.world'
    _names('modality', self.modalities, MODALITIES)
    _names('task', self.tasks, tasks_lib.TASKS)
    catalog.devices(self.devices)
    catalog.environments(self.environment_names)
    _need(len(set(self.modalities)) == len(self.modalities) and self.modalities,
          f'{w}.modalities must be distinct and non-empty, got {self.modalities}')
    _need(len(set(self.tasks)) == len(self.tasks) and self.tasks,
          f'{w}.tasks must be distinct and non-empty, got {self.tasks}')
    _need(len(self.weights) == len(self.devices)
          and all(x >= 0 for x in self.weights) and sum(self.weights) > 0,
          f'{w}.device_weights needs one weight >= 0 per device (not all 0), got '
          f'{self.device_weights}')
    _need(1 <= self.min_examples <= self.max_examples,
          f'{w}: need 1 <= min_examples <= max_examples, got {self.min_examples}, '
          f'{self.max_examples}')
    _need(self.test_examples >= 1, f'{w}.test_examples must be >= 1')
    _need(self.local_steps >= 1, f'{w}.local_steps must be >= 1')
    _need(self.dirichlet_alpha > 0, f'{w}.dirichlet_alpha must be > 0')
    for k in ('task_keep_prob', 'shared_focus', 'role_strength'):
      _need(0.0 <= getattr(self, k) <= 1.0, f'{w}.{k} must be in [0, 1], got '
            f'{getattr(self, k)}')
    _need(0.0 <= self.modality_dropout < 1.0,
          f'{w}.modality_dropout must be in [0, 1), got {self.modality_dropout}')
    for k in ('noise_std', 'style_scale', 'environment_scale', 'partner_coupling',
              'load_effect'):
      _need(getattr(self, k) >= 0, f'{w}.{k} must be >= 0, got {getattr(self, k)}')
    _need(self.class_spread > 0, f'{w}.class_spread must be > 0')
    _need(self.image_channels in (1, 3), f'{w}.image_channels must be 1 or 3, got '
          f'{self.image_channels}')
    _need(self.image_size >= 8 and self.image_patch >= 1
          and self.image_size % self.image_patch == 0,
          f'{w}.image_size={self.image_size} must be >= 8 and a multiple of '
          f'image_patch={self.image_patch}')
    _need(self.map_size >= 4 and self.map_size % 2 == 0,
          f'{w}.map_size must be even and >= 4, got {self.map_size}')
    _need(self.steps >= 8 and self.steps % 4 == 0,
          f'{w}.steps must be a multiple of 4 and >= 8, got {self.steps}')
    _need(self.audio_bins >= 8, f'{w}.audio_bins must be >= 8, got {self.audio_bins}')
    _need(self.roles >= 0 and self.group_size >= 1 and self.drift_max_events >= 1,
          f'{w}: need roles >= 0, group_size >= 1, drift_max_events >= 1')
    _need(0.0 <= self.drift_rate < 1.0,
          f'{w}.drift_rate must be in [0, 1) changes per round, got {self.drift_rate}')
    _need('shared_grounding' not in self.tasks or self.group_size >= 2,
          f'{w}.tasks has shared_grounding, which needs group_size >= 2 (social preset)')
    for name, cls in _BLOCKS.items():
      block = getattr(self, name)
      if name == 'functional':
        block.check(len(self.tasks), f'{w}.functional')
      else:
        block.check(f'{w}.{name}')
    catalog.addons(self.sensors.addons)
    return self


def _need(ok, message):
  if not ok:
    raise ConfigError(message)


def _names(kind, names, known):
  for n in names:
    if n not in known:
      close = difflib.get_close_matches(n, known, n=1)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      raise ConfigError(f'unknown v2 {kind} {n!r}{hint}; known: {sorted(known)}')


# ---------------------------------------------------------------------------
# Config blocks: derived from the fields, never written twice.

# Set by the run (eval.holdout_*, local_steps) or from the model, never by the block.
_DERIVED = ('holdout_environments', 'holdout_devices', 'holdout_first_id',
            'holdout_clients', 'local_steps')
_MODEL_COSTS = ('flops_per_step', 'role_train_bytes')   # shift.HardwareKnobs'


def default_config() -> dict:
  """The literal defaults as a nested dict (for `config.data.world_v2`)."""
  spec = WorldSpec()
  out = {}
  for f in dataclasses.fields(WorldSpec):
    if f.name in _DERIVED:
      continue
    value = getattr(spec, f.name)
    if f.name in _BLOCKS:
      value = {k: v for k, v in dataclasses.asdict(value).items() if k not in _MODEL_COSTS}
    out[f.name] = value
  return out


def spec_from_config(block, local_steps: int) -> WorldSpec:
  """A checked WorldSpec from a config block (missing keys: defaults)."""
  block = block.to_dict() if hasattr(block, 'to_dict') else dict(block or {})
  known = [f.name for f in dataclasses.fields(WorldSpec) if f.name not in _DERIVED]
  unknown = sorted(set(block) - set(known))
  if unknown:
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'data.world: unknown key(s) {unknown}{hint}')
  kwargs = {}
  for k, v in block.items():
    if k in _BLOCKS:
      kwargs[k] = shift.from_block(_BLOCKS[k], v, f'data.world.{k}')
    else:
      kwargs[k] = tuple(v) if isinstance(v, list) else v
  return WorldSpec(local_steps=local_steps, **kwargs).check()
