"""Membership inference: exact ROC metrics, loss and LiRA attacks, reference models."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from fedxr_jax.core import local as local_lib
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import membership


def test_auc_of_perfectly_separated_scores_is_one_and_reversed_is_zero():
  assert membership.roc_auc(jnp.array([3.0, 4.0]), jnp.array([1.0, 2.0])) == 1.0
  assert membership.roc_auc(jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0])) == 0.0


def test_auc_hand_computed_with_ties():
  # Pairs won: 0.1 -> 0; 0.4 -> 1 + 1/2 (tie with 0.4); 0.35 -> 1; 0.8 -> 3: 5.5 / 12.
  auc = membership.roc_auc(jnp.array([0.1, 0.4, 0.35, 0.8]), jnp.array([0.2, 0.4, 0.6]))
  assert auc == 5.5 / 12
  assert membership.roc_auc(jnp.ones(5), jnp.ones(7)) == 0.5


def test_auc_of_identical_distributions_is_one_half():
  # 4000 x 4000 draws of one distribution: s.e. of the AUC is ~0.0065.
  k1, k2 = jax.random.split(jax.random.key(0))
  auc = membership.roc_auc(jax.random.normal(k1, (4000,)), jax.random.normal(k2, (4000,)))
  assert abs(auc - 0.5) < 0.02


def test_tpr_at_fpr_uses_the_strictest_allowed_threshold():
  neg = jnp.arange(100.0)                      # 1% FPR allows one false positive: t = 98
  pos = jnp.array([98.0, 98.5, 99.0, 150.0, 10.0])
  assert membership.tpr_at_fpr(pos, neg, 0.01) == pytest.approx(3 / 5)
  # 0.1% of 100 allows none: t = 99, the largest non-member.
  assert membership.tpr_at_fpr(pos, neg, 0.001) == pytest.approx(1 / 5)
  metrics = membership.attack_metrics(pos, neg)
  assert set(metrics) == {'auc', 'tpr@1%fpr', 'tpr@0.1%fpr'}


def _losses_from_logits(phi):
  """Losses whose logit-scaled confidence is phi: p = sigmoid(phi), loss = -log p."""
  return jax.nn.softplus(-phi)


def test_logit_confidence_inverts_sigmoid_confidence():
  phi = jnp.array([-5.0, -0.3, 0.0, 2.0, 9.0])
  np.testing.assert_allclose(membership.logit_confidence(_losses_from_logits(phi)), phi,
                             rtol=1e-4, atol=1e-4)


def test_lira_beats_a_global_threshold_where_examples_differ_in_difficulty():
  # Example n's confidence is N(mu_n, 1) when OUT and N(mu_n + 2, 1) when IN,
  # with mu_n ~ N(0, 3^2). Calibrated per example, LiRA separates IN from OUT
  # at AUC = Phi(2 / sqrt(2)) = 0.921; a global loss threshold only at
  # Phi(2 / sqrt(2 (1 + 9))) = 0.673. 1000 + 1000 examples: AUC s.e. ~0.007.
  n, k, d = 2000, 64, 2.0

  @jax.jit
  def scores(key):
    keys = jax.random.split(key, 4)
    mu = 3.0 * jax.random.normal(keys[0], (n,))
    inside = membership.random_halves(keys[1], k, n)
    ref = _losses_from_logits(mu + d * inside + jax.random.normal(keys[2], (k, n)))
    target = _losses_from_logits(mu + d * (jnp.arange(n) < n // 2)
                                 + jax.random.normal(keys[3], (n,)))
    return (membership.lira_score(target, ref, inside),
            membership.lira_score(target, ref, inside, online=False),
            membership.lira_score(target, ref, inside, global_variance=True),
            membership.loss_score(target))

  member = np.arange(n) < n // 2
  *lira, loss = (np.asarray(s) for s in scores(jax.random.key(1)))
  ideal = stats.norm.cdf(d / np.sqrt(2))
  for s in lira:
    assert abs(membership.roc_auc(s[member], s[~member]) - ideal) < 0.035
  loss_ideal = stats.norm.cdf(d / np.sqrt(2 * (1 + 9)))
  assert abs(membership.roc_auc(loss[member], loss[~member]) - loss_ideal) < 0.035


def test_random_halves_put_each_example_in_exactly_half_the_models():
  inside = membership.random_halves(jax.random.key(2), 6, 50)
  np.testing.assert_array_equal(np.sum(inside, 0), np.full(50, 3))
  with pytest.raises(ConfigError, match='must be even'):
    membership.random_halves(jax.random.key(2), 3, 50)


N = 16


def _memorizing_problem():
  """One parameter per example: training moves only the examples it sees."""

  def loss(params, batch, meta):
    del meta
    w = params['table']['w'][batch['id']]
    return jnp.mean(jnp.square(w - batch['y'])), {}

  def client_data(source, client_id, split, round_idx=0):
    del client_id, split, round_idx
    return {'examples': {'id': jnp.arange(N), 'y': source}, 'num_examples': jnp.int32(N)}

  return FederatedProblem(init_params=lambda key: {'table': {'w': jnp.zeros(N)}}, loss=loss,
                          client_data=client_data, module_weights=lambda data, s=None: {},
                          eval_stats=lambda p, d: {})


def test_reference_models_train_only_on_their_half_and_lira_then_finds_members():
  problem = _memorizing_problem()
  y = 1.0 + jnp.arange(N) / N
  pool = problem.client_data(y, 0, 'train')
  local_update = local_lib.make_local_update(problem.loss, optax.sgd(0.5), local_steps=40,
                                             batch_size=4)
  params = problem.init_params(jax.random.key(0))
  run = jax.jit(lambda key: membership.reference_losses(
      problem, local_update, params, {}, pool, key, num_models=8))
  ref = run(jax.random.key(3))
  assert ref.losses.shape == (8, N) and ref.member.shape == (8, N)
  untouched = np.broadcast_to(np.asarray(jnp.square(y)), (8, N))
  out = ~np.asarray(ref.member)
  # An example outside a model's half is never seen: its loss stays y^2 exactly.
  np.testing.assert_array_equal(np.asarray(ref.losses)[out], untouched[out])
  assert np.all(np.asarray(ref.losses)[~out] < 0.01 * untouched[~out])
  # A target trained on the first half: LiRA with these references separates perfectly.
  member = jnp.arange(N) < N // 2
  trained, _ = jax.jit(local_update)(params, {}, membership.subset_data(pool, member),
                                     jax.random.key(4))
  target = jax.jit(membership.example_losses, static_argnums=0)(problem, trained, pool)
  s = np.asarray(jax.jit(membership.lira_score)(target, ref.losses, ref.member))
  member = np.asarray(member)
  assert membership.roc_auc(s[member], s[~member]) == 1.0


def test_subset_data_moves_kept_examples_first():
  data = {'examples': {'x': jnp.arange(6.0), 'example_mask': jnp.arange(6) < 5},
          'num_examples': jnp.int32(5), 'task': 3}
  out = membership.subset_data(data, jnp.array([False, True, False, True, True, True]))
  # Example 5 is padding: never kept, even when asked.
  assert int(out['num_examples']) == 3 and out['task'] == 3
  np.testing.assert_array_equal(out['examples']['x'][:3], [1.0, 3.0, 4.0])
  np.testing.assert_array_equal(out['examples']['example_mask'], [1, 1, 1, 0, 0, 0])
