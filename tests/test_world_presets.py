"""world v2: Table 8 presets (social, longitudinal, role-specific, cognitive load)."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.data import world

TINY = dict(max_examples=32, min_examples=32, test_examples=4, image_size=8, image_patch=4,
            map_size=4, steps=8, audio_bins=8)
DATASETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'datasets')


def _cohort(spec, ids, round_idx=0, seed=0):
  w = world.make_world(world.world_key(seed), spec)
  fn = jax.jit(jax.vmap(lambda c: world.client_data(w, c, 'train', spec, round_idx)))
  return w, jax.tree.map(np.asarray, fn(jnp.asarray(ids)))


def _latents(w, spec, ids, round_idx=0):
  fn = jax.jit(jax.vmap(lambda c: world.example_latents(w, c, 'train', spec, round_idx)))
  return jax.tree.map(np.asarray, fn(jnp.asarray(ids)))


def test_every_preset_is_a_checked_spec_with_a_card():
  for name, make in world.presets.PRESETS.items():
    spec = world.check_spec(make())
    assert spec == world.presets.preset(name)
    assert os.path.exists(os.path.join(DATASETS, f'world_{name}.md')), name
  assert world.presets.social(group_size=3).group_size == 3


def test_social_label_depends_on_both_users_and_needs_no_communication():
  spec = world.presets.social(**TINY, modalities=('gaze',))
  ids = np.arange(32)
  w, d = _cohort(spec, ids)
  lat = _latents(w, spec, ids)
  mine = lat['attended']
  # The partner's object, from the partner's own latents (what it generates itself).
  partners = np.asarray(world.partner_of(jnp.asarray(ids), spec))
  np.testing.assert_array_equal(partners, ids ^ 1)
  theirs = mine[partners]
  np.testing.assert_array_equal(lat['partner']['attended'], theirs)
  label = d['examples']['y'][:, :, spec.tasks.index('shared_grounding')]
  np.testing.assert_array_equal(label, np.where(mine == theirs, mine, 4))
  # Neither user's object alone fixes the label.
  for a, b in ((mine, theirs), (theirs, mine)):
    same_a = a.ravel()[:, None] == a.ravel()[None, :]
    assert np.any(same_a & (label.ravel()[:, None] != label.ravel()[None, :]))
  # Both attend the focus w.p. q^2, or the same other object w.p. (1 - q)^2 / 3;
  # members of a pair share the label: 512 independent pairs, 4 sigma.
  q = spec.shared_focus
  expected = q ** 2 + (1 - q) ** 2 / 3
  sigma = np.sqrt(expected * (1 - expected) / label.size * 2)
  assert abs(np.mean(label < 4) - expected) < 4 * sigma
  # Co-located: a pair shares its environment, its scene and its objects' places.
  np.testing.assert_array_equal(d['environment'][::2], d['environment'][1::2])
  np.testing.assert_array_equal(lat['lat']['box'][::2], lat['lat']['box'][1::2])
  target = lat['lat']['points'][:, :, 2]          # the attended object's place
  shared = label[::2] < 4
  np.testing.assert_array_equal(target[::2][shared], target[1::2][shared])


# The partner coupling also makes the shared-grounding label (default:
# test_social_label_depends_on_both_users_and_needs_no_communication).
@pytest.mark.slow
def test_social_users_hear_their_partner():
  spec = world.presets.social(**TINY, modalities=('audio', 'gaze'),
                              tasks=('shared_grounding',))
  quiet = dataclasses.replace(spec, partner_coupling=0.0)
  _, loud = _cohort(spec, np.arange(2))
  _, alone = _cohort(quiet, np.arange(2))
  audio = spec.modalities.index('audio')
  heard = loud['examples']['modality_mask'][..., audio]
  assert heard.any()
  assert not np.allclose(loud['examples']['x']['audio'][heard],
                         alone['examples']['x']['audio'][heard])
  np.testing.assert_array_equal(loud['examples']['x']['gaze'], alone['examples']['x']['gaze'])


def test_longitudinal_drift_events_at_their_rounds():
  spec = world.presets.longitudinal(**TINY, modalities=('gaze',))
  w = world.make_world(world.world_key(0), spec)
  profiles = jax.jit(jax.vmap(lambda c: world.client_profile(w, c, spec)))(jnp.arange(256))
  events = np.asarray(profiles['drift_rounds'])
  gaps = np.diff(np.concatenate([np.zeros((256, 1), int), events], 1), axis=1)
  # Geometric gaps of mean 1 / rate (sd ~ mean): 2048 of them, 4 standard errors.
  mean = 1 / spec.drift_rate
  assert abs(gaps.mean() - mean) < 4 * mean / np.sqrt(gaps.size)
  assert gaps.min() >= 1
  client, first = 5, int(events[5, 0])
  fn = jax.jit(lambda r: world.client_data(w, client, 'train', spec, r))
  before, at, after = (jax.tree.map(np.asarray, fn(r)) for r in (first - 1, first, first + 1))
  assert not before['drift_event'] and at['drift_event'] and not after['drift_event']
  assert (before['drift_segment'], at['drift_segment'], after['drift_segment']) == (0, 1, 1)
  # Fixed data between changes, new data (style and priors) at a change.
  np.testing.assert_array_equal(at['examples']['x']['gaze'], after['examples']['x']['gaze'])
  assert not np.array_equal(before['examples']['x']['gaze'], at['examples']['x']['gaze'])
  flags = np.array([bool(fn(r)['drift_event']) for r in range(0, int(events[5, 1]) + 1)])
  np.testing.assert_array_equal(np.flatnonzero(flags), events[5, :2][events[5, :2] >= 0])


def test_roles_condition_what_an_intent_looks_like():
  spec = world.presets.role_specific(**TINY, modalities=('gaze',))
  ids = np.arange(64)
  w, d = _cohort(spec, ids)
  lat = _latents(w, spec, ids)
  roles = d['role']
  assert set(np.unique(roles)) == set(range(spec.roles))
  a = spec.role_strength
  protos = ((1 - a) * np.asarray(w['prototypes']['intent'])[None]
            + a * np.asarray(w['role_prototypes']))                       # [R, K, D]
  codes = lat['codes']['intent']                                          # [C, N, D]
  dist = ((codes[:, :, None] - protos[roles][:, None]) ** 2).sum(-1)
  y = d['examples']['y'][..., spec.tasks.index('intent')]
  np.testing.assert_array_equal(y, dist.argmin(-1))
  # The same behaviour means another intent for another role.
  other = ((codes[:, :, None] - protos[(roles + 1) % spec.roles][:, None]) ** 2).sum(-1)
  assert np.mean(other.argmin(-1) != y) > 0.3


def test_cognitive_load_tracks_micro_pauses_pupil_and_eeg():
  spec = world.presets.cognitive_load(**{**TINY, 'steps': 64}, modalities=('gaze', 'physio'),
                                      noise_std=0.0,
                                      modality_dropout=0.0, devices=('apple_vision_pro',),
                                      sensors=world.presets.longitudinal().sensors)
  ids = np.arange(8)
  w, d = _cohort(spec, ids)
  lat = _latents(w, spec, ids)
  load = lat['lat']['load'].ravel()
  gaze = d['examples']['x']['gaze']                                       # [C, N, T, 3]
  calib, bias = lat['user']['calib'], lat['user']['calib_bias']           # [C, 2, 2], [C, 2]
  pos = 0.5 + np.einsum('cij,cntj->cnti', np.linalg.inv(calib),
                        gaze[..., :2] - bias[:, None, None]) / 4.0
  points = lat['lat']['points']                                           # [C, N, 3, 2]
  away = np.linalg.norm(pos[:, :, :, None] - points[:, :, None], axis=-1).min(-1) > 0.03
  pause = away.mean(-1).ravel()              # share of the window between fixations
  assert np.corrcoef(load, pause)[0, 1] > 0.5
  pupil = gaze[..., 2].mean(-1).ravel()
  assert np.corrcoef(load, pupil)[0, 1] > 0.3
  theta = d['examples']['x']['physio'][..., 1].std(-1).ravel()
  assert np.corrcoef(load, theta)[0, 1] > 0.8
