"""Task runtimes: a base model + benchmark turned into cached queries, memory
and the checks a sequential-editing stream asks for.

Both runtimes answer the same calls (duck-typed): `mistakes(bank, idxs)`,
`edit_task(bank, i, rng, noise_samples, max_neurons)`, `after_edit(bank, i)`,
`memory_rows(i)`, `accuracy(bank, split)`, `stream_accuracy(bank, idxs)`,
plus `tail`, `dim`, `max_neurons`, `memory0`, `val_memory0`.
"""
import os

import numpy as np

# Neurons per edit at most (one per wrong answer token): the reference keeps
# the first 5; fast mode covers every wrong token of the answers here.
MAX_NEURONS = {"parity": 5, "fast": 16}


# Fast-mode zsRE edits hold their fix by a logit lead of 4: on the first 100
# edits GR rose 0.684 -> 0.718 -> 0.764 for leads 0 / 2 / 4 at the same SR,
# locality and edit time; a lead of 8 often cannot be reached (the head
# sits behind a LayerNorm) and runs into the step cap.
_ZSRE_FAST_EDIT_MARGIN = 4.0


# Fact completion by a pretrained causal LM (SmolLM2): tasks/lm_facts.py.
LM_TASKS = ("lm_complete", "lm_chat")
LM_MODELS = ("smollm2",)
# Split sizes of the LM tasks (records): the queries of every record cost a
# forward of the 135M model, so the retention sets are smaller than zsRE's.
# The stream is cut to what `num_edits` edits need (the base model gets ~95%
# of these facts wrong; see build_lm_runtime).
LM_LIMITS = {"train": 1500, "val": 150, "test": 500}
# The residual stream's queries need larger steps than BART's: at lr 0.01 an
# edit takes ~300 steps (the bias walks 0.01 a step to the memory margin),
# at 0.05 ~80 (two records of the tiny scale, same margins reached).
_LM_FAST_LR = 0.05


def edit_config(task: str, mode: str = "fast", **overrides):
  """The edit settings of a task: the mode's, with the reference's memory
  weight for the task (5 for FEVER, 10 for zsRE)."""
  import patcher_jax as pj  # pylint: disable=g-import-not-at-top
  make = {"fast": pj.fast_config, "parity": pj.parity_config}[mode]
  task_defaults = {"mem_weight": 5.0 if task == "fever" else 10.0}
  if task in ("zsre",) + LM_TASKS and mode == "fast":
    task_defaults["edit_margin"] = _ZSRE_FAST_EDIT_MARGIN
  if task in LM_TASKS and mode == "fast":
    task_defaults["lr"] = _LM_FAST_LR
  return make(**{**task_defaults, **overrides})


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


def build_lm_runtime(task, lm, *, scale, seed, train_sub_size, memory_size=0,
                     num_edits=None, log=print):
  """The runtime of a pretrained causal LM (`models.smollm2.LoadedLM`) on the
  embedded facts in the task's prompt form ("lm_complete" / "lm_chat").

  The train split is shuffled and cut into the TrainR subset and the memory
  set as in `build_runtime`; queries are cached next to the converted model.
  With `num_edits`, the edit split is cut to 1.2 * num_edits + 50 records.
  """
  from patcher_jax.data.geo import prompts  # pylint: disable=g-import-not-at-top
  from patcher_jax.tasks.lm_facts import LMFactsRuntime  # pylint: disable=g-import-not-at-top
  form = task[len("lm_"):]
  limits = dict(LM_LIMITS)
  if num_edits:   # every stream record costs a forward: take what is needed
    limits["edit"] = int(1.2 * num_edits) + 50
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
                        log=log)
