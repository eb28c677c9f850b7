"""The SHIFT knobs of the synthetic federation, one frozen block each.

S `Sensors`        which sensors a device has (Table 1, or all), add-on
                   wearables, and sensors that drop out over time (a
                   two-state Markov chain per client x modality across
                   rounds); per-sample dropout is `data.modality_dropout`.
H `HardwareKnobs`  local-step budgets from device FLOP/s, a round deadline,
                   stragglers, availability (battery and time of day), and
                   which parameter trees fit in a device's memory.
I `Interactivity`  per-user style (strength: `data.style_scale`) and its
                   drift over time, which rewards on-device adaptation.
F `Functional`     per-client task subsets (`data.task_keep_prob`, and the
                   environment's task mix) and tasks arriving mid-training.
T `Temporal`       environment drift schedules: lighting (vision), noise
                   (audio), sensor degradation (IMU, gaze, hands, physio).

Everything time-dependent is a pure function of (world, client, round): no
state to carry or checkpoint, and a client's data never depends on the
cohort it is drawn with.
"""
import dataclasses
import difflib
import math

import jax
import jax.numpy as jnp

from fedxr_jax.errors import ConfigError

SCHEDULES = ('none', 'linear', 'cyclic', 'step')
# A Markov window misses the chain's exact state with probability at most
# this (see `markov_off`).
MARKOV_EPS = 1e-6
_MAX_WINDOW = 4096
_TIME_OFFSET = 1 << 20   # keeps fold_in data positive for times before round 0


def _need(ok, message):
  if not ok:
    raise ConfigError(message)


def from_block(cls, block, where: str):
  """`cls` from a config block (missing keys: defaults; unknown: ConfigError)."""
  if block is None:
    return cls()
  block = block.to_dict() if hasattr(block, 'to_dict') else dict(block)
  known = [f.name for f in dataclasses.fields(cls) if f.name not in _DERIVED]
  unknown = sorted(set(block) - set(known))
  if unknown:
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'{where}: unknown key(s) {unknown}{hint}; known: {known}')
  return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in block.items()})


# Set from the model by compose.experiment.build, never by a config.
_DERIVED = ('flops_per_step', 'role_train_bytes')


# ---------------------------------------------------------------------------
# S: sensors


@dataclasses.dataclass(frozen=True)
class Sensors:
  catalog: bool = True              # False: every device has every sensor
  markov_rate: float = 0.0          # stationary fraction of rounds a sensor is off
  markov_burst_rounds: float = 4.0  # mean length of an off burst, in rounds
  addons: tuple = ()                # devices.ADDONS names
  addon_prob: float = 1.0           # chance a client wears each add-on that fits

  def check(self, where='data.sensors'):
    _need(0.0 <= self.markov_rate < 1.0,
          f'{where}.markov_rate must be in [0, 1), got {self.markov_rate}')
    _need(0.0 <= self.addon_prob <= 1.0,
          f'{where}.addon_prob must be in [0, 1], got {self.addon_prob}')
    if self.markov_rate > 0:
      shortest = 1.0 / (1.0 - self.markov_rate)
      _need(self.markov_burst_rounds >= shortest,
            f'{where}.markov_burst_rounds={self.markov_burst_rounds} is shorter than '
            f'{shortest:.3g}, the mean burst of independent draws at markov_rate='
            f'{self.markov_rate}')
      _need(self.window <= _MAX_WINDOW,
            f'{where}.markov_burst_rounds={self.markov_burst_rounds} needs a '
            f'{self.window}-round window (max {_MAX_WINDOW}); use shorter bursts')

  @property
  def markov_probs(self) -> tuple:
    """(P(on -> off), P(off -> on)) per round."""
    off_to_on = 1.0 / self.markov_burst_rounds
    return off_to_on * self.markov_rate / (1.0 - self.markov_rate), off_to_on

  @property
  def window(self) -> int:
    """Rounds of history that fix the chain's state but for MARKOV_EPS."""
    if self.markov_rate <= 0:
      return 1
    a, b = self.markov_probs
    lam = 1.0 - a - b
    if lam <= 0:
      return 1
    return max(1, math.ceil(math.log(MARKOV_EPS) / math.log(lam)))


def markov_off(u, sensors: Sensors):
  """Whether each sensor is off at the last of the rounds of `u` [W, M].

  The chain (on -> off with prob a, off -> on with prob b per round) run
  with common uniforms u_t: next = off iff u_t < (a if on else 1 - b). For
  a + b <= 1, u_t < a turns it off and u_t >= 1 - b turns it on from either
  state, and any u_t in between keeps the state. So the state at round r
  is set by the latest such decisive u_t, a pure function of the uniforms
  of the last W rounds: coupling from the past (Propp & Wilson, 1996). The
  window misses every decisive draw with probability (1 - a - b)^W <=
  MARKOV_EPS; the sensor then reads as on. Consecutive rounds share their
  uniforms, so this is one Markov chain over rounds: stationary off rate
  a / (a + b) = markov_rate, mean off burst 1 / b = markov_burst_rounds.
  """
  a, b = sensors.markov_probs
  low, decisive = u < a, (u < a) | (u >= 1.0 - b)
  w = u.shape[0]
  last = w - 1 - jnp.argmax(decisive[::-1], axis=0)   # latest decisive round
  return jnp.any(decisive, axis=0) & jnp.take_along_axis(low, last[None], axis=0)[0]


