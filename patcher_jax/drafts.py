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

Most answers of a patched model are those of the unedited model, and a
cheaper certificate settles them without the head: if the bank adds delta
at a position, the LayerNorm output moves by at most
max|gamma| |delta| / (sigma(x) - |delta| / sqrt(d)) (normalisation is
1/sigma-Lipschitz, and sigma moves by at most |delta| / sqrt(d); the same
holds for RMSNorm with the root mean square as sigma), so no
logit moves by more than max_j |E_j| times that; a draft token that led by
more than twice this bound (plus the margin) stays the argmax.
"""
import functools
from typing import NamedTuple, Sequence

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
    lead: [N, T] float32 how far the draft token led every other token in
      the unedited model's logits (-inf: not known; see `leads`).
    spread: [N, T] float32 std of the patched layer's LayerNorm input there.
  """
  queries: np.ndarray
  tokens: np.ndarray
  mask: np.ndarray
  correct: np.ndarray
  lead: np.ndarray
  spread: np.ndarray

  def take(self, rows) -> "Drafts":
    return Drafts(*(a[rows] for a in self))


def pack(parts: Sequence[Drafts]) -> dict:
  """Drafts (given in parts, one after another) as flat arrays to store
  (`np.savez`): the queries only at the drafts' positions ([P, d], row
  after row), the rest as they are. Answers are ~4 tokens of the 20-24 a
  row holds, so this is ~1/5 of the bytes.

  Example:
    >>> d = Drafts(np.ones((2, 3, 4)), np.zeros((2, 3), np.int32),
    ...            np.array([[1, 1, 0], [1, 0, 0]], bool), np.ones(2, bool),
    ...            np.zeros((2, 3)), np.zeros((2, 3)))
    >>> packed = pack([d, d])
    >>> packed["queries"].shape, unpack(packed, 1, 3).queries.shape
    ((6, 4), (2, 3, 4))
  """
  flat = {f: np.concatenate([getattr(d, f) for d in parts])
          for f in Drafts._fields[1:]}
  flat["queries"] = np.concatenate([d.queries[d.mask] for d in parts])
  flat["offsets"] = np.concatenate([[0], np.cumsum(flat["mask"].sum(-1))])
  return flat


def unpack(packed: dict, start: int, stop: int) -> Drafts:
  """Rows start..stop of packed drafts (`pack`), queries zero off the
  drafts' positions (no check reads them there)."""
  mask = packed["mask"][start:stop]
  queries = np.zeros(mask.shape + packed["queries"].shape[-1:], np.float32)
  offsets = packed["offsets"]
  queries[mask] = packed["queries"][offsets[start]:offsets[stop]]
  return Drafts(queries, *(packed[f][start:stop] for f in Drafts._fields[1:]))


@functools.partial(jax.jit, static_argnames="margin")
def holds(tail: Tail, bank: PatchBank, queries: chex.Array,
          tokens: chex.Array, mask: chex.Array, margin: float) -> chex.Array:
  """[N] bool: greedy decoding of the patched model certainly reproduces
  each draft (queries [N, T, d], tokens and mask [N, T])."""
  chex.assert_rank(queries, 3)
  chex.assert_equal_shape([tokens, mask])
  delta = patch_lib.bank_output(bank, queries, tail.act)
  logits = tail_lib.tail_logits(tail, queries, delta, jax.random.PRNGKey(0))
  best = jnp.argmax(logits, axis=-1)
  ok = (best == tokens) & (lead_over_others(logits, tokens) > margin)
  return jnp.all(ok | ~mask, axis=-1)


def lead_over_others(logits: chex.Array, tokens: chex.Array) -> chex.Array:
  """[...] logit of `tokens` minus the largest other logit ([..., V] logits):
  two max passes (lax.top_k sorts the vocabulary on CPU, ~10x slower); a
  tie gives 0."""
  own = jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
  vocab = jnp.arange(logits.shape[-1])
  others = jnp.where(vocab == tokens[..., None], -jnp.inf, logits)
  return own - jnp.max(others, axis=-1)


@functools.partial(jax.jit, static_argnames="margin")
def bound_holds(tail: Tail, bank: PatchBank, queries: chex.Array,
                lead: chex.Array, spread: chex.Array, mask: chex.Array,
                head_norm: chex.Array, margin: float) -> chex.Array:
  """[N] bool: the cheap certificate (module docstring): the bank cannot
  move any logit enough to change the unedited argmax at any position."""
  delta = jnp.linalg.norm(patch_lib.bank_output(bank, queries, tail.act),
                          axis=-1)
  room = spread - delta / jnp.sqrt(queries.shape[-1])
  gamma = jnp.max(jnp.abs(tail.ffn["norm"]["scale"]))
  moved = jnp.where(room > 0, gamma * delta / jnp.where(room > 0, room, 1.0),
                    jnp.inf)
  ok = lead - 2.0 * head_norm * moved > margin
  return jnp.all(ok | ~mask, axis=-1)


