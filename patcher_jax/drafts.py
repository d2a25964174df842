"""Greedy decoding of a patched model, checked against a draft in one pass.

The patch sits in the last decoder layer's FFN, so the query at a position
depends only on the tokens before it, never on the patch. Given a draft (a
token sequence the patched model may well generate: the gold answer, or the
unedited model's own output) and its cached teacher-forced queries, the tail
gives the patched model's logits at every draft position at once. If at every
position up to the draft's end the argmax is the draft's token, by more than
`margin`, greedy decoding reproduces the draft exactly (by induction over the
positions), and its answer is known without decoding. Otherwise the caller
decodes for real. This is the verification step of speculative decoding, with
the patch as the change; `margin` absorbs the ~1e-6 difference between
teacher-forced and step-by-step queries.
"""
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.patch import PatchBank
from patcher_jax.tail import Tail

MARGIN = 1e-2


class Drafts(NamedTuple):
  """Candidate outputs of N inputs (numpy, host side).

  Attributes:
    queries: [N, T, d] teacher-forced queries of the patched layer along the
      draft (position t predicts tokens[t]).
    tokens: [N, T] int32 the draft's tokens after the decoder start.
    mask: [N, T] bool prefix mask, through the draft's eos.
    correct: [N] bool whether the draft's answer is right (exact match).
  """
  queries: np.ndarray
  tokens: np.ndarray
  mask: np.ndarray
  correct: np.ndarray

  def take(self, rows) -> "Drafts":
    return Drafts(*(a[rows] for a in self))


@functools.partial(jax.jit, static_argnames="margin")
def holds(tail: Tail, bank: PatchBank, queries: chex.Array,
          tokens: chex.Array, mask: chex.Array, margin: float) -> chex.Array:
  """[N] bool: greedy decoding of the patched model certainly reproduces
  each draft (queries [N, T, d], tokens and mask [N, T])."""
  chex.assert_rank(queries, 3)
  chex.assert_equal_shape([tokens, mask])
  delta = patch_lib.bank_output(bank, queries)
  logits = tail_lib.tail_logits(tail, queries, delta, jax.random.PRNGKey(0))
  top2 = jax.lax.top_k(logits, 2)[0]
  best = jnp.argmax(logits, axis=-1)
  ok = (best == tokens) & (top2[..., 0] - top2[..., 1] > margin)
  return jnp.all(ok | ~mask, axis=-1)


def _bucket(n: int, lo: int = 8) -> int:
  return max(lo, 1 << (max(n, 1) - 1).bit_length())


def check(tail: Tail, bank: PatchBank, drafts: Drafts, max_new_tokens: int,
          chunk: int = 64, margin: float = MARGIN) -> np.ndarray:
  """[N] int8: 1 right, 0 wrong (certainly, by the draft), -1 unknown.

  Rows go in chunks of a power of two (at most `chunk`) cropped to the
  longest draft rounded up to 8 positions: a few compiled shapes.
  """
  n = drafts.tokens.shape[0]
  out = np.full(n, -1, np.int8)
  lengths = drafts.mask.sum(-1)
  # A draft longer than generation may run can never be reproduced.
  usable = np.flatnonzero((lengths > 0) & (lengths <= max_new_tokens))
  for start in range(0, len(usable), chunk):
    rows = usable[start:start + chunk]
    size = min(chunk, _bucket(len(rows)))
    width = min(drafts.tokens.shape[1], -(-int(lengths[rows].max()) // 8) * 8)
    pad = lambda a: np.concatenate(
        [a[rows, :width], np.zeros((size - len(rows), width) + a.shape[2:],
                                   a.dtype)])
    ok = np.asarray(holds(tail, bank, pad(drafts.queries), pad(drafts.tokens),
                          pad(drafts.mask), margin=margin))[:len(rows)]
    out[rows[ok]] = drafts.correct[rows[ok]]
  return out

