"""Model storage footprint per device class (Table 6), at three storage formats.

A device stores every module it holds and runs: the frozen base, the shared
trees it trains or uses, and its user's personal trees; modules it lacks
(the encoders of sensors it does not have) are not stored. Bytes per weight:
  float32   4
  bfloat16  2
  int8      1, plus one float32 scale per tensor (symmetric per-tensor
            quantization: w ~ scale x q); integer leaves keep their own size.
Modules are named by paths into {role: tree}: 'base' (a whole role tree),
'encoders/encoders/vision' (one subtree); overlapping names count once.
"""
from typing import Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import catalog
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import stats as stats_lib

BYTES_PER_WEIGHT = {'float32': 4, 'bfloat16': 2, 'int8': 1}
INT8_SCALE_BYTES = 4


def _segment(k) -> str:
  for attr in ('key', 'idx', 'name'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaves(trees: Mapping) -> dict:
  """{'role/a/b': leaf} of a {role: tree} of arrays or jax.ShapeDtypeStruct."""
  flat, _ = jax.tree_util.tree_flatten_with_path(dict(trees))
  return {'/'.join(_segment(k) for k in path): leaf for path, leaf in flat}


def leaf_bytes(leaf, dtype: str) -> int:
  if dtype not in BYTES_PER_WEIGHT:
    raise ConfigError(f'unknown storage dtype {dtype!r}; known: {list(BYTES_PER_WEIGHT)}')
  size = int(np.prod(leaf.shape, dtype=np.int64))
  if not jnp.issubdtype(leaf.dtype, jnp.floating):   # ml_dtypes floats count too
    return size * np.dtype(leaf.dtype).itemsize
  return size * BYTES_PER_WEIGHT[dtype] + (INT8_SCALE_BYTES if dtype == 'int8' else 0)


def held_leaves(trees: Mapping, modules: Iterable[str]) -> dict:
  """The leaves under any of `modules` (each leaf once)."""
  flat = leaves(trees)
  out = {}
  for m in modules:
    m = m.strip('/')
    hit = {p: v for p, v in flat.items() if p == m or p.startswith(m + '/')}
    if not hit:
      roots = sorted({p.split('/')[0] for p in flat})
      raise ConfigError(f'no parameters under module {m!r}; roles: {roots}')
    out.update(hit)
  return out


def module_params(trees: Mapping, modules: Iterable[str]) -> int:
  """Number of weights under `modules` (e.g. for activation's param_counts)."""
  return sum(int(np.prod(v.shape, dtype=np.int64))
             for v in held_leaves(trees, modules).values())


def module_bytes(trees: Mapping, modules: Iterable[str], dtype: str) -> int:
  return sum(leaf_bytes(v, dtype) for v in held_leaves(trees, modules).values())


def footprint_metrics(trees: Mapping, holdings: Mapping[str, Iterable[str]],
                      ram_gb: Optional[Mapping[str, float]] = None) -> dict:
  """storage/<device>/bytes_<dtype> and RAM share per device; the largest per dtype.

  trees: {role: tree} of ONE client's shapes (shared and personal trees
  alike); holdings: {device name: [module, ...]}; ram_gb: RAM per device
  (default: the catalog's, for catalog devices).
  """
  out = {}
  for dtype in BYTES_PER_WEIGHT:
    sizes = {d: module_bytes(trees, mods, dtype) for d, mods in holdings.items()}
    out.update({f'storage/{d}/bytes_{dtype}': float(b) for d, b in sizes.items()})
    out[f'storage/max_bytes_{dtype}'] = float(max(sizes.values())) if sizes else None
  for d in holdings:
    ram = (ram_gb or {}).get(d)
    if ram is None and d in catalog.DEVICES:
      ram = catalog.DEVICES[d].ram_gb
    out[f'storage/{d}/ram_fraction'] = (
        stats_lib.scalar(out[f'storage/{d}/bytes_float32'] / (ram * 1e9)) if ram else None)
  return out
