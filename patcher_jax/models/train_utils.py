"""Small pieces shared by the two base-model trainers.

Optimiser (AdamW with the usual no-decay set), length buckets (one compiled
program per bucket), seeded epoch batching, running metrics for the progress
bar, and the trainable/frozen split of a parameter tree.
"""
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

Params = Dict[str, Any]


# --------------------------------------------------------------------------
# Optimiser.


def _decay_mask(params: Params) -> Params:
  """Weight decay on matrices only: not on biases, LayerNorms or embeddings."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(
      {k: (k[-1] == "kernel") for k in flat})


def adamw_linear(learning_rate: float, num_steps: int, warmup_steps: int,
                 weight_decay: float, clip_norm: float = 1.0
                 ) -> optax.GradientTransformation:
  """AdamW, linear warm-up then linear decay to 0 at ``num_steps``.

  The reference's recipe (ALGORITHM.md 7.2) at our shorter length.
  """
  warmup_steps = max(1, min(warmup_steps, num_steps // 2))
  schedule = optax.join_schedules([
      optax.linear_schedule(0.0, learning_rate, warmup_steps),
      optax.linear_schedule(learning_rate, 0.0,
                            max(1, num_steps - warmup_steps)),
  ], [warmup_steps])
  return optax.chain(
      optax.clip_by_global_norm(clip_norm),
      optax.adamw(schedule, weight_decay=weight_decay, mask=_decay_mask))


# --------------------------------------------------------------------------
# Trainable / frozen split.


def split_params(params: Params, is_trainable: Callable[[Tuple[str, ...]], bool]
                 ) -> Tuple[Params, Params]:
  """(trainable, frozen) sub-trees of ``params`` by a predicate on key paths."""
  flat = traverse_util.flatten_dict(params)
  train = {k: v for k, v in flat.items() if is_trainable(k)}
  frozen = {k: v for k, v in flat.items() if not is_trainable(k)}
  return (traverse_util.unflatten_dict(train),
          traverse_util.unflatten_dict(frozen))


def merge_params(a: Params, b: Params) -> Params:
  """The union of two disjoint sub-trees."""
  flat = dict(traverse_util.flatten_dict(a))
  flat.update(traverse_util.flatten_dict(b))
  return traverse_util.unflatten_dict(flat)


def count_params(tree: Params) -> int:
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------
# Lengths and batches.


def round_up(n: int, multiple: int) -> int:
  return int(-(-n // multiple) * multiple)


def bucket_lengths(lengths: np.ndarray, multiple: int, cap: int) -> np.ndarray:
  """Per-example padded length: rounded up to ``multiple``, at most ``cap``."""
  return np.minimum(cap, np.maximum(multiple,
                                    -(-np.asarray(lengths) // multiple)
                                    * multiple)).astype(np.int64)


def bucket_by_edges(lengths: np.ndarray, edges: Sequence[int], width: int
                    ) -> np.ndarray:
  """Per-example padded length: the smallest edge >= length, else ``width``."""
  edges = np.array(sorted(e for e in edges if e < width) + [width])
  lengths = np.minimum(np.asarray(lengths), width)
  return edges[np.searchsorted(edges, lengths, side="left")].astype(np.int64)


class Batch(NamedTuple):
  """Indices of one batch, all of one bucket length; -1 marks padding rows."""
  length: int
  index: np.ndarray


def one_per_group(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One random member (index) of each group, e.g. one phrasing per record."""
  groups = np.asarray(groups)
  order = rng.permutation(len(groups))  # random tie-break within a group
  _, first = np.unique(groups[order], return_index=True)
  return np.sort(order[first])


