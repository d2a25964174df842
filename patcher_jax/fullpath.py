"""The faithful full-model path: every step runs the whole frozen model.

The reference trains a patch by running the full network forward and backward
at every step. `edit(..., full=FullModel(...))` does the same (still jitted),
sharing the loop, losses and stop rule with the cached-tail path, so the two
can be compared step for step (tests, experiments/bench_edit.py).
"""
from typing import Any, Callable

from flax import struct

from patcher_jax.patch import PatchBank

# forward(model, params, inputs, delta_fn, rng, train, copies) ->
#   (logits [B, P, C], queries [B, P, d]) at the tail's positions, for B copies.
ForwardFn = Callable[..., Any]


@struct.dataclass
class FullModel:
  """A frozen model, its bank and one edit example's model inputs."""
  params: Any
  bank: PatchBank
  inputs: Any
  model: Any = struct.field(pytree_node=False)
  forward_fn: ForwardFn = struct.field(pytree_node=False)