def time_uniforms(key, round_idx, window: int, width: int):
  """[window, width] uniforms of rounds round_idx - window + 1 .. round_idx.

  Each round's row depends only on (key, round): windows of consecutive
  rounds overlap in identical rows.
  """
  times = jnp.asarray(round_idx, jnp.int32) - window + 1 + jnp.arange(window)
  return jax.vmap(lambda t: jax.random.uniform(
      jax.random.fold_in(key, t + _TIME_OFFSET), (width,)))(times)


# ---------------------------------------------------------------------------
# H: hardware


@dataclasses.dataclass(frozen=True)
class HardwareKnobs:
  compute_budgets: bool = True     # steps scale with device FLOP/s (else local_steps)
  deadline_s: float = 0.0          # round deadline for local compute; 0: none
  straggler_prob: float = 0.0      # chance a device is slowed in a round
  straggler_slowdown: float = 4.0  # ... by this factor
  availability: bool = False       # battery + time-of-day availability model
  round_hours: float = 0.5         # wall-clock hours between rounds
  day_availability: float = 0.2    # relative availability at the daily peak of use
  min_battery: float = 0.2         # below this charge an unplugged device declines
  recharge_h: float = 2.0          # hours on the charger after a discharge
  memory_limits: bool = False      # a device trains only the trees that fit its RAM
  memory_fraction: float = 0.5     # share of RAM an app may use for training
  model_scale: float = 1.0         # the simulated model stands for one this many
                                   # times costlier: FLOPs per step (deadlines),
                                   # parameters and activations (memory)
  # Filled from the model by compose.experiment.build (see with_model_costs):
  flops_per_step: float = 0.0
  role_train_bytes: tuple = ()     # ((role, bytes to train it), ...)

  def check(self, where='data.hardware'):
    _need(self.deadline_s >= 0, f'{where}.deadline_s must be >= 0, got {self.deadline_s}')
    _need(0.0 <= self.straggler_prob <= 1.0,
          f'{where}.straggler_prob must be in [0, 1], got {self.straggler_prob}')
    _need(self.straggler_slowdown >= 1.0,
          f'{where}.straggler_slowdown must be >= 1, got {self.straggler_slowdown}')
    _need(self.round_hours > 0, f'{where}.round_hours must be > 0')
    _need(self.recharge_h > 0, f'{where}.recharge_h must be > 0')
    for k in ('day_availability', 'min_battery', 'memory_fraction'):
      _need(0.0 <= getattr(self, k) <= 1.0,
            f'{where}.{k} must be in [0, 1], got {getattr(self, k)}')
    _need(self.model_scale > 0, f'{where}.model_scale must be > 0')

  @property
  def may_sit_out(self) -> bool:
    return self.availability or self.deadline_s > 0

  @property
  def per_round(self) -> bool:
    return self.availability or self.straggler_prob > 0


def battery(phase, round_idx, runtime_h, knobs: HardwareKnobs):
  """(charge in [0, 1], on the charger) of a device at a round.

  A usage cycle: the battery drains over `runtime_h` hours of use, then
  charges for `recharge_h`; each client starts at its own `phase` in [0, 1).
  """
  cycle = runtime_h + knobs.recharge_h
  t = jnp.mod(phase + round_idx * knobs.round_hours / cycle, 1.0) * cycle
  charging = t >= runtime_h
  level = jnp.where(charging, (t - runtime_h) / knobs.recharge_h, 1.0 - t / runtime_h)
  return level, charging


def availability_prob(local_hour, level, charging, mains, knobs: HardwareKnobs):
  """Chance a device takes part in a round.

  Devices train when idle, as production FL does (idle, charging, unmetered
  network): availability peaks at 3 am local time and falls to
  `day_availability` at 3 pm; an unplugged device scales it by its charge
  above `min_battery`; mains-powered or charging devices are not limited.
  """
  night = 0.5 * (1.0 + jnp.cos(2 * jnp.pi * (local_hour - 3.0) / 24.0))
  by_time = knobs.day_availability + (1.0 - knobs.day_availability) * night
  spare = jnp.clip((level - knobs.min_battery) / max(1.0 - knobs.min_battery, 1e-6),
                   0.0, 1.0)
  return by_time * jnp.where(mains | charging, 1.0, spare)


