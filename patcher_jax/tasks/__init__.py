"""Task runtimes: a base model + benchmark turned into cached queries, memory
and the checks a sequential-editing stream asks for.

The runtimes (classification, seq2seq, lm_facts) answer the same calls
(duck-typed): `mistakes(bank, idxs)`,
`edit_task(bank, i, rng, noise_samples, max_neurons, neuron_margin)`,
`after_edit(bank, i)`, `memory_rows(i, copies)`, `accuracy(bank, split)`,
`split_correct(bank, split)`, `stream_accuracy(bank, idxs)`,
`rephrases_before(i)` (the unedited model on record i's rephrases),
`target(i)`, `answers(bank, idxs)` (answer strings), plus `tail`, `dim`,
`max_neurons`, `memory0`, `val_memory0`; for requests that arrive one by one
(the Editor): `add_to_stream(records)` and `predict(bank, texts)`.
Optional (the seq2seq runtime): `negative_rows(i, per_relation)` and
`prefetch_negatives(idxs, per_relation)`, the subject negatives of a
record (data/geo/negatives.py, else data/learned_templates.py;
`StreamConfig.subject_negatives`), and
`checks_by_row` (True: a check costs by the row, so the stream checks the
first record of a window alone before the rest; seq2seq and lm_* runtimes),
and `split_correct_later` / `stream_accuracy_later` (the same checks with
the model's work started on the lookahead thread: curve points and final
metrics; seq2seq), and `plan_edits(orders, num_edits)` (before a
stream, `stream.plan`: prepare what the records it will likely edit need;
seq2seq drafts their rephrases). Optional in any runtime: `edit_answers(i)`
(the answers before and after the edit of record i, as its checks saw them;
classification, seq2seq).
"""
import os

import numpy as np

from patcher_jax import configs

# Deprecated: configs.stream_settings(task, mode)["max_neurons"] (read from
# there, so it is not a second source).
MAX_NEURONS = {mode: s["max_neurons"] for mode, s in configs.STREAM.items()}


# Fact completion by a pretrained causal LM (SmolLM2): tasks/lm_facts.py.
LM_TASKS = configs.LM_TASKS
LM_MODELS = ("smollm2",)
# Split sizes of the LM tasks (records): the queries of every record cost a
# forward of the 135M model. The whole train split (TrainR 2,000, memory
# 4,000): with a memory of 750 facts, 100 edits already changed 6 % of the
# held-out continuations (TrainR 0.936), with 4,000 0.6 % (0.994). The test
# split is cut to 500; the stream to what `num_edits` edits need (the base
# model gets ~98 % of these facts wrong; see build_lm_runtime).
LM_LIMITS = {"train": 6000, "val": 150, "test": 500}


def edit_config(task: str, mode: str = "fast", **overrides):
  """Deprecated alias of `patcher_jax.configs.get`."""
  import warnings  # pylint: disable=g-import-not-at-top
  warnings.warn("tasks.edit_config is deprecated: use configs.get",
                DeprecationWarning, stacklevel=2)
  return configs.get(task, mode, **overrides)


def build_runtime(task, bench, base, *, seed, train_sub_size, memory_size=0,
                  memory_text=(), log=print, **settings):
  """The runtime of a base model on a benchmark, as run.py uses it.

  The train split is shuffled with the seed and cut into the TrainR subset
  (`train_sub_size` records) and the memory set (the rest, or its first
  `memory_size`): disjoint, as the reference's. A train split too small
  for both is halved between them. `memory_text`: unlabeled inputs whose
  rows join the memory (memory_text.py). Queries are cached next to the
  base model (they depend only on it and on the records). `settings`
  replace the runtime class's settings (`pool_word_drop`, `pool_dropout`,
  `learned_negatives`, ...) on the new runtime; a name the class does not
  have is a ValueError.
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
  unknown = sorted(k for k in settings if not hasattr(cls, k))
  if unknown:
    raise ValueError(f"{cls.__name__} has no setting {', '.join(unknown)}")
  cache_dir = os.path.join(base.path, "runtime") if base.path else None
  runtime = cls(base.model, base.params, base.tokenizer, bench.edit, sub,
                bench.test, memory, bench.val, cache_dir=cache_dir,
                memory_text=list(memory_text), log=log)
  for name, value in settings.items():
    setattr(runtime, name, value)
  return runtime


def build_lm_runtime(task, lm, *, scale, seed, train_sub_size, memory_size=0,
                     num_edits=None, log=print, **settings):
  """The runtime of a pretrained causal LM (`models.smollm2.LoadedLM`) on the
  embedded facts in the task's prompt form ("lm_complete" / "lm_chat").

  The train split is shuffled and cut into the TrainR subset and the memory
  set as in `build_runtime`; queries are cached next to the converted model.
  With `num_edits`, the edit split is cut to 1.05 * num_edits + 30 records
  (SmolLM2 gets ~98 % of them wrong: enough mistakes, and every stream
  record costs the forwards of its prompt and five rephrases).
  `settings` override `configs.runtime_settings(task)` (whiten, word_drop).
  """
  from patcher_jax.data.geo import prompts  # pylint: disable=g-import-not-at-top
  from patcher_jax.tasks.lm_facts import LMFactsRuntime  # pylint: disable=g-import-not-at-top
  form = task[len("lm_"):]
  limits = dict(LM_LIMITS)
  if num_edits:   # every stream record costs a forward: take what is needed
    limits["edit"] = int(1.05 * num_edits) + 30
  bench = prompts.lm_benchmark(form, prompts.tokenizer_chat(lm.tokenizer),
                               scale, seed, limits)
  train = list(bench.train)
  perm = np.random.default_rng(seed + 1).permutation(len(train))
  train = [train[i] for i in perm]
  train_sub_size = min(train_sub_size, len(train) // 2)
  sub, rest = train[:train_sub_size], train[train_sub_size:]
  memory = rest[:memory_size] if memory_size else rest
  log(f"data ({task}): stream {len(bench.edit)}, TrainR {len(sub)}, memory "
      f"{len(memory)}, val {len(bench.val)}, test {len(bench.test)} records")
  cache_dir = os.path.join(lm.path, "runtime") if lm.path else None
  return LMFactsRuntime(lm.model, lm.params, lm.tokenizer, bench.edit, sub,
                        bench.test, memory, bench.val, cache_dir=cache_dir,
                        log=log, **configs.runtime_settings(task,
                                                             **settings))
