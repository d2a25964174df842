"""Closed-book QA (zsRE-style) on a BART, as an editing runtime.

Edits train on cached teacher-forced queries of the last decoder layer; every
metric uses real greedy generation of the patched model (exact match of the
normalised string), as the reference does. Generation runs the unmodified
transformers decoder with the bank inserted by `intercept_methods`.
"""
import functools
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import drafts as drafts_lib
from patcher_jax import editor
from patcher_jax import patch as patch_lib
from patcher_jax.adapters import bart
from patcher_jax.adapters.intercept import run_with_patch
from patcher_jax.data import Record
from patcher_jax.models import qa_format
from patcher_jax.tasks import common

CHECK_BATCH = 8    # decode batch for checks and post-edit evaluation
EVAL_BATCH = 64    # decode batch for retention metrics
REPHRASES = 5      # rephrases checked per edit (the reference's return_view)


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

  max_neurons = 32  # one per wrong answer token; StreamConfig caps it
  # The pool of edit-input variants (`noise_samples` of them): dropout
  # samples of the whole model (the reference's), or with `pool_word_drop`
  # > 0 inputs with hidden words (plus dropout if `pool_dropout`).
  pool_word_drop = 0.0
  pool_dropout = True

  def __init__(self, model, params, tokenizer, stream: Sequence[Record],
               train_sub: Sequence[Record], test: Sequence[Record],
               memory: Sequence[Record], val: Sequence[Record], *,
               max_src_len: int = 32, max_tgt_len: int = 24,
               max_new_tokens: int = 20, batch_size: int = 64,
               cache_dir: Optional[str] = None,
               memory_text: Sequence[str] = (), log=print):
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.tail = bart.make_tail(model.config, params)
    self._head_norm = bart.head_norm(self.tail)
    self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
    self.stream, self.train_sub, self.test = list(stream), list(train_sub), list(
        test)
    self._generate = patched_generate_fn(model, max_new_tokens)
    self._max_new_tokens = max_new_tokens
    self.max_new_tokens = max_new_tokens
    self.batch_size = batch_size
    qa = self._encode_qa
    self.stream_qa = qa(stream)
    splits = {"stream": self.stream, "train": self.train_sub,
              "test": self.test}

    def compute():
      parts = [
          ("q_stream", f"stream queries ({len(stream)})",
           lambda: self._teacher_forced(self.stream_qa, batch_size)),
          ("memory0", f"memory queries ({len(memory)} questions)",
           lambda: self._memory_rows_of(qa(memory), batch_size)),
          ("val_memory0", f"val-memory queries ({len(val)} questions)",
           lambda: self._memory_rows_of(qa(val), batch_size))]
      for name, recs in splits.items():
        parts.append((name, f"base answers and drafts, {name} ({len(recs)})",
                      functools.partial(self._base_drafts, recs)))
      arrays = {}
      for k, (name, what, fn) in enumerate(parts):
        t0 = time.perf_counter()
        out = fn()
        if isinstance(out, drafts_lib.Drafts):
          arrays.update({f"base_{name}_{f}": a
                         for f, a in out._asdict().items()})
        else:
          arrays[name] = out
        log(f"  caching {k + 1}/{len(parts)}: {what} in "
            f"{time.perf_counter() - t0:.0f} s")
      return arrays

    key = common.records_key("seq2seq", max_src_len, max_tgt_len,
                             max_new_tokens, stream, train_sub, test, memory,
                             val)
    arrays = common.load_or_compute(cache_dir, key, compute, log)
    self.q_stream = arrays["q_stream"]
    self.memory0, self.val_memory0 = arrays["memory0"], arrays["val_memory0"]
    self.dim = model.config.d_model
    if len(memory_text):
      self.memory0 = np.concatenate([self.memory0, self._text_rows(
          memory_text, cache_dir, log)])
    # Drafts that most answers of the patched model reproduce: the gold
    # answers of the stream, and the unedited model's own outputs.
    self.gold_stream = self._gold_drafts(self.stream, self.stream_qa,
                                         self.q_stream)
    self.base_drafts = {name: drafts_lib.Drafts(*(
        arrays[f"base_{name}_{f}"] for f in drafts_lib.Drafts._fields))
                        for name in splits}
    self.counts = {"certified": 0, "decoded": 0}
    self._reph_drafts = {}   # stream index -> rephrase gold drafts (prefetch)
    self._checked, self._answered = {}, {}   # answers seen (edit_answers)
    self._reph_before = {}   # stream index -> rephrases the base got right
    log(f"  cached {len(stream)} stream, {len(self.memory0)} memory and "
        f"{len(self.val_memory0)} val-memory decoder queries; drafts of "
        f"{sum(len(d.correct) for d in self.base_drafts.values())} base "
        "answers")

  # -- cached queries --------------------------------------------------------

  def _encode_qa(self, records: Sequence[Record]):
    """Teacher-forcing arrays of records (empty arrays of the right widths
    for no records: a tokenizer cannot encode an empty batch)."""
    if not len(records):
      one = qa_format.encode_qa(self.tokenizer, ["?"], ["?"],
                                self.max_src_len, self.max_tgt_len)
      return {k: v[:0] for k, v in one.items()}
    return qa_format.encode_qa(
        self.tokenizer, [r.input for r in records],
        [r.answers[0] for r in records], self.max_src_len, self.max_tgt_len)

  def _teacher_forced(self, enc, batch_size) -> np.ndarray:
    """Decoder queries [N, T, d] of gold answers (teacher forcing).

    Batched by source length and cropped to each batch's longest source and
    answer: questions are about 13 tokens of the 32 allowed, answers 3 of 24.
    The decoder is causal, so cropping the answer changes no query before it.
    """
    fn = common.jitted_queries(self.model, bart.queries)
    n, t = enc["decoder_input_ids"].shape
    if n == 0:
      return np.zeros((0, t, self.model.config.d_model), np.float32)
    src_len = enc["attention_mask"].sum(-1)
    tgt_len = enc["decoder_attention_mask"].sum(-1)
    out = None
    for rows, width in common.length_batches(src_len, batch_size):
      dec_width = min(t, int(-(-tgt_len[rows].max() // 8) * 8))
      part = [common.take_batch(enc[k], rows, w, batch_size) for k, w in (
          ("input_ids", width), ("attention_mask", width),
          ("decoder_input_ids", dec_width),
          ("decoder_attention_mask", dec_width))]
      part[1][len(rows):, 0] = 1   # padded rows attend to one token
      part[3][len(rows):, 0] = 1
      q = np.asarray(fn(self.params, *part))
      if out is None:
        out = np.zeros((n, t, q.shape[-1]), np.float32)
      out[rows, :dec_width] = q[:len(rows)]
    return out

  def _memory_rows_of(self, enc, batch_size) -> np.ndarray:
    """Every non-pad decoder position except position 0 (the reference's)."""
    q = self._teacher_forced(enc, batch_size)
    mask = np.asarray(enc["decoder_attention_mask"], bool).copy()
    mask[:, 0] = False
    return q[mask]

  def _text_rows(self, texts: Sequence[str], cache_dir, log) -> np.ndarray:
    """Memory rows of unlabeled inputs (memory_text.py): the queries along
    the unedited model's own greedy answer (what locality keeps), every
    position through its eos but the first, as `_memory_rows_of`. Cached
    apart from the benchmark's queries."""
    def compute():
      t0 = time.perf_counter()
      _, mask, queries = self._own_answers(list(texts))
      mask = mask.copy()
      mask[:, 0] = False
      if log:
        log(f"  caching memory text ({len(texts)} inputs, their unedited "
            f"answers) in {time.perf_counter() - t0:.0f} s")
      return {"rows": queries[mask]}
    key = common.records_key("seq2seq-text", self.max_src_len,
                             self._max_new_tokens, list(texts))
    return common.load_or_compute(cache_dir, key, compute, log)["rows"]

  def _gold_drafts(self, records, enc, queries) -> drafts_lib.Drafts:
    labels = np.asarray(enc["labels"])
    mask = np.asarray(enc["label_mask"], bool)
    texts = qa_format.decode_ids(self.tokenizer, np.where(mask, labels, 0))
    correct = np.array([qa_format.exact_match(t, r.answers)
                        for t, r in zip(texts, records)], bool)
    # no cheap certificate: a gold answer matters where the unedited model
    # is wrong, and there its lead is negative anyway
    return drafts_lib.Drafts(queries, labels, mask, correct,
                             np.full(mask.shape, -np.inf, np.float32),
                             np.zeros(mask.shape, np.float32))

  def _base_drafts(self, records, questions=None) -> drafts_lib.Drafts:
    """The unedited model's greedy answers to `questions` (default: the
    records' inputs; answers are checked against the records') and their
    queries."""
    t, d = self._max_new_tokens, self.model.config.d_model
    if not records:
      return drafts_lib.Drafts(np.zeros((0, t, d), np.float32),
                               np.zeros((0, t), np.int32),
                               np.zeros((0, t), bool), np.zeros(0, bool),
                               np.zeros((0, t), np.float32),
                               np.zeros((0, t), np.float32))
    questions = questions or [r.input for r in records]
    ids, mask, queries = self._own_answers(questions)
    texts = qa_format.decode_ids(self.tokenizer, ids)
    correct = np.array([qa_format.exact_match(t, r.answers)
                        for t, r in zip(texts, records)], bool)
    lead, spread = drafts_lib.leads(self.tail, queries, ids, mask)
    return drafts_lib.Drafts(queries, ids, mask, correct, lead, spread)

  def _own_answers(self, questions: Sequence[str]):
    """The unedited model's greedy answers to `questions`: (ids [N, T],
    mask [N, T] through the first eos, teacher-forced queries [N, T, d])."""
    empty = patch_lib.init_bank(8, self.model.config.d_model)
    ids = self._generate_ids(empty, questions, self.batch_size)
    eos = self.model.config.eos_token_id
    is_eos = ids == eos
    # through the first eos (all positions if generation never stopped)
    last = np.where(is_eos.any(-1), is_eos.argmax(-1), ids.shape[1] - 1)
    mask = np.arange(ids.shape[1])[None] <= last[:, None]
    enc = qa_format.encode_sources(self.tokenizer, questions, self.max_src_len)
    start = np.full((len(questions), 1),
                    self.model.config.decoder_start_token_id, np.int32)
    enc["decoder_input_ids"] = np.concatenate([start, ids[:, :-1]], 1)
    enc["decoder_attention_mask"] = mask.astype(np.int32)
    return ids, mask, self._teacher_forced(enc, self.batch_size)

  # -- generation ------------------------------------------------------------

  def generate(self, bank, questions: Sequence[str], batch: int) -> list:
    """Greedy answers of the patched model, batched by question length."""
    if not len(questions):
      return []
    return qa_format.decode_ids(self.tokenizer,
                                self._generate_ids(bank, questions, batch))

  def _generate_ids(self, bank, questions: Sequence[str],
                    batch: int) -> np.ndarray:
    src = qa_format.encode_sources(self.tokenizer, questions, self.max_src_len)
    ids, mask = src["input_ids"], src["attention_mask"]
    out = np.zeros((len(questions), self._max_new_tokens), np.int32)
    for rows, width in common.length_batches(mask.sum(-1), batch):
      b_ids = common.take_batch(ids, rows, width, batch)
      b_mask = common.take_batch(mask, rows, width, batch)
      b_mask[len(rows):, 0] = 1
      out[rows] = np.asarray(self._generate(self.params, bank, b_ids,
                                            b_mask))[:len(rows)]
    return out

  def _correct(self, bank, records: Sequence[Record], drafts=(),
               questions=None, batch=CHECK_BATCH, texts: bool = False):
    """Exact match of the patched model's greedy answers: read off the first
    draft that certainly holds (drafts.py), decoded for real otherwise.

    Returns [N] bool, or ([N] bool, the N answer strings) with `texts`.
    """
    questions = questions or [r.input for r in records]
    known = np.full(len(records), -1, np.int8)
    answers = [None] * len(records)
    for d in drafts:
      todo = np.flatnonzero(known < 0)
      if not len(todo):
        break
      known[todo] = drafts_lib.check(self.tail, bank, d.take(todo),
                                     self._max_new_tokens, self._head_norm)
      if texts:
        held = todo[known[todo] >= 0]
        for j, t in zip(held, qa_format.decode_ids(self.tokenizer, np.where(
            d.mask[held], d.tokens[held], 0))):
          answers[j] = t
    todo = np.flatnonzero(known < 0)
    self.counts["certified"] += len(records) - len(todo)
    self.counts["decoded"] += len(todo)
    if len(todo):
      preds = self.generate(bank, [questions[i] for i in todo], batch)
      known[todo] = [qa_format.exact_match(p, records[i].answers)
                     for p, i in zip(preds, todo)]
      for i, p in zip(todo, preds):
        answers[i] = p
    return (known.astype(bool), answers) if texts else known.astype(bool)

  # -- requests that arrive one by one (the Editor) ---------------------------

  def add_to_stream(self, records: Sequence[Record]) -> np.ndarray:
    """Append records to the edit stream (their queries and drafts computed
    now, not cached); returns their stream indices."""
    records = list(records)
    enc = self._encode_qa(records)
    q = self._teacher_forced(enc, self.batch_size)
    gold = self._gold_drafts(records, enc, q)
    base = self._base_drafts(records)
    start = len(self.stream)
    self.stream_qa = {k: np.concatenate([np.asarray(self.stream_qa[k]),
                                         np.asarray(v)])
                      for k, v in enc.items()}
    self.q_stream = np.concatenate([self.q_stream, q])
    concat = lambda a, b: drafts_lib.Drafts(*(np.concatenate(x)
                                              for x in zip(a, b)))
    self.gold_stream = concat(self.gold_stream, gold)
    self.base_drafts["stream"] = concat(self.base_drafts["stream"], base)
    self.stream += records
    return np.arange(start, len(self.stream))

  def predict(self, bank, texts: Sequence[str]) -> list:
    """The patched model's greedy answers to `texts`."""
    return self.generate(bank, list(texts), CHECK_BATCH)

  # -- what the stream asks --------------------------------------------------

  def _stream_drafts(self, idxs, edited: bool):
    """Drafts of stream records, likeliest first: an edited record should
    answer its gold answer; any other mostly answers as before (and the
    cheap certificate settles those)."""
    idxs = np.asarray(idxs, int)
    gold, base = (self.gold_stream.take(idxs),
                  self.base_drafts["stream"].take(idxs))
    return (gold, base) if edited else (base, gold)

  def base_mistakes(self) -> int:
    """Stream records the unedited model gets wrong (what can be edited)."""
    return int((~self.base_drafts["stream"].correct).sum())

  def mistakes(self, bank, idxs) -> np.ndarray:
    right, texts = self._correct(bank, [self.stream[i] for i in idxs],
                                 self._stream_drafts(idxs, edited=False),
                                 texts=True)
    # what the records answered with this bank: an edit's "before" answer
    self._checked = dict(zip((int(i) for i in idxs), texts))
    return ~right

  def edit_task(self, bank, i: int, rng, noise_samples: int = 0,
                max_neurons: int = 5):
    """Cached inputs of editing stream record i; None if teacher forcing
    finds no wrong token (generation and teacher forcing can disagree)."""
    enc = self.stream_qa
    # Crop to the answer positions (the mask is a prefix): each step runs the
    # LM head on every position it is given.
    mask = np.asarray(enc["label_mask"][i], bool)
    width = editor.task_width(int(mask.sum()), mask.shape[0])
    noisy = None
    if noise_samples:
      # the decoder is causal: positions past `width` change nothing before;
      # the source is cropped to its length (rounded up to 8: few compiles),
      # since padding costs as much as words in every encoder layer
      src = -(-int(enc["attention_mask"][i].sum()) // 8) * 8
      arrays = [jnp.asarray(enc[k][i:i + 1, :n]) for k, n in (
          ("input_ids", src), ("attention_mask", src),
          ("decoder_input_ids", width), ("decoder_attention_mask", width))]
      pool_fn = (_augment_fn(self.pool_word_drop, self.pool_dropout)
                 if self.pool_word_drop else bart.noisy_queries)
      noisy = common.jitted_noisy_queries(self.model, pool_fn, noise_samples)(
          self.params, rng, *arrays)
    task = _make_edit_task(
        self.tail, bank, self.q_stream[i][:width], enc["labels"][i][:width],
        mask[:width], noisy_queries=noisy,
        # at most one neuron per position: width-4 tasks need only 4 slots
        max_neurons=min(max_neurons, width))
    # Slots for the neurons this edit needs (most need one or two): every
    # step scans the memory once per slot, used or not.
    return editor.fit_slots(task)

  def prefetch(self, idxs) -> None:
    """Make `after_edit(bank, idxs[0])` need (almost) no model call: if its
    rephrases are not ready, prepare those of every record in `idxs` (the
    next ones a stream will visit) in one batched pass: their gold drafts
    (teacher forced) and base drafts (the unedited model's answers).

    Neither depends on the bank: computing them ahead in blocks replaces
    per-edit model calls, and with both drafts most rephrase answers of the
    patched model are certified instead of decoded (drafts.py).
    """
    if not len(idxs) or int(idxs[0]) in self._reph_drafts:
      return
    todo = [int(i) for i in idxs if int(i) not in self._reph_drafts]
    owners, questions = [], []
    for i in todo:
      reph = list(self.stream[i].rephrases)[:REPHRASES]
      owners.extend([i] * len(reph))
      questions.extend(reph)
    drafts = None
    if questions:
      records = [self.stream[i] for i in owners]
      answers = [r.answers[0] for r in records]
      enc = qa_format.encode_qa(self.tokenizer, questions, answers,
                                self.max_src_len, self.max_tgt_len)
      drafts = (self._gold_drafts(records, enc, self._teacher_forced(
          enc, self.batch_size)), self._base_drafts(records, questions))
    owners = np.asarray(owners, int)
    for i in todo:
      rows = np.flatnonzero(owners == i)
      self._reph_drafts[i] = (None if drafts is None else
                              tuple(d.take(rows) for d in drafts))

  def after_edit(self, bank, i: int):
    """(edit correct now, rephrases correct, rephrases total)."""
    r = self.stream[i]
    if i not in self._reph_drafts:
      self.prefetch([i])
    more = self._reph_drafts.pop(i)     # used once: the cache stays small
    # the base drafts are the unedited model's answers: GR before the edits
    self._reph_before[i] = 0 if more is None else int(more[1].correct.sum())
    # the edit's own drafts are cached; rows: the input, then its rephrases
    drafts = self._stream_drafts([i], edited=True)
    reph = list(r.rephrases)[:REPHRASES]
    if more is not None:
      drafts = tuple(drafts_lib.Drafts(*(np.concatenate(a) for a in zip(d, m)))
                     for d, m in zip(drafts, more))
    questions = [r.input] + reph
    right, texts = self._correct(bank, [r] * len(questions), drafts,
                                 questions, texts=True)
    self._answered = {i: (self._checked.get(i), texts[0])}
    return bool(right[0]), int(right[1:].sum()), len(reph)

  def edit_answers(self, i: int):
    """(answer before, answer after) of the edit of stream record i, as the
    last `mistakes` check and `after_edit` saw them (None if not seen)."""
    return self._answered.get(i, (None, None))

  def rephrases_before(self, i: int):
    """(rephrases of record i the unedited model gets right, their number):
    read off their base drafts (the unedited model's own answers)."""
    n = len(list(self.stream[i].rephrases)[:REPHRASES])
    if i not in self._reph_before:
      if i not in self._reph_drafts:
        self.prefetch([i])
      more = self._reph_drafts[i]
      self._reph_before[i] = 0 if more is None else int(
          more[1].correct.sum())
    return self._reph_before.pop(i), n

  def target(self, i: int) -> str:
    return self.stream[i].answers[0]

  def answers(self, bank, idxs) -> list:
    """The patched model's answers (strings) to stream records `idxs`."""
    idxs = np.asarray(idxs, int)
    records = [self.stream[i] for i in idxs]
    drafts = (self.base_drafts["stream"].take(idxs),
              self.gold_stream.take(idxs))
    return self._correct(bank, records, drafts, texts=True)[1]

  def memory_rows(self, i: int, copies: int = 0) -> np.ndarray:
    """The queries an edit adds to memory: its teacher-forced decoder
    positions but the first, as the memory set's. With `copies`, the
    reference's rows: every position of its `copies` training copies,
    flattened, then [1:-1] (so position 0 of copies 1.. is in)."""
    mask = np.asarray(self.stream_qa["decoder_attention_mask"][i], bool)
    rows = self.q_stream[i][mask]
    return np.tile(rows, (copies, 1))[1:-1] if copies else rows[1:]

  def split_correct(self, bank, split: str,
                    limit: int | None = None) -> np.ndarray:
    """[N] bool: the patched model's answers to a split ("train": the TrainR
    subset, "test") are right."""
    records = {"train": self.train_sub, "test": self.test}[split][:limit]
    if not records:
      return np.zeros(0, bool)
    drafts = self.base_drafts[split].take(np.arange(len(records)))
    return self._correct(bank, records, (drafts,), batch=EVAL_BATCH)

  def accuracy(self, bank, split: str, limit: int | None = None) -> float:
    right = self.split_correct(bank, split, limit)
    return float(np.mean(right)) if len(right) else float("nan")

  def stream_accuracy(self, bank, idxs) -> float:
    if not len(idxs):
      return float("nan")
    return float(np.mean(self._correct(bank, [self.stream[i] for i in idxs],
                                       self._stream_drafts(idxs, edited=True),
                                       batch=EVAL_BATCH)))


@functools.lru_cache(maxsize=8)
def _augment_fn(word_drop: float, dropout: bool):
  """One function object per setting (jitted_noisy_queries caches by it)."""
  return functools.partial(bart.augmented_queries, word_drop=word_drop,
                           train=dropout)


# One compile per task shape instead of op-by-op dispatch on every edit.
_make_edit_task = jax.jit(editor.make_edit_task,
                          static_argnames=("max_neurons",))
