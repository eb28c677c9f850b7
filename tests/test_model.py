"""The M3T model: tokenization, absent modalities, LoRA, role split."""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import trees
from fedxr_jax.models import m3t
from fedxr_jax.models import signature
from fedxr_jax.models.lora import LoRADense

MODS = {'vision': ((8, 8, 1), (4, 4, 1)), 'motion': ((8, 2), (4, 2))}


def test_tokenize_cuts_blocks_in_row_major_order():
  img = jnp.arange(16.0).reshape(4, 4, 1)
  tokens = m3t.tokenize(img, (2, 2, 1))
  assert tokens.shape == (4, 4)
  np.testing.assert_array_equal(tokens[0], [0, 1, 4, 5])     # top-left patch
  np.testing.assert_array_equal(tokens[3], [10, 11, 14, 15])  # bottom-right
  series = jnp.arange(12.0).reshape(6, 2)
  np.testing.assert_array_equal(m3t.tokenize(series, (3, 2))[1], [6, 7, 8, 9, 10, 11])


def _model_and_params(**kw):
  model = m3t.M3TModel(MODS, {'a': 3, 'b': 2}, width=8, depth=1, num_heads=2,
                       mlp_width=8, num_prompts=2, lora_rank=2, **kw)
  x = {m: jax.random.normal(jax.random.key(i), (5,) + s)
       for i, (m, (s, _)) in enumerate(MODS.items())}
  if kw.get('signature_tokens'):   # a user signature of the two modalities' statistics
    x['signature'] = jnp.zeros((5, signature.width(len(MODS))))
  mask = jnp.ones((5, 2), bool)
  params = model.init(jax.random.key(0), x, mask)['params']
  return model, params, x, mask


def test_absent_modality_content_is_ignored():
  model, params, x, _ = _model_and_params()
  mask = jnp.array([[True, False]] * 5)   # motion sensor missing
  other = dict(x, motion=x['motion'] * 100 + 7)
  out_a = model.apply({'params': params}, x, mask)
  out_b = model.apply({'params': params}, other, mask)
  for t in out_a:
    np.testing.assert_array_equal(out_a[t], out_b[t])
  present = model.apply({'params': params}, other, jnp.ones((5, 2), bool))
  assert not np.allclose(present['a'], out_a['a'])


def test_roles_split_params_into_separate_trees():
  _, params, _, _ = _model_and_params()
  roles = trees.split_by_role(params, m3t.role_of)
  assert set(roles) == {'base', 'lora_a', 'lora_b', 'prompts', 'encoders', 'heads'}
  for role, name in (('lora_a', 'lora_A'), ('lora_b', 'lora_B')):
    leaves = jax.tree_util.tree_leaves_with_path(roles[role])
    assert leaves and all(jax.tree_util.keystr(p).endswith(f"['{name}']") for p, _ in leaves)
  assert set(roles['heads']['heads']) == {'a', 'b'}
  assert set(roles['encoders']['encoders']) == {'vision', 'motion', 'absent'}
  assert trees.merge_roles(*roles.values()) == jax.tree.map(lambda x: x, params)


def test_optional_trees_get_roles_of_their_own():
  _, params, _, _ = _model_and_params(num_user_prompts=1, adapter_dim=4, num_experts=3,
                                      lora_residual=True, library_size=2, signature_tokens=1)
  roles = trees.split_by_role(params, m3t.role_of)
  assert set(roles) == set(m3t.ROLES)
  assert roles['experts']['backbone']['block_0']['moe']['w_in'].shape == (3, 8, 8)
  assert 'mlp_in' not in roles['base']['backbone']['block_0']   # MoE replaces the MLP
  assert set(roles['adapters']['backbone']['block_0']) == {'adapter_attn', 'adapter_mlp'}


def test_adapters_and_user_prompts_start_as_identity_and_moe_routes_top_k():
  model, params, x, mask = _model_and_params(adapter_dim=4)
  plain_model, plain_params, _, _ = _model_and_params()
  # Zero-initialised up-projections: with the same base, adapters change nothing.
  shared = {k: v for k, v in params.items()}
  out = model.apply({'params': shared}, x, mask)
  ref = plain_model.apply({'params': plain_params}, x, mask)
  for t in out:
    np.testing.assert_allclose(out[t], ref[t], rtol=1e-5, atol=1e-6)
  moe, moe_params, _, _ = _model_and_params(num_experts=4, expert_top_k=2)
  _, state = moe.apply({'params': moe_params}, x, mask, mutable=['intermediates'])
  routed = state['intermediates']['backbone']['block_0']['moe']['expert_tokens'][0]
  num_tokens = 1 + 2 + 4 + 2   # CLS + prompts + 4 vision patches + 2 motion windows
  np.testing.assert_array_equal(np.sum(routed, -1), 2 * num_tokens)   # top-2 per token


def test_lora_starts_as_the_base_layer_and_adds_scaled_low_rank_update():
  x = jax.random.normal(jax.random.key(1), (3, 6))
  layer = LoRADense(4, rank=2, alpha=4.0)
  p = layer.init(jax.random.key(0), x)['params']
  plain = x @ p['dense']['kernel'] + p['dense']['bias']
  np.testing.assert_allclose(layer.apply({'params': p}, x), plain, rtol=1e-6)
  p = jax.tree.map(lambda v: v, p)
  p['lora_B'] = jnp.ones((2, 4))
  assert p['lora_A'].shape == (2, 6)   # [rank, in]: rank leads in both factors
  expected = plain + (4.0 / 2) * (x @ p['lora_A'].T) @ p['lora_B']
  np.testing.assert_allclose(layer.apply({'params': p}, x), expected, rtol=1e-5)