def epoch_batches(buckets: np.ndarray, batch_size: int,
                  rng: np.random.Generator,
                  subset: np.ndarray = None) -> List[Batch]:
  """One shuffled pass over ``subset`` (default: all examples).

  Batches never mix buckets; the last batch of a bucket is filled with -1 so
  every batch has the same shape.
  """
  buckets = np.asarray(buckets)
  subset = np.arange(len(buckets)) if subset is None else np.asarray(subset)
  batches = []
  for length in np.unique(buckets[subset]):
    idx = subset[buckets[subset] == length]
    rng.shuffle(idx)
    n_full = -(-len(idx) // batch_size) * batch_size
    idx = np.concatenate([idx, -np.ones(n_full - len(idx), np.int64)])
    batches += [Batch(int(length), b) for b in idx.reshape(-1, batch_size)]
  order = rng.permutation(len(batches))
  return [batches[i] for i in order]


def planned_steps(groups: np.ndarray, buckets: np.ndarray, batch_size: int,
                  epochs: float) -> int:
  """Steps of ``epochs`` passes over the groups (one member each per pass)."""
  groups, buckets = np.asarray(groups), np.asarray(buckets)
  _, first = np.unique(groups, return_index=True)
  per_epoch = sum(-(-int(np.sum(buckets[first] == b)) // batch_size)
                  for b in np.unique(buckets[first]))
  return max(1, int(round(epochs * per_epoch)))


def eval_batches(buckets: np.ndarray, batch_size: int) -> Iterator[Batch]:
  """Deterministic batches for evaluation (bucket by bucket)."""
  for length in np.unique(buckets):
    idx = np.flatnonzero(buckets == length)
    for s in range(0, len(idx), batch_size):
      b = idx[s:s + batch_size]
      yield Batch(int(length), np.concatenate(
          [b, -np.ones(batch_size - len(b), np.int64)]))


def take_rows(x: np.ndarray, index: np.ndarray, length: int = None
              ) -> np.ndarray:
  """Rows ``index`` of ``x`` (zeros where index == -1), cut to ``length``."""
  out = x[np.maximum(index, 0)]
  if length is not None:
    out = out[:, :length]
  return np.where((index >= 0).reshape((-1,) + (1,) * (out.ndim - 1)), out,
                  np.zeros_like(out))


# --------------------------------------------------------------------------
# Metrics and time.


class Running:
  """Progress-bar metrics: device scalars are collected without a host sync
  and folded, every ``every`` steps, into an exponential moving average."""

  def __init__(self, every: int = 10, decay: float = 0.7):
    self.every, self.decay = every, decay
    self.values, self._pending = {}, []

  def add(self, **metrics) -> bool:
    """Records one step; True when the averages were just refreshed."""
    self._pending.append(metrics)
    if len(self._pending) < self.every:
      return False
    self.flush()
    return True

  def flush(self) -> Dict[str, float]:
    if self._pending:
      pending = jax.device_get(self._pending)
      for k in pending[0]:
        v = float(np.mean([m[k] for m in pending]))
        old = self.values.get(k)
        self.values[k] = v if old is None else (
            self.decay * old + (1 - self.decay) * v)
      self._pending = []
    return self.values


class Stopwatch:
  """Wall-clock seconds since construction."""

  def __init__(self):
    self.start = time.perf_counter()

  def __call__(self) -> float:
    return time.perf_counter() - self.start


def to_device(tree):
  """A device copy (never aliasing the caller's arrays, so safe to donate)."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def to_numpy(tree):
  return jax.tree.map(np.asarray, tree)


def progress(total: int, desc: str, disable: bool = False):
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True,
              mininterval=1.0)


def hidden_states(fn: Callable, ids: np.ndarray, mask: np.ndarray,
                  buckets: np.ndarray, batch_size: int, dim: int,
                  desc: str = "encode", show_progress: bool = False
                  ) -> np.ndarray:
  """fn(ids, mask) -> [B, T, dim] for every row, bucket by bucket (short
  rows are not padded to the widest); positions beyond a row's bucket are
  zero. A frozen encoder's outputs, computed once before training.

  Args:
    fn: the (jitted) encoder on a batch of [B, T] ids and mask.
    ids, mask: [N, W] token arrays.
    buckets: [N] each row's padded length (`bucket_by_edges`).
    batch_size: rows per call (the last batch of a bucket is zero-padded).
    dim: the hidden size.
    desc, show_progress: the progress bar.

  Returns:
    [N, W, dim] float32.

  Example:
    >>> ids = np.array([[5, 6, 0], [7, 8, 9]])
    >>> out = hidden_states(lambda i, m: (i * m)[..., None] * 1.0, ids,
    ...                     (ids > 0).astype(np.int32), np.array([2, 3]), 4, 1)
    >>> out[..., 0].tolist()
    [[5.0, 6.0, 0.0], [7.0, 8.0, 9.0]]
  """
  out = np.zeros(ids.shape + (dim,), np.float32)
  batches = list(eval_batches(buckets, batch_size))
  bar = progress(len(batches), desc, disable=not show_progress)
  for b in batches:
    b_mask = take_rows(mask, b.index, b.length)
    b_mask[:, 0] = 1      # padded rows attend to one token: no NaN softmax
    h = np.asarray(fn(take_rows(ids, b.index, b.length), b_mask))
    keep = b.index >= 0
    out[b.index[keep], :b.length] = h[keep]
    bar.update(1)
  bar.close()
  return out
