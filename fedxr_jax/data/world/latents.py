"""Per-example latents of a primitives world: codes, classes, load, scanpath, scene.

One uniform draw per client and split (per drift segment) gives every
example's latents; a co-located group's context (scene, object, candidate
objects, focus) comes from the group's key, so each member recomputes it and
its partner's latents from ids alone. Labels are functions of the latents:
a class is the nearest world prototype of its code.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.data import synthetic
from fedxr_jax.data.world import primitives as P
from fedxr_jax.data.world import render
from fedxr_jax.data.world.clients import PERSONAL
from fedxr_jax.data.world.clients import client_profile
from fedxr_jax.data.world.clients import dirichlet
from fedxr_jax.data.world.clients import drift_segment
from fedxr_jax.data.world.clients import group_of
from fedxr_jax.data.world.clients import inverse_cdf
from fedxr_jax.data.world.clients import partner_of
from fedxr_jax.data.world.clients import user_state
from fedxr_jax.data.world.spec import WorldSpec
from fedxr_jax.data.world.worlds import client_key
from fedxr_jax.data.world.worlds import group_key
from fedxr_jax.data.world.worlds import num_classes

SPLITS = synthetic.SPLITS
_ndtri = jax.scipy.special.ndtri


_CONTEXT_SIZES = {'context_class': len(P.CONTEXT_BLOCKS),
                  'context_code': sum(P.BLOCK_DIMS[b] for b in P.CONTEXT_BLOCKS),
                  'box': 4, 'focus': 1, 'jitter': 2 * P.NUM_OBJECTS}


def _uniforms(key, size, sizes: dict) -> dict:
  u = jax.random.uniform(key, (size, sum(sizes.values())), minval=1e-7, maxval=1 - 1e-7)
  out, start = {}, 0
  for name, width in sizes.items():
    out[name] = u[:, start:start + width]
    start += width
  return out


def _codes(blocks, u_class, u_code, priors):
  """Classes ~ priors and within-class code noise [N, D] of each block."""
  eps = _ndtri(u_code)
  z, classes, start = {}, {}, 0
  for i, b in enumerate(blocks):
    classes[b] = inverse_cdf(priors[i, :num_classes(b)], u_class[:, i])
    z[b] = eps[:, start:start + P.BLOCK_DIMS[b]]
    start += P.BLOCK_DIMS[b]
  return z, classes


def _personal_draws(world, client_id, split, segment, size, priors, spec):
  """Per-example latents [N, ...] of a client (no partner, no render); without
  groups also the context's uniforms (one draw)."""
  key = jax.random.fold_in(jax.random.fold_in(client_key(world, client_id),
                                              SPLITS[split]), segment)
  sizes = {'class': len(PERSONAL), 'code': sum(P.BLOCK_DIMS[b] for b in PERSONAL),
           'load': 1, 'onsets': 2, 'distractor': 2, 'phase': 5,
           'dropout': len(spec.modalities), 'attend': 2, 'noise': 3}
  if spec.group_size == 1:
    sizes.update(_CONTEXT_SIZES)
  u = _uniforms(key, size, sizes)
  z, classes = _codes(PERSONAL, u['class'], u['code'], priors)
  return {'z': z, 'class': classes, 'load_eps': _ndtri(u['load'][:, 0]),
          'onsets': jnp.stack([0.08 + 0.15 * u['onsets'][:, 0],
                               0.2 + 0.12 * u['onsets'][:, 1]], -1),
          'distractor': 0.15 + 0.7 * u['distractor'], 'phase': u['phase'],
          'dropout': u['dropout'], 'attend': u['attend'], 'noise': u['noise'], 'uniforms': u}


def _context(u, priors):
  """Per-example latents shared by a group: the scene, the object, the focus."""
  size = u['box'].shape[0]
  z, classes = _codes(P.CONTEXT_BLOCKS, u['context_class'], u['context_code'], priors)
  b = u['box']
  return {'z': z, 'class': classes,
          'box_center': 0.25 + 0.5 * b[:, :2], 'box_width': 0.15 + 0.2 * b[:, 2],
          'obj_depth_u': b[:, 3],
          'focus': jnp.floor(u['focus'][:, 0] * P.NUM_OBJECTS).astype(jnp.int32),
          'candidates': P.CORNERS + 0.05 * _ndtri(u['jitter']).reshape(size, P.NUM_OBJECTS, 2)}