@jax.jit
def _unedited_lead(tail: Tail, queries: chex.Array, tokens: chex.Array):
  """(lead of `tokens` in the unedited logits, std of the LayerNorm input)."""
  logits = tail_lib.tail_logits(tail, queries, jnp.zeros_like(queries),
                                jax.random.PRNGKey(0))
  return lead_over_others(logits, tokens), _spread_of(tail, queries)


def _spread_of(tail: Tail, queries: chex.Array) -> chex.Array:
  """Std (RMS) of the patched layer's norm input at unedited queries."""
  x = tail_lib.residual(tail, queries) + tail_lib.ffn_output(tail, queries)
  return tail_lib.norm_spread(tail, x)


_spread = jax.jit(_spread_of)


def spreads(tail: Tail, queries: np.ndarray, chunk: int = 256) -> np.ndarray:
  """[N, T] std (RMS) of the patched layer's norm input at the unedited
  model's queries [N, T, d] (the `spread` of `Drafts`), in chunks of rows."""
  n = queries.shape[0]
  out = np.zeros(queries.shape[:2], np.float32)
  for start in range(0, n, chunk):
    part = queries[start:start + chunk]
    size = min(chunk, _bucket(len(part)))   # few shapes, few compiles
    pad = np.zeros((size - len(part),) + part.shape[1:], part.dtype)
    out[start:start + len(part)] = np.asarray(
        _spread(tail, np.concatenate([part, pad])))[:len(part)]
  return out


def leads(tail: Tail, queries: np.ndarray, tokens: np.ndarray,
          mask: np.ndarray, chunk: int = 64):
  """(lead, spread) [N, T] of drafts under the unedited model (for `Drafts`)."""
  n, t = tokens.shape
  lead = np.full((n, t), -np.inf, np.float32)
  spread = np.zeros((n, t), np.float32)
  for rows, width in _chunks(mask.sum(-1), np.arange(n), chunk, t):
    pad = _padder(rows, width, min(chunk, _bucket(len(rows))))
    got = _unedited_lead(tail, pad(queries), pad(tokens))
    lead[rows, :width], spread[rows, :width] = (
        np.asarray(a)[:len(rows)] for a in got)
  return np.where(mask, lead, -np.inf), spread


WIDTH_STEP = 4   # draft widths are multiples: most answers are 3-5 tokens


def _chunks(lengths, rows, chunk, max_width):
  """Rows by length in chunks, each with its width (longest, rounded up to
  WIDTH_STEP: the head runs on few padding positions, in few shapes)."""
  rows = rows[np.argsort(lengths[rows], kind="stable")]
  for start in range(0, len(rows), chunk):
    part = rows[start:start + chunk]
    longest = max(int(lengths[part].max()), 1)
    yield part, min(max_width, -(-longest // WIDTH_STEP) * WIDTH_STEP)


def _padder(rows, width, size):
  def pad(a):
    return np.concatenate([a[rows, :width], np.zeros(
        (size - len(rows), width) + a.shape[2:], a.dtype)])
  return pad


def _bucket(n: int, lo: int = 8) -> int:
  return max(lo, 1 << (max(n, 1) - 1).bit_length())


def check(tail: Tail, bank: PatchBank, drafts: Drafts, max_new_tokens: int,
          head_norm: float = np.inf, chunk: int = 64,
          margin: float = MARGIN) -> np.ndarray:
  """[N] int8: 1 right, 0 wrong (certainly, by the draft), -1 unknown.

  Each row is first tried with the cheap certificate (`head_norm`: the
  largest row norm of the LM head; inf skips it), then through the head.
  Rows go by length in chunks of a power of two (at most `chunk`) cropped to
  their longest draft rounded up to WIDTH_STEP positions: a few compiled
  shapes, and the head runs on few padding rows and positions.
  """
  n = drafts.tokens.shape[0]
  out = np.full(n, -1, np.int8)
  lengths = drafts.mask.sum(-1)
  # A draft longer than generation may run can never be reproduced.
  todo = np.flatnonzero((lengths > 0) & (lengths <= max_new_tokens))
  for exact in (False, True):
    if not exact and not (np.isfinite(head_norm)
                          and np.isfinite(drafts.lead[todo]).any()):
      continue   # no lead known (e.g. gold drafts): the bound cannot hold
    held = []
    for rows, width in _chunks(lengths, todo, chunk, drafts.tokens.shape[1]):
      pad = _padder(rows, width, min(chunk, _bucket(len(rows), lo=1)))
      if exact:
        ok = holds(tail, bank, pad(drafts.queries), pad(drafts.tokens),
                   pad(drafts.mask), margin=margin)
      else:
        ok = bound_holds(tail, bank, pad(drafts.queries), pad(drafts.lead),
                         pad(drafts.spread), pad(drafts.mask),
                         jnp.float32(head_norm), margin=margin)
      held.append(rows[np.asarray(ok)[:len(rows)]])
    held = np.concatenate(held) if held else np.zeros(0, int)
    out[held] = drafts.correct[held]
    todo = np.setdiff1d(todo, held)
  return out
