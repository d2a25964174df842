"""Run an unmodified transformers Flax model with the patch inserted.

`flax.linen.intercept_methods` sees every submodule call. At the patched FFN we
record its input q (the query) and add the bank's output to the value-side
Dense's output, which is exactly `[W1; K]`, `[W2, V]` widening of the layer.
No transformers code is changed.
"""
from typing import Callable, NamedTuple, Optional, Tuple

import flax.linen as nn


class FFNSite(NamedTuple):
  """Where the patch goes, as module paths of the transformers model.

  key_path: the module whose `__call__` receives the FFN input q first.
  value_path: the Dense whose output gets the patch's contribution.
  """
  key_path: Tuple[str, ...]
  value_path: Tuple[str, ...]


def run_with_patch(fn: Callable, site: FFNSite,
                   delta_fn: Optional[Callable] = None):
  """Call `fn()`; return (its output, list of the queries seen at the site).

  delta_fn(q) -> what to add at the value-side Dense (None: capture only).
  One entry is captured per call of the layer (one for a full forward, one per
  step when decoding with a cache).
  """
  captured = []

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    path = context.module.path
    if path == site.key_path:
      captured.append(args[0])
    out = next_fun(*args, **kwargs)
    if delta_fn is not None and path == site.value_path:
      out = out + delta_fn(captured[-1]).astype(out.dtype)
    return out

  with nn.intercept_methods(interceptor):
    out = fn()
  return out, captured
