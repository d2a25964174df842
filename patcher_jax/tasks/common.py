"""Helpers shared by the task runtimes: batching, caching of compiled fns
and of the arrays a runtime computes with the frozen base model."""
import functools
import hashlib
import json
import os
import tempfile
from typing import Callable, Dict, Optional, Sequence

import jax
import numpy as np

from patcher_jax import editor
from patcher_jax.data import Record

CHUNK = 1024  # evaluation chunk: one compile serves every split size
CACHE_VERSION = 2  # bump when what a runtime caches changes meaning


def records_key(*parts) -> str:
  """A hash of runtime settings and record lists (ids, texts, answers)."""
  h = hashlib.sha256(str(CACHE_VERSION).encode())
  for part in parts:
    if isinstance(part, (list, tuple)) and part and isinstance(part[0], Record):
      part = [tuple(r) for r in part]
    h.update(json.dumps(part, sort_keys=True, default=str).encode())
  return h.hexdigest()[:24]


def load_or_compute(cache_dir: Optional[str], key: str,
                    compute: Callable[[], Dict[str, np.ndarray]],
                    log=print) -> Dict[str, np.ndarray]:
  """`compute()` once per key: its arrays are kept in `<cache_dir>/<key>.npz`.

  The runtime's queries are a pure function of the frozen base model (the
  cache dir belongs to one base) and the key. Written to a temporary file
  and renamed, so a crash never leaves a half-written entry; read without
  pickle; an unreadable entry is recomputed.
  """
  if not cache_dir:
    return compute()
  path = os.path.join(cache_dir, key + ".npz")
  if os.path.isfile(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
      if log:
        log(f"  cached queries read from {path}")
      return arrays
    except (OSError, ValueError) as e:
      if log:
        log(f"  {path} is unreadable ({e}); recomputing it")
  arrays = compute()
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
  return arrays


@functools.lru_cache(maxsize=32)
def jitted_queries(model, query_fn: Callable):
  """jit(query_fn(model, params, *arrays)) cached per model object."""
  return jax.jit(lambda params, *arrays: query_fn(model, params, *arrays))


@functools.lru_cache(maxsize=32)
def jitted_noisy_queries(model, noisy_fn: Callable, num: int):
  """jit(noisy_fn(model, params, *arrays, rng, num)): the dropout pool of one
  example (parity mode), compiled once per model, pool size and input shape
  instead of running the model op by op on every edit."""
  return jax.jit(lambda params, rng, *arrays: noisy_fn(model, params, *arrays,
                                                       rng, num))


def pad_to_multiple(a: np.ndarray, multiple: int = 8) -> np.ndarray:
  """Zero-pad the last axis of [B, T] token arrays to a multiple (few
  shapes, few compiles)."""
  t = a.shape[-1]
  return np.pad(a, ((0, 0), (0, -(-t // multiple) * multiple - t)))


def length_batches(lengths: np.ndarray, batch_size: int, multiple: int = 8):
  """Batches of rows with similar lengths: yields (rows, width), `width` the
  batch's longest length rounded up to `multiple` (few shapes, few compiles;
  short inputs pad little)."""
  lengths = np.asarray(lengths)
  order = np.argsort(lengths, kind="stable")
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    yield rows, int(-(-max(int(lengths[rows].max()), 1) // multiple) * multiple)


def take_batch(a: np.ndarray, rows: np.ndarray, width: int,
               batch_size: int) -> np.ndarray:
  """Rows `rows` of token array `a` [N, T] as [batch_size, width]: columns
  cropped or zero-padded, missing rows zero."""
  out = np.zeros((batch_size, width), a.dtype)
  used = min(width, a.shape[1])
  out[:len(rows), :used] = a[rows, :used]
  return out


def batched_queries(query_fn, tokenize, texts: Sequence[str], batch_size: int,
                    what: str = "", log=print) -> np.ndarray:
  """Queries of `texts`, batched by length (see `length_batches`), batches
  padded to `batch_size` rows: a handful of compiles for any number of texts.
  """
  if not len(texts):
    return np.zeros((0, 0), np.float32)
  if log and what:       # a split can take ~30 s (FEVER's rephrases)
    log(f"  caching {len(texts)} queries: {what} ...")
  ids, mask = tokenize(texts)
  out = [None] * len(texts)
  for idx, width in length_batches(mask.sum(-1), batch_size):
    b_ids = take_batch(ids, idx, width, batch_size)
    b_mask = take_batch(mask, idx, width, batch_size)
    b_mask[len(idx):, 0] = 1  # padded rows attend to one token
    q = np.asarray(query_fn(b_ids, b_mask))
    for row, j in enumerate(idx):
      out[j] = q[row]
  if log and what:
    log(f"  cached {len(texts)} queries: {what}")
  return np.stack(out)


def flatten_rephrases(records: Sequence[Record], limit: int | None = None):
  """All rephrases in one list and offsets: record i owns [off[i], off[i+1])."""
  flat, offsets = [], [0]
  for r in records:
    reph = list(r.rephrases)[:limit] if limit else list(r.rephrases)
    flat.extend(reph)
    offsets.append(len(flat))
  return flat, np.asarray(offsets)


def chunked(fn: Callable, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
  """fn over rows of x in fixed-size (zero-padded) chunks, concatenated."""
  n = x.shape[0]
  if n == 0:
    return np.zeros((0,), np.float32)
  size = chunk if n > chunk else max(8, 1 << (n - 1).bit_length())
  outs = []
  for start in range(0, n, size):
    part = x[start:start + size]
    pad = size - part.shape[0]
    if pad:
      part = np.concatenate([part, np.zeros((pad,) + part.shape[1:],
                                            part.dtype)])
    outs.append(np.asarray(fn(part))[:size - pad])
  return np.concatenate(outs)


class Pools:
  """Dropout pools of edit inputs drawn ahead of need on the lookahead
  thread (lookahead.py), by (record, key, size): a runtime starts the pool
  of the stream's likeliest next mistake, and `edit_task` takes it if the
  guess was right (else draws in place: the same arrays either way).

  Example:
    pools = Pools(lookahead.Lookahead())
    pools.start(7, key, 16, draw)       # draw(key) -> [16, T, d] numpy
    noisy = pools.get(7, key, 16, draw)
  """

  def __init__(self, ahead, keep: int = 8):
    self._ahead, self._keep, self._futures = ahead, keep, {}

  @staticmethod
  def _tag(i: int, rng, size: int):
    if jax.numpy.issubdtype(rng.dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)
    return int(i), np.asarray(rng).tobytes(), int(size)

  def start(self, i: int, rng, size: int, draw: Callable) -> None:
    tag = self._tag(i, rng, size)
    if tag not in self._futures:
      from patcher_jax import lookahead  # pylint: disable=g-import-not-at-top
      self._futures[tag] = self._ahead.submit(lookahead.URGENT, draw, rng)
      while len(self._futures) > self._keep:     # guesses never used
        self._futures.pop(next(iter(self._futures)))

  def get(self, i: int, rng, size: int, draw: Callable) -> np.ndarray:
    guess = self._futures.pop(self._tag(i, rng, size), None)
    # a guess still queued is drawn by this thread while it waits
    # (`Lookahead.wait`): both cores draw pools when the other is behind
    return self._ahead.wait(guess) if guess is not None else draw(rng)


def first_base_mistake(candidates, base_wrong: np.ndarray) -> Optional[int]:
  """The first of `candidates` (stream indices) the unedited model gets
  wrong: the likeliest next mistake (edits rarely fix other records)."""
  for i in candidates:
    if base_wrong[int(i)]:
      return int(i)
  return None


# editor.make_edit_task compiled once for every runtime (a task's shapes and
# its neuron settings are static)
make_edit_task = jax.jit(editor.make_edit_task,
                         static_argnames=("max_neurons", "neuron_margin"))
