"""Fine-tune the QA seq2seq (zsRE): MiniLM-initialised BART, frozen encoder.

Recipe (measured feasible on 2 CPU cores, see README.md here): the encoder is
frozen, so its outputs are computed once per training question; each step runs
only the decoder (initialised from MiniLM's top layers, fresh
cross-attention) under teacher forcing. The shared word embeddings are frozen
too: they are also the encoder's input table (whose cached outputs must stay
valid) and, tied, the LM head.

Loss: token cross-entropy (optionally label-smoothed, the reference used 0.1)
averaged over the answer tokens of the batch (``label_mask``).
"""
import functools
import math
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from patcher_jax.models import qa_format
from patcher_jax.models import train_utils as tu

Params = Dict[str, Any]


class Seq2SeqSettings(NamedTuple):
  """Training recipe of the QA model (all of it enters the cache key)."""
  seed: int = 0
  decoder_layers: int = 2  # used when warm-starting from a BERT encoder
  # Untied: the LM head starts as a copy of the word embeddings and trains,
  # while the shared table (the frozen encoder's input) stays fixed. A tied,
  # frozen head learned ~1.7x slower per step (README.md).
  tie_word_embeddings: bool = False
  learning_rate: float = 1e-3
  weight_decay: float = 0.01
  warmup_steps: int = 100
  batch_size: int = 32
  epochs: float = 8.0  # passes over records, one random phrasing each
  # Small train sets get more passes: at least `min_steps` steps (at most
  # `max_epochs` passes). Benchmarks of 2,400 records with one phrasing each
  # had 600 steps at 8 passes and reached train EM 0.57-0.81 only (BUILD.md).
  min_steps: int = 1500
  max_epochs: float = 40.0
  # Stop as soon as the teacher-forced exact match on every record's input
  # (= its greedy EM) reaches this, checked after each pass beyond `epochs`
  # (extra passes stop once they are no longer needed). None: never check.
  target_train_em: Optional[float] = 0.98
  label_smoothing: float = 0.0
  # Dropout off while training the base model: memorising facts was faster
  # (README.md). The config keeps bart-base's rates for the editor.
  train_dropout: bool = False
  length_multiple: int = 8  # source buckets (for the one-off encoder pass)
  tgt_buckets: Tuple[int, ...] = (3, 6)  # decoder lengths (+ the data width)
  max_src_len: int = 64  # caps; actual padding is sized from the data
  max_tgt_len: int = 24
  train_on_rephrases: bool = True  # also the records' trainable rephrases
  max_rephrases: Optional[int] = 2  # at most this many of them per record
  max_seconds: Optional[float] = None  # hard stop (breaks reproducibility)
  eval_batch_size: int = 128


def seq2seq_model(config):
  from transformers import FlaxBartForConditionalGeneration  # pylint: disable=g-import-not-at-top
  return FlaxBartForConditionalGeneration(config, _do_init=False)


def is_decoder_param(path: Tuple[str, ...]) -> bool:
  """Trainable under the frozen-encoder recipe: the decoder's own weights and
  an untied LM head (a tied one is the frozen shared embedding)."""
  return path[:2] == ("model", "decoder") or path[0] == "lm_head"


def seq2seq_loss(logits: jax.Array, labels: jax.Array, mask: jax.Array,
                 label_smoothing: float = 0.0) -> jax.Array:
  """Mean (smoothed) cross-entropy over the masked label tokens."""
  v = logits.shape[-1]
  target = jax.nn.one_hot(labels, v)
  if label_smoothing:
    target = optax.smooth_labels(target, label_smoothing)
  ce = optax.softmax_cross_entropy(logits.astype(jnp.float32), target)
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# --------------------------------------------------------------------------
# Data.


class QAArrays(NamedTuple):
  """Padded arrays of a QA set; ``src_buckets`` gives each source's length."""
  arrays: Dict[str, np.ndarray]
  src_buckets: np.ndarray


