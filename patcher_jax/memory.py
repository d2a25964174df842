"""The memory set: FFN-input queries the new neurons must stay silent on.

Queries live in a preallocated [capacity, d] buffer with a validity mask, so
appending after every edit never changes a shape inside jit.
"""
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np


class Memory(NamedTuple):
  """queries [M, d]; mask [M] bool (valid rows); size [] int32 (rows used)."""
  queries: chex.Array
  mask: chex.Array
  size: chex.Array


def init_memory(queries, capacity: int | None = None) -> Memory:
  """A memory holding `queries` [m, d], with room for `capacity` rows."""
  queries = jnp.asarray(queries)
  m, d = queries.shape
  capacity = max(capacity or m, m, 1)
  buf = jnp.zeros((capacity, d), queries.dtype).at[:m].set(queries)
  mask = jnp.arange(capacity) < m
  return Memory(buf, mask, jnp.asarray(m, jnp.int32))


def empty_memory(dim: int, capacity: int = 1, dtype=jnp.float32) -> Memory:
  return init_memory(jnp.zeros((0, dim), dtype), capacity)


def append(memory: Memory, rows: chex.Array, rows_mask: chex.Array) -> Memory:
  """Append the masked `rows` [r, d] after the used rows (jittable).

  Rows are compacted (valid first) so repeated appends stay contiguous. Rows
  that do not fit are dropped; grow with `ensure_capacity` outside jit first.
  """
  r = rows.shape[0]
  order = jnp.argsort(~rows_mask, stable=True)   # valid rows first
  rows, rows_mask = rows[order], rows_mask[order]
  count = jnp.sum(rows_mask.astype(jnp.int32))
  idx = memory.size + jnp.arange(r)
  ok = rows_mask & (idx < memory.queries.shape[0])
  idx = jnp.where(ok, idx, memory.queries.shape[0])   # out of range: dropped
  queries = memory.queries.at[idx].set(rows.astype(memory.queries.dtype),
                                       mode="drop")
  mask = memory.mask.at[idx].set(True, mode="drop")
  size = jnp.minimum(memory.size + count, memory.queries.shape[0])
  return Memory(queries, mask, size)


def ensure_capacity(memory: Memory, extra: int) -> Memory:
  """Grow (outside jit) to the next power of two if `extra` rows won't fit."""
  size = int(jnp.max(memory.size))
  cap = memory.queries.shape[-2]
  if size + extra <= cap:
    return memory
  new_cap = cap
  while size + extra > new_cap:
    new_cap *= 2
  return grow(memory, new_cap)


def grow(memory: Memory, capacity: int) -> Memory:
  """The same memory in a buffer of `capacity` rows (outside jit; never
  shrinks). Works on stacked memories [..., M, d] too.

  Example:
    >>> grow(init_memory(jnp.ones((3, 2))), 8).queries.shape
    (8, 2)
  """
  pad = max(capacity - memory.queries.shape[-2], 0)
  widths = lambda a, axis: [(0, pad) if i == a.ndim + axis else (0, 0)
                            for i in range(a.ndim)]
  return Memory(jnp.pad(memory.queries, widths(memory.queries, -2)),
                jnp.pad(memory.mask, widths(memory.mask, -1)),
                memory.size)


def deduplicate(rows, decimals: int = 6) -> np.ndarray:
  """Unique rows (numpy, outside jit), in first-seen order (`rows` itself
  when it has one row or none)."""
  rows = np.asarray(rows)
  if rows.shape[0] <= 1:
    return rows
  _, first = np.unique(np.round(rows, decimals), axis=0, return_index=True)
  return rows[np.sort(first)]


def valid_rows(memory: Memory) -> np.ndarray:
  """The valid queries as a numpy array (outside jit)."""
  return np.asarray(memory.queries)[np.asarray(memory.mask)]


def pre_activations(memory: Memory, keys, biases):
  """h [M, n] = x_m . k_i + b_i, and its mask [M, n] (valid rows only)."""
  h = memory.queries @ keys.T + biases
  return h, jnp.broadcast_to(memory.mask[:, None], h.shape)



def top_pre_activations(memory: Memory, keys, biases, k: int):
  """Each neuron's k largest pre-activations on valid rows: h [n, k], mask.

  Rows are chosen without gradient in one pass over the buffer, then h is
  recomputed on the gathered rows: the backward pass touches k rows per
  neuron instead of the whole memory (no [M, n] top-k scatter, no second
  read of the buffer). Exact for any loss that sees h only through each
  neuron's top-k values, as the memory loss does (`losses.memory_loss_top`).
  The mask is False where fewer than k rows are valid. The pass reads the
  whole buffer: keep preallocated buffers tight (see stream.init_fold_state).
  """
  k = min(k, memory.queries.shape[0])
  keys_sg, biases_sg = jax.lax.stop_gradient((keys, biases))
  scores = keys_sg @ memory.queries.T + biases_sg[:, None]       # [n, M]
  scores = jnp.where(memory.mask[None, :], scores, -jnp.inf)
  _, idx = jax.lax.top_k(scores, k)                              # [n, k]
  rows = memory.queries[idx]                                     # [n, k, d]
  h = jnp.einsum("nkd,nd->nk", rows, keys) + biases[:, None]
  return h, memory.mask[idx]
