"""FLOPs of a program as XLA counts them, for modeled latency and training time."""
from typing import Callable

import jax


def xla_flops(fn: Callable, *args, **kwargs) -> float:
  """FLOPs XLA's cost analysis gives the lowered `fn(*args, **kwargs)`.

  `fn` may be jitted already (static arguments bound beforehand); the
  arguments may be arrays or jax.ShapeDtypeStruct. Lowering compiles
  nothing, so this is cheap even for a large model.
  """
  jitted = fn if hasattr(fn, 'lower') else jax.jit(fn)
  analysis = jitted.lower(*args, **kwargs).cost_analysis()
  if isinstance(analysis, (list, tuple)):   # older jax: one dict per program
    analysis = analysis[0] if analysis else {}
  if not analysis or 'flops' not in analysis:
    raise ValueError('XLA cost analysis reported no FLOPs for this program')
  return float(analysis['flops'])