def qa_arrays(tokenizer, questions: Sequence[str], answers: Sequence[str],
              settings: Seq2SeqSettings, src_width: Optional[int] = None,
              tgt_width: Optional[int] = None) -> QAArrays:
  """Encodes with widths sized from the data (rounded, capped)."""
  s = settings
  src_len = qa_format.source_lengths(tokenizer, questions)
  tgt_len = qa_format.source_lengths(tokenizer, answers)
  if src_width is None:
    src_width = min(s.max_src_len,
                    tu.round_up(int(src_len.max()), s.length_multiple))
  if tgt_width is None:
    tgt_width = min(s.max_tgt_len, int(tgt_len.max()))
  arrays = qa_format.encode_qa(tokenizer, questions, answers, src_width,
                               tgt_width)
  buckets = tu.bucket_lengths(src_len, s.length_multiple, src_width)
  return QAArrays(arrays, buckets)


def encoder_outputs(model, params: Params, input_ids: np.ndarray,
                    attention_mask: np.ndarray, buckets: np.ndarray,
                    batch_size: int = 128, show_progress: bool = False
                    ) -> np.ndarray:
  """The (frozen) encoder's last hidden state for every source, [N, W, H].

  Runs bucket by bucket (short sources are not padded to the widest one);
  positions beyond a source's bucket are zero and masked downstream.
  """
  encode = qa_format._jitted_encode(model)  # pylint: disable=protected-access
  return tu.hidden_states(functools.partial(encode, params), input_ids,
                          attention_mask, buckets, batch_size,
                          model.config.d_model, show_progress=show_progress)


# --------------------------------------------------------------------------
# Training.


def scheduled_steps(per_epoch: int, settings: Seq2SeqSettings) -> int:
  """Steps to plan: `epochs` passes, raised to `min_steps` for small data but
  to at most `max_epochs` passes.

  Example:
    >>> s = Seq2SeqSettings(epochs=8, min_steps=2000, max_epochs=40)
    >>> scheduled_steps(75, s), scheduled_steps(300, s), scheduled_steps(10, s)
    (2000, 2400, 400)
  """
  s = settings
  steps = max(s.epochs * per_epoch, min(s.min_steps, s.max_epochs * per_epoch))
  return max(1, int(round(steps)))


def _tf_em_checker(model, arrays, hidden, rows, tgt_buckets, batch_size):
  """A function params -> teacher-forced exact match over `rows` (all answer
  tokens and the end token argmax-correct, i.e. greedy decoding returns the
  answer)."""
  from transformers.modeling_flax_outputs import FlaxBaseModelOutput  # pylint: disable=g-import-not-at-top
  rows = np.asarray(rows)

  @jax.jit
  def correct(params, batch):
    out = model.decode(
        batch["decoder_input_ids"],
        FlaxBaseModelOutput(last_hidden_state=batch["hidden"]),
        encoder_attention_mask=batch["attention_mask"],
        decoder_attention_mask=batch["decoder_attention_mask"],
        params=params, train=False)
    m = batch["label_mask"]
    ok = (jnp.argmax(out.logits, -1) == batch["labels"]) | (m == 0)
    return jnp.all(ok, -1) & (jnp.sum(m, -1) > 0)

  def check(params) -> float:
    hits = []
    for b in tu.eval_batches(tgt_buckets[rows], batch_size):
      index = np.where(b.index >= 0, rows[np.maximum(b.index, 0)], -1)
      batch = {k: tu.take_rows(arrays[k], index, b.length) for k in
               ("decoder_input_ids", "decoder_attention_mask", "labels",
                "label_mask")}
      batch["attention_mask"] = tu.take_rows(arrays["attention_mask"], index)
      batch["attention_mask"][:, 0] = 1
      batch["hidden"] = tu.take_rows(hidden, index)
      hits.append(np.asarray(correct(params, batch))[b.index >= 0])
    return float(np.mean(np.concatenate(hits)))

  return check


