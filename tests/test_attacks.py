"""Attacks: the malicious set, model and data poisoning, omniscient ALIE / IPM."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.aggregators import median
from fedxr_jax.aggregators import omniscient
from fedxr_jax.aggregators import trimmed_mean
from fedxr_jax.attacks import malicious
from fedxr_jax.attacks import poisoning
from fedxr_jax.core import aggregation
from fedxr_jax.core import transforms
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms import gaussian_attack
from fedxr_jax.transforms import scaled_replacement
from fedxr_jax.transforms import sign_flip

KEY = jax.random.key(7)


def test_malicious_fraction_is_exact_and_seeded():
  mask = np.asarray(malicious.malicious_mask(KEY, 1000, 0.2))
  assert mask.sum() == 200
  other = np.asarray(malicious.malicious_mask(jax.random.key(8), 1000, 0.2))
  assert other.sum() == 200 and (mask != other).any()
  assert malicious.num_malicious(10, 0.25) == 3     # 2.5 rounds up
  assert malicious.num_malicious(10, 0.04) == 0
  source = malicious.source_arrays(KEY, 0.2, 1000)
  is_bad = jax.jit(jax.vmap(lambda c: malicious.flag(source, c, 1000)))
  np.testing.assert_array_equal(is_bad(jnp.arange(1003)), np.append(mask, [False] * 3))
  assert bool(malicious.malicious(KEY, int(np.argmax(mask)), 0.2, 1000))
  with pytest.raises(ConfigError, match='attack.fraction'):
    malicious.source_arrays(KEY, 1.5, 10)


def info(cid):
  # Client 1 is the attacker (`malicious.mark` says so in its data).
  return transforms.ClientInfo(client_id=jnp.int32(cid), start={}, trained={},
                               data={'malicious': jnp.asarray(cid == 1)})


def apply(t, update, cid, key=KEY):
  weights = {r: jnp.ones(()) for r in update}
  out, _, w, stats = jax.jit(t.update)(update, t.init(update), key, weights, info(cid))
  return out, w, stats


UPDATE = {'a': {'w': jnp.array([1.0, -2.0])}, 'b': jnp.array([0.5])}


def test_model_poisoning_transforms_act_only_on_attackers():
  for t, fn, name in [(sign_flip.sign_flip(scale=3.0), lambda u: -3 * u, 'sign_flip'),
                      (scaled_replacement.scaled_replacement(gamma=10.0),
                       lambda u: 10 * u, 'scaled_replacement')]:
    honest, _, stats = apply(t, UPDATE, 0)
    jax.tree.map(np.testing.assert_array_equal, honest, UPDATE)
    assert stats[f'attack/{name}/clients'] == 0.0
    bad, _, stats = apply(t, UPDATE, 1)
    jax.tree.map(lambda x, u: np.testing.assert_allclose(x, fn(u)), bad, UPDATE)
    assert stats[f'attack/{name}/clients'] == 1.0


def test_gaussian_attack_sends_noise_of_sigma():
  t = gaussian_attack.gaussian_attack(sigma=0.5)
  big = {'a': jnp.full((20000,), 3.0)}
  honest, _, _ = apply(t, big, 0)
  np.testing.assert_array_equal(honest['a'], big['a'])
  noise, _, _ = apply(t, big, 1)
  # 20000 draws: the sample std has standard error 0.5 / sqrt(40000) = 0.0025; 4 SE.
  assert abs(float(jnp.std(noise['a'])) - 0.5) < 0.01
  assert abs(float(jnp.mean(noise['a']))) < 4 * 0.5 / math.sqrt(20000)


def omni_stack():
  # Clients 3 and 4 are malicious. Module 'a' is held by everyone; module 'b' by
  # clients 0, 1 (honest) and 3 (malicious), not by 2 or 4.
  a = jnp.array([[1.0, 0.0], [2.0, 4.0], [3.0, 8.0], [50.0, 50.0], [60.0, 60.0]])
  b = jnp.array([[2.0], [4.0], [99.0], [70.0], [80.0]])
  start = {'a': jnp.full((2,), 10.0), 'b': jnp.full((1,), 10.0)}
  update = {'a': a, 'b': b}
  model = jax.tree.map(lambda u, s: u + s, update, start)
  weights = {'a': jnp.ones(5), 'b': jnp.array([1.0, 1.0, 0.0, 1.0, 0.0])}
  # What `malicious.report` puts in each upload's stats.
  return aggregation.ClientUpdate(model=model, update=update, weights=weights,
                                  client_id=jnp.arange(5, dtype=jnp.int32),
                                  stats={'malicious': (jnp.arange(5) >= 3).astype(
                                      jnp.float32)}), start


OMNI_BAD = lambda cid: cid >= 3


def test_alie_z_and_crafted_updates():
  # n = 5, f = 2: s = floor(5/2 + 1) - 2 = 1, z = Phi^-1(4/5) = 0.8416212.
  np.testing.assert_allclose(omniscient.alie_z(5, 2), 0.8416212, rtol=1e-6)
  stacked, start = omni_stack()
  forged, f = jax.jit(lambda s: omniscient.forge(s, omniscient.alie(), OMNI_BAD(s.client_id)))(
      stacked)
  assert int(f) == 2
  z = 0.8416212
  # a: honest (0-2) mean [2, 4], population std [sqrt(2/3), sqrt(32/3)].
  fake_a = np.array([2.0, 4.0]) - z * np.sqrt([2 / 3, 32 / 3])
  np.testing.assert_allclose(forged.update['a'][3], fake_a, rtol=1e-5)
  np.testing.assert_allclose(forged.update['a'][4], fake_a, rtol=1e-5)
  np.testing.assert_allclose(forged.model['a'][3], fake_a + 10.0, rtol=1e-5)
  np.testing.assert_array_equal(forged.update['a'][:3], stacked.update['a'][:3])
  # b: honest holders 0 and 1 only (mean 3, std 1); client 4 does not hold b: untouched.
  np.testing.assert_allclose(forged.update['b'][3], [3.0 - z], rtol=1e-5)
  np.testing.assert_array_equal(forged.update['b'][4], [80.0])


def test_ipm_through_the_stacked_mean_and_the_streamed_mean():
  stacked, start = omni_stack()
  shared = start
  for inner in (aggregation.stacked_weighted_mean(), aggregation.weighted_mean()):
    agg = omniscient.with_attack(inner, omniscient.ipm(epsilon=0.5))
    assert agg.stacked and agg.name == f'{inner.name}+ipm'
    target, _, metrics = jax.jit(agg.aggregate)(shared, {}, stacked, KEY)
    # a: attackers send -0.5 * [2, 4]; mean of the five models.
    fake = -0.5 * np.array([2.0, 4.0])
    expect_a = 10.0 + (np.array([1 + 2 + 3, 0 + 4 + 8]) + 2 * fake) / 5
    np.testing.assert_allclose(target['a'], expect_a, rtol=1e-6)
    # b: holders 0, 1, 3; attacker 3 sends -0.5 * 3.
    np.testing.assert_allclose(target['b'], [10.0 + (2 + 4 - 1.5) / 3], rtol=1e-6)
    assert metrics['attack/ipm/clients'] == 2.0


def test_alie_with_fixed_z_through_the_median():
  stacked, start = omni_stack()
  agg = omniscient.with_attack(median.median(), omniscient.alie(z=1.0))
  target, _, _ = jax.jit(agg.aggregate)(start, {}, stacked, KEY)
  # a, coordinate 0: {1, 2, 3, m, m} with m = 2 - sqrt(2/3) = 1.18: the median is m.
  # b: holders {2, 4, 3 - 1}: the median is 2.
  np.testing.assert_allclose(target['a'][0], 12.0 - math.sqrt(2 / 3), rtol=1e-6)
  np.testing.assert_allclose(target['b'], [12.0], rtol=1e-6)


def tiny_problem(num_examples=6):
  """Client data in the XR layout: vision [N, 4, 4, 1], audio [N, 3], two tasks;
  client 1 is the attacker (as `malicious.mark` says)."""

  def client_data(source, client_id, split, round_idx=0):
    del source, round_idx
    n = jnp.arange(num_examples)
    vision = jnp.broadcast_to((n + 10 * client_id).astype(jnp.float32)[:, None, None, None],
                              (num_examples, 4, 4, 1))
    y = jnp.stack([n % 3, (n + 1) % 4], axis=1).astype(jnp.int32)
    if split == 'test':
      y = (y + 1) % jnp.array([3, 4])
    has_vision = n != 2
    return {'examples': {'x': {'vision': vision, 'audio': jnp.ones((num_examples, 3))},
                         'y': y, 'example_mask': n < num_examples - 1,
                         'modality_mask': jnp.stack([has_vision, n >= 0], axis=1)},
            'num_examples': jnp.int32(num_examples - 1), 'task_mask': jnp.array([True, True]),
            'malicious': jnp.asarray(client_id == 1)}

  def predict(params, batch, meta):
    # Says class 2 of task 'gesture' when the trigger is on and the example index is even.
    x = batch['x']['vision']
    on = (x[:, -1, -1, 0] == 9.0) & (x[:, 0, 0, 0] % 2 == 0)
    logits = jnp.where(on[:, None], jnp.array([0.0, 0.0, 5.0]), jnp.array([5.0, 0.0, 0.0]))
    return {'gesture': logits, 'scene': jnp.zeros((x.shape[0], 4))}

  return FederatedProblem(init_params=None, loss=None, client_data=client_data,
                          module_weights=None, eval_stats=lambda p, d: {'count': jnp.ones(2)},
                          predict=predict)


def test_label_flip_changes_exactly_the_attackers_training_labels():
  problem = tiny_problem()
  flipped = poisoning.label_flip(problem, num_classes=[3, 4])
  for cid in (0, 1):
    for split in ('train', 'test'):
      before = problem.client_data(SOURCE, cid, split)['examples']['y']
      after = jax.jit(lambda c: flipped.client_data(SOURCE, c, split)['examples']['y'])(cid)
      if cid == 1 and split == 'train':
        expect = np.array(before)
        expect[:5] = np.array([2, 3]) - expect[:5]   # K - 1 - y on the 5 valid examples
        np.testing.assert_array_equal(after, expect)
      else:
        np.testing.assert_array_equal(after, before)
  perm = poisoning.label_flip(problem, [3, 4], permutations=[[1, 2, 0], [0, 1, 2, 3]])
  y = perm.client_data(SOURCE, 1, 'train')['examples']['y']
  np.testing.assert_array_equal(y[:5, 0], [1, 2, 0, 1, 2])     # labels 0, 1, 2, 0, 1 mapped
  with pytest.raises(ConfigError, match='permutation'):
    poisoning.label_flip(problem, [3, 4], permutations=[[0, 0, 1], [0, 1, 2, 3]])


# The run's source holds the backdoor's key data (`attacks.feature.source_arrays`).
SOURCE = {poisoning.KEY: jax.random.key_data(KEY)}
TRIG = poisoning.trigger(['vision', 'audio'], ['gesture', 'scene'], [3, 4], modality='vision',
                         task='gesture', target=2, size=2, value=9.0, fraction=1.0)


def test_backdoor_stamps_and_relabels_only_the_attackers_eligible_examples():
  problem = tiny_problem()
  poisoned = poisoning.backdoor(problem, TRIG)
  honest = jax.jit(lambda: poisoned.client_data(SOURCE, 0, 'train'))()
  jax.tree.map(np.testing.assert_array_equal, honest, problem.client_data(SOURCE, 0, 'train'))
  clean = problem.client_data(SOURCE, 1, 'train')['examples']
  bad = poisoned.client_data(SOURCE, 1, 'train')['examples']
  # Eligible: valid (0-4) with vision (not 2): examples 0, 1, 3, 4.
  hit = np.array([True, True, False, True, True, False])
  v, v0 = np.asarray(bad['x']['vision']), np.asarray(clean['x']['vision'])
  np.testing.assert_array_equal(v[hit][:, 2:, 2:], 9.0)
  np.testing.assert_array_equal(v[hit][:, :2, :], v0[hit][:, :2, :])
  np.testing.assert_array_equal(v[~hit], v0[~hit])
  np.testing.assert_array_equal(bad['y'][:, 0], np.where(hit, 2, clean['y'][:, 0]))
  np.testing.assert_array_equal(bad['y'][:, 1], clean['y'][:, 1])
  np.testing.assert_array_equal(bad['x']['audio'], clean['x']['audio'])
  test = poisoned.client_data(SOURCE, 1, 'test')
  jax.tree.map(np.testing.assert_array_equal, test, problem.client_data(SOURCE, 1, 'test'))


def test_backdoor_fraction_poisons_a_subset():
  half = poisoning.trigger(['vision'], ['gesture'], [3], target=2, size=1, fraction=0.5)
  problem = tiny_problem(num_examples=2001)
  x = poisoning.backdoor(problem, half).client_data(SOURCE, 1, 'train')['examples']
  stamped = np.asarray(x['x']['vision'][:, -1, -1, 0] == half.value)
  # 1999 eligible examples, Bernoulli(0.5): 4 standard errors is 4 * sqrt(1999) / 2 = 89.
  assert abs(stamped.sum() - 1999 / 2) < 90
  assert not stamped[2] and not stamped[-1]       # no vision; padding


def test_backdoor_success_rate():
  problem = tiny_problem()
  poisoned = poisoning.backdoor(problem, TRIG)
  data = problem.client_data(SOURCE, 0, 'test')
  stats = jax.jit(poisoned.eval_stats)({}, data)
  assert 'count' in stats                       # the problem's own stats are kept
  # Test labels of gesture: (n % 3 + 1) % 3 = 1, 2, 0, 1, 2, 0. Eligible (valid n < 5,
  # vision n != 2, label != 2): examples 0 and 3. The model hits even indices: only 0.
  assert float(stats['attack/backdoor_count']) == 2.0
  assert float(stats['attack/backdoor_hits']) == 1.0
  np.testing.assert_allclose(poisoning.success_rate(stats), 0.5)
  trig = poisoning.triggered(data, TRIG)['examples']
  np.testing.assert_array_equal(trig['y'], data['examples']['y'])
  with pytest.raises(ConfigError, match='target'):
    poisoning.trigger(['vision'], ['gesture'], [3], target=3)


def test_sign_flippers_break_the_mean_but_not_the_median_or_trimmed_mean():
  """Linear regression, 20 clients, 4 of them (20%) send -10 x their update."""
  dim, clients, n = 5, 20, 32
  key = jax.random.key(0)
  w_star = jax.random.normal(jax.random.fold_in(key, 0), (dim,))
  x = jax.random.normal(jax.random.fold_in(key, 1), (clients, n, dim))
  y = x @ w_star + 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (clients, n))
  source = malicious.source_arrays(jax.random.fold_in(key, 3), 0.2, clients)
  is_bad = lambda c: malicious.flag(source, c, clients)
  attack = sign_flip.sign_flip(scale=10.0)

  def client(w, xi, yi, cid):
    grad = jax.grad(lambda v: jnp.mean((xi @ v - yi) ** 2))(w['w'])
    update = {'w': -0.1 * grad}
    bad_info = info(cid)._replace(data={'malicious': is_bad(cid)})
    out, _, weights, _ = attack.update(update, (), KEY, {'w': jnp.float32(n)}, bad_info)
    return aggregation.ClientUpdate(model={'w': w['w'] + out['w']}, update=out,
                                    weights=weights, client_id=cid)

  def train(agg):
    @jax.jit
    def step(w, _):
      stacked = jax.vmap(client, in_axes=(None, 0, 0, 0))(w, x, y, jnp.arange(clients))
      return agg.aggregate(w, {}, stacked, KEY)[0], None
    w, _ = jax.lax.scan(step, {'w': jnp.zeros(dim)}, None, length=40)
    return float(jnp.linalg.norm(w['w'] - w_star))

  start = float(jnp.linalg.norm(w_star))
  assert int(jnp.sum(jax.vmap(is_bad)(jnp.arange(clients)))) == 4
  assert train(aggregation.stacked_weighted_mean()) > 10 * start    # diverges
  assert train(median.median()) < 0.1 * start
  assert train(trimmed_mean.trimmed_mean(beta=0.2)) < 0.1 * start
