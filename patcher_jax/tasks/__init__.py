"""Task runtimes: a base model + benchmark turned into cached queries, memory
and the checks a sequential-editing stream asks for.

Both runtimes answer the same calls (duck-typed): `mistakes(bank, idxs)`,
`edit_task(bank, i, rng, noise_samples, max_neurons)`, `after_edit(bank, i)`,
`memory_rows(i, copies)`, `accuracy(bank, split)`,
`split_correct(bank, split)`, `stream_accuracy(bank, idxs)`,
`rephrases_before(i)` (the unedited model on record i's rephrases),
`target(i)`, `answers(bank, idxs)` (answer strings), plus `tail`, `dim`,
`max_neurons`, `memory0`, `val_memory0`; for requests that arrive one by one
(the Editor): `add_to_stream(records)` and `predict(bank, texts)`.
"""
import os

import numpy as np

from patcher_jax import configs

# Deprecated: configs.stream_settings(task, mode)["max_neurons"] (read from
# there, so it is not a second source).
MAX_NEURONS = {mode: s["max_neurons"] for mode, s in configs.STREAM.items()}


def edit_config(task: str, mode: str = "fast", **overrides):
  """Deprecated alias of `patcher_jax.configs.get`."""
  import warnings  # pylint: disable=g-import-not-at-top
  warnings.warn("tasks.edit_config is deprecated: use configs.get",
                DeprecationWarning, stacklevel=2)
  return configs.get(task, mode, **overrides)


def build_runtime(task, bench, base, *, seed, train_sub_size, memory_size=0,
                  log=print):
  """The runtime of a base model on a benchmark, as run.py uses it.

  The train split is shuffled with the seed and cut into the TrainR subset
  (`train_sub_size` records) and the memory set (the rest, or its first
  `memory_size`): disjoint, as the reference's. A train split too small
  for both is halved between them. Queries are cached next to the base
  model (they depend only on it and on the records).
  """
  from patcher_jax.tasks.classification import ClassificationRuntime  # pylint: disable=g-import-not-at-top
  from patcher_jax.tasks.seq2seq import Seq2SeqRuntime  # pylint: disable=g-import-not-at-top
  train = list(bench.train)
  perm = np.random.default_rng(seed + 1).permutation(len(train))
  train = [train[i] for i in perm]
  if train_sub_size > len(train) // 2:
    log(f"note: train split of {len(train)} records: TrainR subset and "
        f"memory set get {len(train) // 2} and {len(train) - len(train) // 2}"
        f" (asked: {train_sub_size} for TrainR)")
    train_sub_size = len(train) // 2
  sub, rest = train[:train_sub_size], train[train_sub_size:]
  memory = rest[:memory_size] if memory_size else rest
  cls = ClassificationRuntime if task == "fever" else Seq2SeqRuntime
  cache_dir = os.path.join(base.path, "runtime") if base.path else None
  return cls(base.model, base.params, base.tokenizer, bench.edit, sub,
             bench.test, memory, bench.val, cache_dir=cache_dir, log=log)