def _group_context(world, group, split, size, spec):
  """A co-located group's context, from the group's key (any member recomputes it)."""
  gk = jax.random.fold_in(group_key(world, group), SPLITS[split])
  k_u, k_g = jax.random.split(gk)
  priors = dirichlet(k_g, spec.dirichlet_alpha, [num_classes(b) for b in P.CONTEXT_BLOCKS])
  return _context(_uniforms(k_u, size, _CONTEXT_SIZES), priors)


def _intent_prototypes(world, role, spec):
  base = world['prototypes']['intent']
  if not spec.roles:
    return base
  a = spec.role_strength
  return (1.0 - a) * base + a * world['role_prototypes'][role]


def _nearest(z, protos):
  """Index of the nearest prototype [N] of codes z [N, D]."""
  d2 = render.sum_terms([(z[:, None, i] - protos[None, :, i]) ** 2
                        for i in range(z.shape[1])])
  return jnp.argmin(d2, -1).astype(jnp.int32)


def _attended(personal, context, spec):
  """Object each example's user attends: the focus with prob shared_focus."""
  a = personal['attend']
  other = (context['focus'] + 1 + jnp.floor(a[:, 1] * (P.NUM_OBJECTS - 1)).astype(jnp.int32))
  return jnp.where(a[:, 0] < spec.shared_focus, context['focus'], other % P.NUM_OBJECTS)


def _person(world, client_id, split, round_idx, spec, size, context=None):
  """A user's latents [N, ...]: codes, classes, load, scanpath, voice (no partner).

  context: the group's (social); None: the user's own, from its draws.
  """
  profile = client_profile(world, client_id, spec)
  segment = drift_segment(profile, round_idx, spec)
  user, priors = user_state(world, client_id, profile, round_idx, spec)
  d = _personal_draws(world, client_id, split, segment, size, priors, spec)
  if context is None:
    context = _context(d['uniforms'], priors[len(PERSONAL):])
  protos = dict(world['prototypes'])
  protos['intent'] = _intent_prototypes(world, profile['role'], spec)
  codes = {b: protos[b][d['class'][b]] + d['z'][b] for b in PERSONAL}
  codes.update({b: world['prototypes'][b][context['class'][b]] + context['z'][b]
                for b in P.CONTEXT_BLOCKS})
  attended = None
  if spec.group_size > 1:   # a user names the object it attends
    attended = _attended(d, context, spec)
    codes['keyword'] = world['object_names'][attended]
  u = {b: P.expressed(codes[b], user['gain'][b], user['offset'][b]) for b in PERSONAL}
  u.update({b: jnp.tanh(codes[b] / P.SQUASH) for b in P.CONTEXT_BLOCKS})
  labels = {b: _nearest(codes[b], protos[b]) for b, _ in P.BLOCKS}
  load = jax.nn.sigmoid(user['load_mean'] + 1.2 * d['load_eps'])
  if attended is None:
    target = 0.5 + 0.35 * u['intent'][:, :2]
  else:
    target = jnp.take_along_axis(context['candidates'], attended[:, None, None], 1)[:, 0]
  aspect = 2.0 ** (0.7 * u['object'][:, 1])
  box = jnp.stack([context['box_center'][:, 0], context['box_center'][:, 1],
                   context['box_width'],
                   jnp.clip(context['box_width'] * aspect, 0.1, 0.5)], -1)
  back = 2.5 * 2.0 ** (1.2 * u['scene'][:, 0])
  lat = {'u': u, 'load': load, 'box': box,
         'obj_depth': 0.8 + context['obj_depth_u'] * (0.8 * jnp.minimum(back, 4.0) - 0.8),
         'points': jnp.stack([d['distractor'], box[:, :2], target], 1),
         'onsets': d['onsets'], 'phase': d['phase']}
  return {'profile': profile, 'user': user, 'draws': d, 'codes': codes, 'labels': labels,
          'lat': lat, 'attended': attended, 'segment': segment, 'context': context}


def example_latents(world: dict, client_id, split: str, spec: WorldSpec,
                    round_idx=0) -> dict:
  """Everything a client's examples are rendered from (tests, analysis).

  {'profile', 'user', 'codes': {block: [N, D]}, 'labels': {block: [N]},
  'lat': per-example primitives, 'attended' (social), 'partner' (social),
  'segment', 'draws', 'context'}.
  """
  size = spec.max_examples if split == 'train' else spec.test_examples
  if spec.group_size == 1:
    return _person(world, client_id, split, round_idx, spec, size)
  context = _group_context(world, group_of(client_id, spec), split, size, spec)
  me = _person(world, client_id, split, round_idx, spec, size, context)
  me['partner'] = _person(world, partner_of(client_id, spec), split, round_idx, spec,
                          size, context)
  return me
