"""Closed-book QA (zsRE-style) on a BART, as an editing runtime.

Edits train on cached teacher-forced queries of the last decoder layer; every
metric uses real greedy generation of the patched model (exact match of the
normalised string), as the reference does. Generation runs the unmodified
transformers decoder with the bank inserted by `intercept_methods`.
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import editor
from patcher_jax import patch as patch_lib
from patcher_jax.adapters import bart
from patcher_jax.adapters.intercept import run_with_patch
from patcher_jax.data import Record
from patcher_jax.models import qa_format
from patcher_jax.tasks import common

CHECK_BATCH = 8    # decode batch for checks and post-edit evaluation
EVAL_BATCH = 64    # decode batch for retention metrics


@functools.lru_cache(maxsize=8)
def patched_generate_fn(model, max_new_tokens: int):
  """jit(fn(params, bank, input_ids, attention_mask) -> greedy ids)."""
  decode = qa_format.greedy_decode_fn(model, max_new_tokens)
  site = bart.site(model.config)

  def fn(params, bank, ids, mask):
    hidden = model.encode(ids, attention_mask=mask,
                          params=params).last_hidden_state
    out, _ = run_with_patch(
        lambda: decode(params, hidden, mask), site,
        lambda q: patch_lib.bank_output(bank, q))
    return out

  return jax.jit(fn)


class Seq2SeqRuntime:
  """Cached queries, memory and generation-based checks for one BART."""

  max_neurons = 5

  def __init__(self, model, params, tokenizer, stream: Sequence[Record],
               train_sub: Sequence[Record], test: Sequence[Record],
               memory: Sequence[Record], val: Sequence[Record], *,
               max_src_len: int = 32, max_tgt_len: int = 24,
               max_new_tokens: int = 20, batch_size: int = 64, log=print):
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.tail = bart.make_tail(model.config, params)
    self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
    self.stream, self.train_sub, self.test = list(stream), list(train_sub), list(
        test)
    self._generate = patched_generate_fn(model, max_new_tokens)
    qa = lambda recs: qa_format.encode_qa(
        tokenizer, [r.input for r in recs], [r.answers[0] for r in recs],
        max_src_len, max_tgt_len)
    self.stream_qa = qa(stream)
    self.q_stream = self._teacher_forced(self.stream_qa, batch_size)
    self.memory0 = self._memory_rows_of(qa(memory), batch_size)
    self.val_memory0 = self._memory_rows_of(qa(val), batch_size)
    log(f"  cached {len(stream)} stream, {len(self.memory0)} memory and "
        f"{len(self.val_memory0)} val-memory decoder queries")
    self.dim = self.q_stream.shape[-1]

  # -- cached queries --------------------------------------------------------

  def _teacher_forced(self, enc, batch_size) -> np.ndarray:
    """Decoder queries [N, T, d] of gold answers (teacher forcing)."""
    fn = common.jitted_queries(self.model, bart.queries)
    keys = ("input_ids", "attention_mask", "decoder_input_ids",
            "decoder_attention_mask")
    n = enc["input_ids"].shape[0]
    out = []
    for s in range(0, n, batch_size):
      part = [np.asarray(enc[k][s:s + batch_size]) for k in keys]
      pad = batch_size - part[0].shape[0]
      if pad:
        part = [np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)])
                for a in part]
        part[1][-pad:, 0] = 1
        part[3][-pad:, 0] = 1
      out.append(np.asarray(fn(self.params, *part))[:batch_size - pad])
    return np.concatenate(out) if out else np.zeros((0, self.max_tgt_len - 1, 0))

  def _memory_rows_of(self, enc, batch_size) -> np.ndarray:
    """Every non-pad decoder position except position 0 (the reference's)."""
    q = self._teacher_forced(enc, batch_size)
    mask = np.asarray(enc["decoder_attention_mask"], bool).copy()
    mask[:, 0] = False
    return q[mask]

  # -- generation ------------------------------------------------------------

  def generate(self, bank, questions: Sequence[str], batch: int) -> list:
    src = qa_format.encode_sources(self.tokenizer, questions, self.max_src_len)
    ids, mask = src["input_ids"], src["attention_mask"]
    out = []
    for s in range(0, len(questions), batch):
      b_ids, b_mask = ids[s:s + batch], mask[s:s + batch].copy()
      pad = batch - b_ids.shape[0]
      if pad:
        b_ids = np.concatenate([b_ids, np.zeros((pad, b_ids.shape[1]),
                                                b_ids.dtype)])
        b_mask = np.concatenate([b_mask, np.zeros((pad, b_mask.shape[1]),
                                                  b_mask.dtype)])
        b_mask[-pad:, 0] = 1
      out.append(np.asarray(self._generate(self.params, bank, b_ids,
                                           b_mask))[:batch - pad])
    if not out:
      return []
    return qa_format.decode_ids(self.tokenizer, np.concatenate(out))

  def _correct(self, bank, records: Sequence[Record], questions=None,
               batch=CHECK_BATCH) -> np.ndarray:
    questions = questions or [r.input for r in records]
    preds = self.generate(bank, questions, batch)
    return np.array([qa_format.exact_match(p, r.answers)
                     for p, r in zip(preds, records)], bool)

  # -- what the stream asks --------------------------------------------------

  def mistakes(self, bank, idxs) -> np.ndarray:
    return ~self._correct(bank, [self.stream[i] for i in idxs])

  def edit_task(self, bank, i: int, rng, noise_samples: int = 0):
    """Cached inputs of editing stream record i; None if teacher forcing
    finds no wrong token (generation and teacher forcing can disagree)."""
    enc = self.stream_qa
    noisy = None
    if noise_samples:
      arrays = [jnp.asarray(enc[k][i:i + 1]) for k in (
          "input_ids", "attention_mask", "decoder_input_ids",
          "decoder_attention_mask")]
      noisy = bart.noisy_queries(self.model, self.params, *arrays, rng,
                                 noise_samples)
    # Crop to the answer positions (the mask is a prefix): each step runs the
    # LM head on every position it is given.
    mask = np.asarray(enc["label_mask"][i], bool)
    width = editor.task_width(int(mask.sum()), mask.shape[0])
    if noisy is not None:
      noisy = noisy[:, :width]
    task = _make_edit_task(
        self.tail, bank, self.q_stream[i][:width], enc["labels"][i][:width],
        mask[:width], noisy_queries=noisy, max_neurons=self.max_neurons)
    return task if bool(task.neuron_mask.any()) else None

  def after_edit(self, bank, i: int):
    r = self.stream[i]
    reph = list(r.rephrases)[:5]
    right = self._correct(bank, [r] * (1 + len(reph)), [r.input] + reph)
    return bool(right[0]), int(right[1:].sum()), len(reph)

  def memory_rows(self, i: int) -> np.ndarray:
    mask = np.asarray(self.stream_qa["decoder_attention_mask"][i], bool).copy()
    mask[0] = False
    return self.q_stream[i][mask]

  def accuracy(self, bank, split: str, limit: int | None = None) -> float:
    records = {"train": self.train_sub, "test": self.test}[split][:limit]
    if not records:
      return float("nan")
    return float(np.mean(self._correct(bank, records, batch=EVAL_BATCH)))

  def stream_accuracy(self, bank, idxs) -> float:
    if not len(idxs):
      return float("nan")
    return float(np.mean(self._correct(bank, [self.stream[i] for i in idxs],
                                       batch=EVAL_BATCH)))


# One compile per task shape instead of op-by-op dispatch on every edit.
_make_edit_task = jax.jit(editor.make_edit_task,
                          static_argnames=("max_neurons",))