def step_budget(local_steps: int, train_flops, compute_tier, knobs: HardwareKnobs):
  """Local steps a device can run this round (int32).

  With a deadline: min(local_steps, floor(deadline / time per step)), time
  per step = model_scale x flops_per_step / train_flops (train_flops already
  divided by any straggler slowdown). Without: local_steps scaled by the
  compute tier, at least 1.
  """
  if knobs.deadline_s > 0:
    if knobs.flops_per_step <= 0:
      raise ConfigError('data.hardware.deadline_s needs the model\'s FLOPs per step; '
                        'build the run with compose.experiment.build')
    time_per_step = knobs.model_scale * knobs.flops_per_step / train_flops
    steps = jnp.floor(knobs.deadline_s / time_per_step)
    return jnp.minimum(local_steps, steps).astype(jnp.int32)
  if not knobs.compute_budgets:
    return jnp.int32(local_steps)
  steps = jnp.round(local_steps * jnp.minimum(compute_tier, 1.0))
  return jnp.clip(steps, 1, local_steps).astype(jnp.int32)


# Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
# Transformer Models"): a transformer layer stores s*b*h*(34 + 5*a*s/h)
# bytes of activations in 16-bit; doubled here for fp32.
def activation_bytes(batch: int, tokens: int, width: int, depth: int, heads: int) -> float:
  return 2.0 * depth * tokens * batch * width * (34 + 5 * heads * tokens / width)


def role_train_bytes(role_bytes: dict, trained_roles, *, optimizer_slots: int,
                     activations: float, head_activations: float) -> tuple:
  """((role, bytes to train it), ...): every weight resident (forward pass),
  plus the role's gradients and optimizer slots, plus stored activations.

  Backpropagating into encoders, prompts, LoRA or the base needs every
  layer's activations; into the task heads only their input features
  (`head_activations`), so a small device may train its heads alone. LoRA
  factors train together: lora_a and lora_b each count both.
  """
  resident = float(sum(role_bytes.values()))
  groups = {'lora_a': ('lora_a', 'lora_b'), 'lora_b': ('lora_a', 'lora_b')}
  out = []
  for role in sorted(trained_roles):
    own = sum(role_bytes.get(r, 0) for r in groups.get(role, (role,)))
    stored = head_activations if role == 'heads' else activations
    out.append((role, resident + own * (1 + optimizer_slots) + stored))
  return tuple(out)


# ---------------------------------------------------------------------------
# I, F, T


@dataclasses.dataclass(frozen=True)
class Interactivity:
  style_drift: float = 0.0   # radians per round the user's style rotates

  def check(self, where='data.interactivity'):
    _need(self.style_drift >= 0, f'{where}.style_drift must be >= 0')


@dataclasses.dataclass(frozen=True)
class Functional:
  arrival_rounds: tuple = ()     # per data.tasks: first round its labels exist
  environment_mix: bool = False  # task chances follow the environment's mix

  def check(self, num_tasks: int, where='data.functional'):
    if self.arrival_rounds:
      _need(len(self.arrival_rounds) == num_tasks,
            f'{where}.arrival_rounds has {len(self.arrival_rounds)} entries for '
            f'{num_tasks} data.tasks')
      _need(all(r >= 0 for r in self.arrival_rounds),
            f'{where}.arrival_rounds must be >= 0, got {self.arrival_rounds}')
      _need(min(self.arrival_rounds) == 0,
            f'{where}.arrival_rounds: at least one task must exist from round 0')


@dataclasses.dataclass(frozen=True)
class Temporal:
  schedule: str = 'none'           # none | linear | cyclic | step
  period_rounds: int = 50          # ramp length / cycle period / step time
  lighting: float = 0.0            # vision dims: contrast x (1 - 0.75 L p), offset -L p
  audio_noise: float = 0.0         # audio noise std x (1 + N p)
  sensor_degradation: float = 0.0  # tracking noise x (1 + D p), offset D p b

  def check(self, where='data.temporal'):
    _need(self.schedule in SCHEDULES,
          f'{where}.schedule={self.schedule!r} is not one of {SCHEDULES}')
    _need(self.period_rounds >= 1, f'{where}.period_rounds must be >= 1')
    _need(0.0 <= self.lighting <= 1.0, f'{where}.lighting must be in [0, 1]')
    for k in ('audio_noise', 'sensor_degradation'):
      _need(getattr(self, k) >= 0, f'{where}.{k} must be >= 0')

  @property
  def active(self) -> bool:
    return self.schedule != 'none' and (
        self.lighting > 0 or self.audio_noise > 0 or self.sensor_degradation > 0)


def drift_progress(round_idx, temporal: Temporal):
  """How far the environment has drifted at a round, in [0, 1]."""
  r = jnp.asarray(round_idx, jnp.float32)
  period = float(temporal.period_rounds)
  if temporal.schedule == 'linear':
    return jnp.minimum(r / period, 1.0)
  if temporal.schedule == 'cyclic':
    return 0.5 * (1.0 - jnp.cos(2 * jnp.pi * r / period))
  if temporal.schedule == 'step':
    return (r >= period).astype(jnp.float32)
  return jnp.float32(0.0)
