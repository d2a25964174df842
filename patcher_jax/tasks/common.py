"""Helpers shared by the task runtimes: batching, caching of compiled fns."""
import functools
from typing import Callable, Sequence

import jax
import numpy as np

from patcher_jax.data import Record

CHUNK = 1024  # evaluation chunk: one compile serves every split size


@functools.lru_cache(maxsize=32)
def jitted_queries(model, query_fn: Callable):
  """jit(query_fn(model, params, *arrays)) cached per model object."""
  return jax.jit(lambda params, *arrays: query_fn(model, params, *arrays))


def batched_queries(query_fn, tokenize, texts: Sequence[str], batch_size: int,
                    what: str = "", log=print) -> np.ndarray:
  """Queries of `texts`, batched by length so short texts pad little.

  Lengths are rounded up to a multiple of 8 and batches padded to
  `batch_size` rows: a handful of compiles for any number of texts.
  """
  if not len(texts):
    return np.zeros((0, 0), np.float32)
  ids, mask = tokenize(texts)
  lengths = mask.sum(-1)
  order = np.argsort(lengths, kind="stable")
  out = [None] * len(texts)
  n_batches = 0
  for start in range(0, len(texts), batch_size):
    idx = order[start:start + batch_size]
    width = int(-(-lengths[idx].max() // 8) * 8)
    used = min(width, ids.shape[1])
    b_ids = np.zeros((batch_size, width), np.int32)
    b_mask = np.zeros((batch_size, width), np.int32)
    b_ids[:len(idx), :used] = ids[idx, :used]
    b_mask[:len(idx), :used] = mask[idx, :used]
    b_mask[len(idx):, 0] = 1  # padded rows attend to one token
    q = np.asarray(query_fn(b_ids, b_mask))
    for row, j in enumerate(idx):
      out[j] = q[row]
    n_batches += 1
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
