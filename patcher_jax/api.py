"""The Editor: Transformer-Patcher behind the request format of model-editing
libraries (EasyEdit's `prompts`, `target_new`, `rephrase_prompts`,
`locality_inputs`).

  editor = patcher_jax.Editor.from_task("zsre")      # cached default base
  results = editor.edit(prompts=[...], target_new=[...])
  editor.predict(["..."]); editor.revert(results[0]["edit_id"])
  editor.save("bank/"); editor = patcher_jax.Editor.load("bank/")

Requests are edited one after another (sequential editing) with the same
pieces a benchmark stream uses: the task runtime caches the request's queries
(`add_to_stream`), `runtime.edit_task` + `editor.edit` train the neurons, the
request's queries join the memory. Only mistakes are edited: a request the
model already answers right gets an id and no neuron.
"""
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import configs
from patcher_jax import editor as editor_lib
from patcher_jax import memory as memory_lib
from patcher_jax import patch as patch_lib
from patcher_jax.data import Record

TASKS = configs.TASKS


class BaseMismatchError(ValueError):
  """A patch bank loaded onto a base model it was not made on."""


def params_fingerprint(params, config=None) -> str:
  """sha256 (16 hex digits) of a model's parameters (paths, dtypes, shapes,
  bytes) and config: the identity a patch bank is tied to."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
    h.update(a.tobytes())
  if config is not None:
    h.update(config.to_json_string(use_diff=False).encode())
  return h.hexdigest()[:16]


def _edit_fn():
  return jax.jit(editor_lib.edit, static_argnums=7)


_EDIT = _edit_fn()


class Editor:
  """A base model, its patch bank and memory, edited request by request.

  Build one with `from_task` or `from_pretrained`; `edit`, `predict`,
  `revert`, `save`, `load`, `export` (patcher_jax.export).

  Attributes:
    task: "fever" (labels SUPPORTS / REFUTES), "zsre" (free-text answers),
      or "lm_complete" / "lm_chat" (a pretrained SmolLM2 completing prompts:
      `target_new` is the wanted continuation; `from_task` only).
    config: the EditConfig (`configs.get(task, mode)` unless given).
    settings: the stream settings (`configs.stream_settings`).
    bank: the PatchBank.
    edits: one dict per request edited so far: id, request, neurons, ...
  """

  def __init__(self, task: str, base, runtime, *, mode: str = "fast",
               config: Optional[editor_lib.EditConfig] = None,
               seed: int = 0, source: Optional[Dict[str, Any]] = None):
    """Use `from_task` / `from_pretrained`; `base` is a
    models.base_cache.BaseModel, `runtime` its task runtime."""
    self.task, self.mode, self.base, self.runtime = task, mode, base, runtime
    self.config = config or configs.get(task, mode)
    self.settings = configs.stream_settings(task, mode)
    self.seed = seed
    self.source = source or {}
    self.fingerprint = params_fingerprint(base.params, base.config)
    self.bank = patch_lib.init_bank(64, runtime.dim)
    self.memory = memory_lib.init_memory(runtime.memory0.reshape(
        -1, runtime.dim), 1024)
    self.val_memory = memory_lib.init_memory(runtime.val_memory0.reshape(
        -1, runtime.dim), 1024)
    self.added_rows = np.zeros((0, runtime.dim), np.float32)
    self.edits: List[Dict[str, Any]] = []
    self.next_id = 0

  # -- construction ----------------------------------------------------------

  @classmethod
  def from_task(cls, task: str, cache_dir: Optional[str] = None, *,
                mode: str = "fast", scale: str = "full",
                memory_text: Optional[Sequence[str]] = None,
                memory_text_file: Optional[str] = None, **kwargs):
    """The task's default base model (cached; trained on first use, as
    run.py does) with the task's train split as memory.

    Args:
      task: "fever", "zsre", "lm_complete" or "lm_chat".
      cache_dir: base-model cache (default $PATCHER_JAX_CACHE or
        ~/.cache/patcher_jax).
      mode: "fast" or "parity" (configs.get).
      scale: size of the embedded benchmark the base is trained on.
      memory_text: unlabeled inputs whose rows join the memory (no answers
        needed; see patcher_jax.memory_text).
      memory_text_file: a file of such inputs, one a line (recorded in
        saved banks, so `load` rebuilds the same memory).
      **kwargs: passed to the constructor (config, seed).
    """
    _check_task(task)
    if task in configs.LM_TASKS:
      if memory_text is not None or memory_text_file is not None:
        raise ValueError(f"{task}: memory_text is not supported for a "
                         "pretrained LM")
      return cls._from_lm(task, cache_dir, scale, **kwargs)
    from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
    from patcher_jax.models import base_cache, minilm  # pylint: disable=g-import-not-at-top
    bench = load_benchmark(task, scale=scale,
                           tokenizer=minilm.load_tokenizer(), max_len=32)
    base = base_cache.load_or_train_base(task, bench, cache_dir=cache_dir,
                                         data_key=f"embedded:{scale}")
    texts, text_source = _memory_text(memory_text, memory_text_file,
                                      base.tokenizer)
    runtime = _runtime(task, base, bench.train, bench.val, texts)
    return cls(task, base, runtime, mode=mode, source={
        "kind": "task", "task": task, "scale": scale, "cache_dir": cache_dir,
        **text_source}, **kwargs)

  @classmethod
  def _from_lm(cls, task: str, cache_dir: Optional[str], scale: str,
               **kwargs):
    """SmolLM2 (converted once, cached) with the task's train facts as
    memory: `target_new` edits of a pretrained decoder-only LM."""
    from patcher_jax import tasks  # pylint: disable=g-import-not-at-top
    from patcher_jax.data.geo import prompts  # pylint: disable=g-import-not-at-top
    from patcher_jax.models import smollm2  # pylint: disable=g-import-not-at-top
    from patcher_jax.tasks.lm_facts import LMFactsRuntime  # pylint: disable=g-import-not-at-top
    lm = smollm2.load(cache_dir, log=None)
    limits = {**tasks.LM_LIMITS, "edit": 0, "test": 0}
    bench = prompts.lm_benchmark(task[len("lm_"):],
                                 prompts.tokenizer_chat(lm.tokenizer), scale,
                                 0, limits)
    runtime = LMFactsRuntime(
        lm.model, lm.params, lm.tokenizer, [], [], [], list(bench.train),
        list(bench.val), cache_dir=(os.path.join(lm.path, "runtime")
                                    if lm.path else None),
        log=None, **configs.runtime_settings(task))
    return cls(task, lm, runtime, source={
        "kind": "task", "task": task, "scale": scale,
        "cache_dir": cache_dir}, **kwargs)

  @classmethod
  def from_pretrained(cls, model_dir: str, task: str, *,
                      memory: Optional[Sequence[Record]] = None,
                      val_memory: Optional[Sequence[Record]] = None,
                      mode: str = "fast", memory_file: Optional[str] = None,
                      memory_text: Optional[Sequence[str]] = None,
                      memory_text_file: Optional[str] = None, **kwargs):
    """A local model folder: a transformers checkpoint (a BERT classifier
    with one logit for "fever", a BART for conditional generation for
    "zsre"; safetensors or Flax msgpack) or a base-model cache folder.

    Args:
      model_dir: the folder.
      task: "fever" or "zsre".
      memory: records whose queries the new neurons must stay silent on
        (default: the embedded benchmark's train split).
      val_memory: the val memory of the parity stop rule (default: the
        embedded benchmark's val split, or `memory` if that is given).
      mode, **kwargs: as `from_task`.
      memory_file: a KILT jsonl file of memory records (instead of
        `memory`; recorded in saved banks, so `load` rebuilds the same
        memory).
      memory_text, memory_text_file: unlabeled inputs joining the memory
        (as `from_task`).
    """
    _check_task(task)
    if task in configs.LM_TASKS:
      raise ValueError(f"{task}: the pretrained LM comes with the package; "
                       "use Editor.from_task")
    base = _load_model(model_dir, task)
    if memory_file is not None:
      from patcher_jax.data import read_kilt_jsonl  # pylint: disable=g-import-not-at-top
      memory = read_kilt_jsonl(memory_file, task).records
    given = memory is not None
    if memory is None:
      from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
      bench = load_benchmark(task, tokenizer=base.tokenizer, max_len=32,
                             truncate=True)
      memory, val_memory = bench.train, val_memory or bench.val
    texts, text_source = _memory_text(memory_text, memory_text_file,
                                      base.tokenizer)
    runtime = _runtime(task, base, memory, val_memory or memory, texts)
    return cls(task, base, runtime, mode=mode, source={
        "kind": "pretrained", "model_dir": os.path.abspath(model_dir),
        "task": task, "memory_file": memory_file and os.path.abspath(
            memory_file), "memory_given": given and not memory_file,
        **text_source}, **kwargs)

  # -- editing ---------------------------------------------------------------

  def edit(self, prompts: Sequence[str], target_new: Sequence[str],
           rephrase_prompts=None, locality_inputs=None,
           **unused) -> List[Dict[str, Any]]:
    """Edit the requests one after another.

    Args:
      prompts: the inputs (questions / claims).
      target_new: the wanted outputs (answers; "SUPPORTS"/"REFUTES").
      rephrase_prompts: per request a string or a list of strings (or None):
        rephrasings that should change too (generality).
      locality_inputs: EasyEdit's {name: {"prompt": [...]}}, one prompt (or
        list of prompts) per request: inputs that should not change
        (locality = share of them answered as the unedited model does).
      **unused: other EasyEdit arguments (ground_truth, ...) are ignored.

    Returns:
      Per request: {"edit_id", "prompt", "target_new", "edited" (False if
      the model was right already or the edit failed: no neuron kept),
      "neurons", "steps", "pre": {...},
      "post": {...}} with "reliability", "generality", "locality" in pre
      and post (None where the request gave no such inputs).
    """
    del unused
    prompts, target_new = list(prompts), list(target_new)
    if len(prompts) != len(target_new):
      raise ValueError(f"{len(prompts)} prompts but {len(target_new)} "
                       "target_new")
    reph = _per_request(rephrase_prompts, len(prompts), "rephrase_prompts")
    local = _locality_prompts(locality_inputs, len(prompts))
    records = [self._record(p, t, r) for p, t, r in zip(prompts, target_new,
                                                         reph)]
    idxs = self.runtime.add_to_stream(records)
    return [self._edit_one(int(i), rec, loc)
            for i, rec, loc in zip(idxs, records, local)]

  def _record(self, prompt: str, target: str, reph) -> Record:
    if self.task == "fever":
      from patcher_jax.data import FEVER_LABELS  # pylint: disable=g-import-not-at-top
      if target not in FEVER_LABELS:
        raise ValueError(f"target_new {target!r}: fever targets are "
                         f"{' or '.join(FEVER_LABELS)}")
    return Record(id=f"edit-{self.next_id}", input=prompt, answers=(target,),
                  rephrases=tuple(reph))

  def _metrics(self, bank, i: int, local: List[str], base_local) -> dict:
    ok, r_ok, r_n = self.runtime.after_edit(bank, i)
    loc = None
    if local:
      now = self.runtime.predict(bank, local)
      loc = float(np.mean([a == b for a, b in zip(now, base_local)]))
    return {"reliability": float(ok),
            "generality": r_ok / r_n if r_n else None, "locality": loc}

  def _edit_one(self, i: int, record: Record, local: List[str]) -> dict:
    edit_id = self.next_id
    self.next_id += 1
    empty = patch_lib.init_bank(8, self.runtime.dim)
    base_local = self.runtime.predict(empty, local) if local else []
    pre = self._metrics(self.bank, i, local, base_local)
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), edit_id)
    task = None
    if bool(self.runtime.mistakes(self.bank, [i])[0]):
      task = self.runtime.edit_task(self.bank, i, key,
                                    self.settings["noise_samples"],
                                    self.settings["max_neurons"],
                                    self.settings.get("neuron_margin", 0.0))
    neurons, steps, success = 0, 0, None
    negatives = self.settings.get("subject_negatives", 0)
    if task is not None and negatives and hasattr(self.runtime,
                                                  "negative_rows"):
      # the subject asked otherwise (as a stream does; an API edit never
      # drops an earlier negative it overrides)
      rows = np.asarray(self.runtime.negative_rows(i, negatives)[0],
                        np.float32)
      if self.settings.get("negatives_in_memory", True):
        self._remember(rows)
      else:
        k = max(8, -(-len(rows) // 8) * 8)
        task = task._replace(
            negatives=jnp.asarray(np.pad(rows, ((0, k - len(rows)), (0, 0)))),
            negatives_mask=jnp.arange(k) < len(rows))
    if task is not None:
      self.bank = patch_lib.ensure_capacity(self.bank,
                                            task.neuron_mask.shape[-1])
      self.bank, stats = _EDIT(self.runtime.tail, self.bank, task,
                               self.memory, self.val_memory, key,
                               jnp.int32(edit_id), self.config)
      neurons, steps = int(stats.num_neurons), int(stats.steps)
      success = bool(stats.success)
      self._remember(self.runtime.memory_rows(i))
    post = self._metrics(self.bank, i, local, base_local)
    request = {"prompt": record.input, "target_new": record.answers[0],
               "rephrase_prompts": list(record.rephrases),
               "locality_prompts": list(local)}
    self.edits.append({"edit_id": edit_id, "request": request,
                       "edited": neurons > 0, "neurons": neurons,
                       "steps": steps, "train_success": success})
    return {"edit_id": edit_id, "prompt": record.input,
            "target_new": record.answers[0], "edited": neurons > 0,
            "neurons": neurons, "steps": steps, "pre": pre, "post": post}

  def _remember(self, rows) -> None:
    """The edit's queries join both memories (as in a stream)."""
    rows = np.asarray(rows, np.float32)
    if self.settings["reference_memory"]:
      rows = np.tile(rows, (8, 1))[1:-1]   # the reference's 8 copies
    else:
      rows = memory_lib.deduplicate(rows)
    self.added_rows = np.concatenate([self.added_rows, rows])
    self.memory = append_rows(self.memory, rows)
    self.val_memory = append_rows(self.val_memory, rows)

  # -- using the patched model -----------------------------------------------

  def predict(self, texts: Sequence[str]) -> List[str]:
    """The patched model's outputs: greedy answers (zsre) or labels
    SUPPORTS / REFUTES (fever)."""
    return self.runtime.predict(self.bank, list(texts))

  def revert(self, edit_id: int) -> None:
    """Remove exactly the neurons of edit `edit_id` (the bank then equals,
    slot for slot, one that never received them). Its memory rows stay:
    they only make later edits more careful."""
    known = {e["edit_id"]: e for e in self.edits}
    if edit_id not in known or known[edit_id].get("reverted"):
      raise KeyError(f"no live edit with id {edit_id} (ids: "
                     f"{sorted(k for k, e in known.items() if not e.get('reverted'))})")
    self.bank = patch_lib.compact(patch_lib.drop_edit(self.bank, edit_id))
    known[edit_id]["reverted"] = True

  # -- artifacts -------------------------------------------------------------

  def save(self, directory: str) -> str:
    """Write the patch bank to `directory` (see patcher_jax.bank_io)."""
    from patcher_jax import bank_io  # pylint: disable=g-import-not-at-top
    return bank_io.save(self, directory)

  @classmethod
  def load(cls, directory: str, base: Optional["Editor"] = None,
           cache_dir: Optional[str] = None) -> "Editor":
    """Restore a saved editor. `base`: an Editor on the base model to load
    onto (default: rebuilt from the saved source); a different base model
    raises BaseMismatchError naming both fingerprints."""
    from patcher_jax import bank_io  # pylint: disable=g-import-not-at-top
    return bank_io.load(cls, directory, base, cache_dir)

  def export(self, out_dir: str) -> str:
    """A standard transformers checkpoint of the patched model (see
    patcher_jax.export)."""
    if self.task in configs.LM_TASKS:
      raise NotImplementedError(
          f"{self.task}: a Llama checkpoint has no place for GELU neurons "
          "with biases (BUILD.md, Decoder-only); save() the bank instead")
    from patcher_jax import export as export_lib  # pylint: disable=g-import-not-at-top
    return export_lib.export(self, out_dir)

  @property
  def live_edits(self) -> List[int]:
    return [e["edit_id"] for e in self.edits if not e.get("reverted")]


def append_rows(memory: memory_lib.Memory, rows) -> memory_lib.Memory:
  """`memory` with `rows` [r, d] appended (grown first if needed)."""
  rows = jnp.asarray(rows, jnp.float32)
  if not rows.shape[0]:
    return memory
  memory = memory_lib.ensure_capacity(memory, rows.shape[0])
  return memory_lib.append(memory, rows, jnp.ones(rows.shape[0], bool))


def _check_task(task: str) -> None:
  if task not in TASKS + configs.LM_TASKS:
    raise ValueError(f"unknown task {task!r} (expected one of "
                     f"{TASKS + configs.LM_TASKS})")


def _per_request(values, n: int, name: str) -> List[List[str]]:
  """None / a list of (str or list of str), one per request."""
  if values is None:
    return [[] for _ in range(n)]
  values = list(values)
  if len(values) != n:
    raise ValueError(f"{name}: {len(values)} entries for {n} requests")
  return [[v] if isinstance(v, str) else list(v or []) for v in values]


def _locality_prompts(locality_inputs, n: int) -> List[List[str]]:
  """EasyEdit's {name: {"prompt": [...], ...}} -> per request its prompts."""
  out = [[] for _ in range(n)]
  for name, block in (locality_inputs or {}).items():
    if not isinstance(block, dict) or "prompt" not in block:
      raise ValueError(f"locality_inputs[{name!r}] needs a 'prompt' list")
    for i, p in enumerate(_per_request(block["prompt"], n,
                                       f"locality_inputs[{name!r}]")):
      out[i].extend(p)
  return out


def _memory_text(texts, path, tokenizer):
  """(unlabeled memory inputs, what a saved bank records of them) from a
  list or a file (not both)."""
  from patcher_jax import memory_text  # pylint: disable=g-import-not-at-top
  if texts is not None and path is not None:
    raise ValueError("give memory_text or memory_text_file, not both")
  if path is not None:
    texts, lines = memory_text.read_inputs(path)
    memory_text.check_lengths(texts, lines, tokenizer, 32, path)
    return texts, {"memory_text_file": os.path.abspath(path)}
  if texts is not None:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not all(isinstance(t, str) and t.strip() for t in texts):
      raise ValueError("memory_text: non-empty strings, one input each")
    return texts, {"memory_text_given": True}
  return [], {}


def _runtime(task: str, base, memory: Sequence[Record],
             val: Sequence[Record], memory_text: Sequence[str] = ()):
  """The task runtime over an empty stream (requests are added later) with
  the memory sets (and the rows of unlabeled `memory_text`); their queries
  are cached next to a cached base."""
  from patcher_jax.tasks.classification import ClassificationRuntime  # pylint: disable=g-import-not-at-top
  from patcher_jax.tasks.seq2seq import Seq2SeqRuntime  # pylint: disable=g-import-not-at-top
  cls = ClassificationRuntime if task == "fever" else Seq2SeqRuntime
  cache = os.path.join(base.path, "runtime") if base.path else None
  return cls(base.model, base.params, base.tokenizer, [], [], [],
             list(memory), list(val), cache_dir=cache,
             memory_text=list(memory_text), log=lambda *_: None)


def _load_model(model_dir: str, task: str):
  """A BaseModel from a base-model cache folder or a transformers folder."""
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(model_dir):
    raise FileNotFoundError(f"{model_dir}: no such model folder")
  if os.path.isfile(os.path.join(model_dir, "info.json")) and os.path.isdir(
      os.path.join(model_dir, "params")):
    base = base_cache.load_base(model_dir)
    if base.task != task:
      raise ValueError(f"{model_dir} holds a {base.task} model, not {task}")
    return base
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  from transformers import (FlaxBartForConditionalGeneration,  # pylint: disable=g-import-not-at-top
                            FlaxBertForSequenceClassification)
  cls = (FlaxBertForSequenceClassification if task == "fever"
         else FlaxBartForConditionalGeneration)
  model = cls.from_pretrained(model_dir)
  params = jax.device_put(model.params)   # on the device once, as load_base
  tok = AutoTokenizer.from_pretrained(model_dir)
  model = cls(model.config, _do_init=False)
  return base_cache.BaseModel(task, model, params, tok, model.config,
                              {"model_dir": os.path.abspath(model_dir)},
                              None)