def training_pairs(records, train_on_rephrases: bool,
                   trainable_rephrases=None,
                   max_rephrases: Optional[int] = None
                   ) -> Tuple[list, list, np.ndarray]:
  """(questions, answers, groups): each record's input (+ trainable
  rephrases); ``groups`` holds the record index of each question."""
  qs, ans, groups = [], [], []
  for g, r in enumerate(records):
    extra = ()
    if train_on_rephrases:
      extra = (trainable_rephrases(r) if trainable_rephrases is not None
               else r.rephrases)[:max_rephrases]
    for q in (r.input,) + tuple(extra):
      qs.append(q)
      ans.append(r.answers[0])
      groups.append(g)
  return qs, ans, np.asarray(groups, np.int64)


def train_seq2seq(model, params: Params, tokenizer, questions: Sequence[str],
                  answers: Sequence[str], groups: Optional[np.ndarray] = None,
                  settings: Seq2SeqSettings = Seq2SeqSettings(),
                  show_progress: bool = True,
                  encoder_hidden: Optional[np.ndarray] = None
                  ) -> Tuple[Params, Dict]:
  """Fine-tunes the decoder on (question, answer) pairs, encoder frozen.

  ``groups`` ties phrasings of one record together: an epoch shows each group
  once, in a random one of its phrasings (default: each pair its own group).

  Returns the full params tree (numpy) and an info dict (steps, seconds,
  running loss / teacher-forced exact match, greedy EM on each group's first
  question). ``encoder_hidden`` (from ``encoder_outputs`` on ``qa_arrays``)
  skips the encoder pass.
  """
  s = settings
  clock = tu.Stopwatch()
  data = qa_arrays(tokenizer, questions, answers, s)
  a = data.arrays
  hidden = encoder_hidden
  if hidden is None:
    hidden = encoder_outputs(model, params, a["input_ids"],
                             a["attention_mask"], data.src_buckets,
                             s.eval_batch_size, show_progress)
  precompute_s = clock()
  logging.info("seq2seq: encoded %d questions in %.1fs", len(questions),
               precompute_s)

  train_p, frozen_p = tu.to_device(tu.split_params(params, is_decoder_param))
  groups = (np.arange(len(questions)) if groups is None
            else np.asarray(groups))
  from transformers.modeling_flax_outputs import FlaxBaseModelOutput  # pylint: disable=g-import-not-at-top

  def loss_fn(tp, fp, batch, rng):
    out = model.decode(
        batch["decoder_input_ids"],
        FlaxBaseModelOutput(last_hidden_state=batch["hidden"]),
        encoder_attention_mask=batch["attention_mask"],
        decoder_attention_mask=batch["decoder_attention_mask"],
        params=tu.merge_params(tp, fp), train=s.train_dropout,
        dropout_rng=rng if s.train_dropout else None)
    loss = seq2seq_loss(out.logits, batch["labels"], batch["label_mask"],
                        s.label_smoothing)
    return loss, out.logits

  @functools.partial(jax.jit, donate_argnums=(0, 1))  # update in place
  def step(tp, opt_state, fp, batch, rng):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        tp, fp, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, tp)
    tp = optax.apply_updates(tp, updates)
    m = batch["label_mask"]
    ok = (jnp.argmax(logits, -1) == batch["labels"]) | (m == 0)
    rows = jnp.sum(m, -1) > 0
    seq_acc = jnp.sum(jnp.all(ok, -1) * rows) / jnp.maximum(jnp.sum(rows), 1)
    return tp, opt_state, loss, seq_acc

  rng = np.random.default_rng(s.seed)
  key = jax.random.PRNGKey(s.seed)
  running = tu.Running()
  # Batches share a decoder length bucket: most answers are 1-2 word pieces,
  # and the 30k-way LM head on padding positions would dominate the step.
  tgt_buckets = tu.bucket_by_edges(a["label_mask"].sum(1), s.tgt_buckets,
                                   a["labels"].shape[1])
  per_epoch = tu.planned_steps(groups, tgt_buckets, s.batch_size, 1.0)
  num_steps = scheduled_steps(per_epoch, s)
  _, first = np.unique(groups, return_index=True)
  check = None
  if s.target_train_em is not None:
    check = _tf_em_checker(model, a, hidden, first, tgt_buckets,
                           s.eval_batch_size)
  history = []
  tx = tu.adamw_linear(s.learning_rate, num_steps, s.warmup_steps,
                       s.weight_decay)
  opt_state = tx.init(train_p)
  bar = tu.progress(num_steps, "train seq2seq", disable=not show_progress)
  done, stopped_early = 0, False
  reached = False
  while done < num_steps and not stopped_early and not reached:
    if check is not None and done >= s.epochs * per_epoch:
      em = check(tu.merge_params(train_p, frozen_p))
      history.append((done, round(clock(), 1), round(em, 4)))
      logging.info("seq2seq: step %d, train inputs EM (teacher-forced) %.4f",
                   done, em)
      if em >= s.target_train_em:
        reached = True
        break
    subset = tu.one_per_group(groups, rng)
    for b in tu.epoch_batches(tgt_buckets, s.batch_size, rng, subset):
      if done >= num_steps:
        break
      if s.max_seconds is not None and clock() > s.max_seconds:
        stopped_early = True
        break
      batch = {k: tu.take_rows(a[k], b.index, b.length) for k in
               ("decoder_input_ids", "decoder_attention_mask", "labels",
                "label_mask")}
      batch["attention_mask"] = tu.take_rows(a["attention_mask"], b.index)
      batch["attention_mask"][:, 0] = 1
      batch["hidden"] = tu.take_rows(hidden, b.index)
      train_p, opt_state, loss, acc = step(train_p, opt_state, frozen_p,
                                           batch, jax.random.fold_in(key, done))
      done += 1
      if running.add(loss=loss, em_tf=acc):
        vals = running.values
        bar.set_postfix(loss=f"{vals['loss']:.3f}",
                        em_tf=f"{vals['em_tf']:.3f}")
      bar.update(1)
  bar.close()
  running.flush()
  train_s = clock()
  if stopped_early:
    logging.warning("seq2seq: stopped at step %d/%d after %.0fs "
                    "(max_seconds): the result is not reproducible",
                    done, num_steps, train_s)
  new_params = tu.to_numpy(tu.merge_params(train_p, frozen_p))
  # Greedy EM of the final model on each group's first phrasing (a record's
  # input), from the cached encoder outputs (~30 s for 6,000 inputs on two
  # cores: shown as it goes).
  em_bar = tu.progress(len(first), "train EM (greedy)",
                       disable=not show_progress)
  preds = qa_format.greedy_generate(
      model, new_params, a["input_ids"][first], a["attention_mask"][first],
      a["labels"].shape[1], tokenizer, s.eval_batch_size,
      encoder_hidden=hidden[first], on_batch=em_bar.update)
  em_bar.close()
  em = float(np.mean([qa_format.exact_match(p, [answers[i]])
                      for p, i in zip(preds, first)]))
  info = {
      "steps": done, "planned_steps": num_steps, "stopped_early": stopped_early,
      "reached_target": reached, "steps_per_epoch": per_epoch,
      "em_checks": history,
      "num_train_pairs": len(questions), "num_groups": int(len(set(groups))),
      "src_width": int(a["input_ids"].shape[1]),
      "tgt_width": int(a["labels"].shape[1]),
      "tgt_buckets": sorted(set(int(x) for x in tgt_buckets)),
      "precompute_seconds": round(precompute_s, 2),
      "train_seconds": round(train_s, 2),
      "steps_per_second": round(done / max(train_s - precompute_s, 1e-9), 3),
      "final_running_loss": running.values.get("loss", math.nan),
      "final_running_em_tf": running.values.get("em_tf", math.nan),
      "train_inputs_em": em,
      "trainable_params": tu.count_params(train_p),
  }
  return new_params, info
