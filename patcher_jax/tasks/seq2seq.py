"""Closed-book QA (zsRE-style) on a BART, as an editing runtime.

Edits train on cached teacher-forced queries of the last decoder layer; every
metric uses real greedy generation of the patched model (exact match of the
normalised string), as the reference does. Generation runs the unmodified
transformers decoder with the bank inserted by `intercept_methods`.
"""
import functools
import time
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import drafts as drafts_lib
from patcher_jax import editor
from patcher_jax import lookahead
from patcher_jax import patch as patch_lib
from patcher_jax.adapters import bart
from patcher_jax.adapters.intercept import run_with_patch
from patcher_jax.data import Record
from patcher_jax.data import learned_templates
from patcher_jax.data.geo import negatives as negatives_lib
from patcher_jax.models import qa_format
from patcher_jax.tasks import common

CHECK_BATCH = 8    # decode batch for checks and post-edit evaluation
EVAL_BATCH = 64    # decode batch for retention metrics
REPHRASES = 5      # rephrases checked per edit (the reference's return_view)
REPHRASE_CHUNK = 512   # stream records whose rephrase drafts one pass makes
PLAN_SLACK = 1.05      # records drafted ahead per edit a stream asks for
PLAN_EXTRA = 8         # ... and this many more per stream


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


@functools.lru_cache(maxsize=8)
def drafting_generate_fn(model, max_new_tokens: int):
  """jit(fn(params, input_ids, attention_mask) -> (ids, queries, lead)): the
  unedited model's greedy answers with, at every step, the query at the
  patch site [B, T, d] and the greedy token's lead [B, T] (drafts.py)."""
  site = bart.site(model.config)

  def capture(step):
    out, captured = run_with_patch(step, site)
    return out, captured[0]

  decode = qa_format.greedy_decode_fn(model, max_new_tokens, capture=capture)

  def fn(params, ids, mask):
    hidden = model.encode(ids, attention_mask=mask,
                          params=params).last_hidden_state
    return decode(params, hidden, mask)

  return jax.jit(fn)


class Seq2SeqRuntime:
  """Cached queries, memory and generation-based checks for one BART."""

  max_neurons = 32  # one per wrong answer token; StreamConfig caps it
  # The pool of edit-input variants (`noise_samples` of them): dropout
  # samples of the whole model (the reference's), or with `pool_word_drop`
  # > 0 inputs with hidden words (plus dropout if `pool_dropout`).
  pool_word_drop = 0.0
  pool_dropout = True
  # None: every sample runs the whole model (the reference's copies); k: the
  # encoder runs k times (0: once, no dropout), the decoder per sample
  # (bart.decoder_noisy_queries).
  pool_encoder_samples = None
  # Subject negatives of records the geo templates do not know, from the
  # templates learned from the memory's questions (data/learned_templates.py;
  # run.py --learned_negatives). Off by default: on the other-domain
  # benchmark they bought little locality for some generality (BUILD.md).
  learned_negatives = False
  # Checking an answer runs the vocabulary head at its positions: the
  # stream checks the likeliest next mistake alone first (stream.py).
  checks_by_row = True

  def __init__(self, model, params, tokenizer, stream: Sequence[Record],
               train_sub: Sequence[Record], test: Sequence[Record],
               memory: Sequence[Record], val: Sequence[Record], *,
               max_src_len: int = 32, max_tgt_len: int = 24,
               max_new_tokens: int = 20, batch_size: int = 64,
               cache_dir: Optional[str] = None,
               memory_text: Sequence[str] = (), log=print):
    # on the device once (a no-op for a loaded base model): numpy leaves
    # would be copied in at every jitted call, the tail's with them
    params = jax.device_put(params)
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
        log(f"  caching {k + 1}/{len(parts)}: {what} ...")  # up to ~30 s
        out = fn()
        if isinstance(out, drafts_lib.Drafts):
          arrays.update({f"base_{name}_{f}": a
                         for f, a in out._asdict().items()})
        else:
          arrays[name] = out
        log(f"  cached {k + 1}/{len(parts)} in "
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
    self._ahead = lookahead.Lookahead()
    # the rephrase drafts of the records a stream will likely edit, cached as
    # the queries are (`plan_edits`); any other record's are computed ahead
    # (`prefetch`): none until a stream plans
    self._cache_dir, self._log = cache_dir, log
    self._reph_store = (np.full(len(self.stream), -1), np.zeros(1, int), ())
    self.counts = {"certified": 0, "decoded": 0}
    self._reph_drafts = {}   # stream index -> (its block's drafts, rows)
    self._pools = common.Pools(self._ahead)   # dropout pools drawn ahead
    self._checked, self._answered = {}, {}   # answers seen (edit_answers)
    self._reph_before = {}   # stream index -> rephrases the base got right
    self._sources = {}       # split -> its questions, encoded
    self._negatives = {}     # (stream index, per relation) -> (block, rows)
    # what `_templates` is learned from, on first use
    self._memory_questions = [r.input for r in memory] + list(memory_text)
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
      queries, mask = self._answer_queries(qa_format.encode_sources(
          self.tokenizer, list(texts), self.max_src_len))
      if log:
        log(f"  caching memory text ({len(texts)} inputs, their unedited "
            f"answers) in {time.perf_counter() - t0:.0f} s")
      return {"rows": queries[mask]}
    key = common.records_key("seq2seq-text", self.max_src_len,
                             self._max_new_tokens, list(texts))
    return common.load_or_compute(cache_dir, key, compute, log)["rows"]

  def plan_edits(self, orders: Sequence[np.ndarray], num_edits: int) -> None:
    """Compute (or read from the cache) the rephrase drafts of the records a
    stream visiting `orders` will likely edit: in each order, the first
    PLAN_SLACK x num_edits + PLAN_EXTRA records the unedited model gets
    wrong (an edit can fail or be skipped). Records it gets right are left
    out: an edit breaks one rarely. `after_edit` and `rephrases_before`
    read the drafts; any other record gets its drafts ahead (`prefetch`) or
    when its edit needs them. A 1000-edit stream edits about a third of the
    zsRE edit split, so this drafts about a third of its rephrases. The
    cache is per record set: another seed or num_edits drafts again.

    Args:
      orders: each stream's stream indices, in visiting order.
      num_edits: the edits each stream asks for.
    """
    wrong = ~np.asarray(self.base_drafts["stream"].correct, bool)
    want = (int(np.ceil(PLAN_SLACK * num_edits)) + PLAN_EXTRA
            if num_edits > 0 else 0)
    idxs = np.unique(np.concatenate([np.zeros(0, int)] + [
        o[wrong[o]][:want] for o in map(np.asarray, orders)]))
    planned = np.flatnonzero(self._reph_store[0] >= 0)
    if not np.array_equal(idxs, planned):   # planned already: no-op
      self._reph_store = self._stream_rephrases(idxs)

  def _stream_rephrases(self, idxs: np.ndarray):
    """(position, starts, (gold, base)) of the drafts of the rephrases (the
    first REPHRASES) of stream records `idxs`, packed (`drafts.pack`; record
    i's rows are starts[p]:starts[p + 1], p = position[i], -1 if not
    drafted), computed once and cached next to the queries: they depend on
    the base model only."""
    owners = np.asarray(self._rephrase_rows(idxs)[0], int)
    counts = np.bincount(owners, minlength=len(self.stream))[idxs]
    log = self._log

    def compute():
      t0, gold, base = time.perf_counter(), [], []
      for start in range(0, max(len(idxs), 1), REPHRASE_CHUNK):
        stop = min(start + REPHRASE_CHUNK, len(idxs))
        g, b = self._rephrase_chunk(idxs[start:stop])
        gold.append(g)
        base.append(b)
        if log and len(idxs):
          log(f"  caching rephrase drafts of the likely edits: "
              f"{sum(counts[:stop])} of {sum(counts)} "
              f"({time.perf_counter() - t0:.0f} s)")
      return {"starts": np.concatenate([[0], np.cumsum(counts)]),
              **{f"gold_{k}": v for k, v in drafts_lib.pack(gold).items()},
              **{f"base_{k}": v for k, v in drafts_lib.pack(base).items()}}

    key = common.records_key("seq2seq-rephrases", REPHRASES, self.max_src_len,
                             self.max_tgt_len, self._max_new_tokens,
                             [self.stream[i] for i in idxs])
    arrays = common.load_or_compute(self._cache_dir, key, compute, None)
    position = np.full(len(self.stream), -1)
    position[idxs] = np.arange(len(idxs))
    return position, arrays["starts"], tuple(
        {k[len(kind) + 1:]: v for k, v in arrays.items()
         if k.startswith(kind + "_")} for kind in ("gold", "base"))

  def _rephrase_rows(self, idxs):
    """(owners, questions): one row per checked rephrase (the first
    REPHRASES) of stream records `idxs`, in order, and its record."""
    owners, questions = [], []
    for i in idxs:
      reph = list(self.stream[i].rephrases)[:REPHRASES]
      owners.extend([i] * len(reph))
      questions.extend(reph)
    return owners, questions

  def _rephrase_chunk(self, idxs):
    """(gold drafts, base drafts) of the rephrases of stream records `idxs`
    (one row per rephrase, in order): teacher forcing on the background
    thread while this one decodes."""
    owners, questions = self._rephrase_rows(idxs)
    records = [self.stream[i] for i in owners]
    enc = self._encode_qa([r._replace(input=q)
                           for r, q in zip(records, questions)])
    gold_q = self._ahead.submit(lookahead.SOON, self._teacher_forced, enc,
                                self.batch_size)
    base = self._base_drafts(records, questions)
    return self._gold_drafts(records, enc, self._ahead.wait(gold_q)), base

  def _answer_queries(self, src):
    """(queries [N, T, d], mask [N, T]) along the unedited model's greedy
    answers to encoded sources: the rows a memory takes of an unlabeled
    input, every position through its eos but the first (no tokenizer: may
    run in the background)."""
    ids, queries, _, _ = self._draft_arrays(src, spreads=False)
    mask = _through_eos(ids, self.model.config.eos_token_id)
    mask[:, 0] = False
    return queries, mask

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
    if not records:   # a tokenizer cannot encode an empty batch
      return drafts_lib.Drafts(np.zeros((0, t, d), np.float32),
                               np.zeros((0, t), np.int32),
                               np.zeros((0, t), bool), np.zeros(0, bool),
                               np.zeros((0, t), np.float32),
                               np.zeros((0, t), np.float32))
    questions = questions or [r.input for r in records]
    src = qa_format.encode_sources(self.tokenizer, questions, self.max_src_len)
    return self._finish_base_drafts(records, self._draft_arrays(src))

  def _draft_arrays(self, src, spreads: bool = True):
    """Model work of `_base_drafts` (no tokenizer: may run in the
    background): (ids [N, T], queries [N, T, d], lead, spread [N, T]) of the
    greedy answers to the encoded sources, batched by length (spread None
    unless `spreads`)."""
    n, t, d = (len(src["input_ids"]), self._max_new_tokens,
               self.model.config.d_model)
    ids, queries = np.zeros((n, t), np.int32), np.zeros((n, t, d), np.float32)
    lead = np.zeros((n, t), np.float32)
    fn = drafting_generate_fn(self.model, t)
    mask = src["attention_mask"]
    for rows, width in common.length_batches(mask.sum(-1), self.batch_size):
      b_ids = common.take_batch(src["input_ids"], rows, width, self.batch_size)
      b_mask = common.take_batch(mask, rows, width, self.batch_size)
      b_mask[len(rows):, 0] = 1
      out = fn(self.params, b_ids, b_mask)
      ids[rows], queries[rows], lead[rows] = (np.asarray(a)[:len(rows)]
                                              for a in out)
    return ids, queries, lead, (drafts_lib.spreads(self.tail, queries)
                                if spreads else None)

  def _finish_base_drafts(self, records, arrays) -> drafts_lib.Drafts:
    """`Drafts` from `_draft_arrays`: answers decoded and checked."""
    ids, queries, lead, spread = arrays
    mask = _through_eos(ids, self.model.config.eos_token_id)
    texts = qa_format.decode_ids(self.tokenizer, ids) if len(ids) else []
    correct = np.array([qa_format.exact_match(t, r.answers)
                        for t, r in zip(texts, records)], bool)
    return drafts_lib.Drafts(queries, ids, mask, correct,
                             np.where(mask, lead, -np.inf), spread)

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
    return self._generate_src(bank, src, batch)

  def _generate_src(self, bank, src, batch: int) -> np.ndarray:
    """Greedy ids [N, T] of the patched model for encoded sources (no
    tokenizer: may run in the background)."""
    ids, mask = src["input_ids"], src["attention_mask"]
    out = np.zeros((len(ids), self._max_new_tokens), np.int32)
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
    settled = self._settle(bank, drafts, len(records))
    src = None
    if (settled < 0).any():
      src = qa_format.encode_sources(
          self.tokenizer, [q for q, k in zip(questions, settled) if k < 0],
          self.max_src_len)
    return self._answered_by(records, drafts, settled, self._decode_rest(
        bank, src, batch), texts)

  def _settle(self, bank, drafts, n: int) -> np.ndarray:
    """[n] int8: which of `drafts` certainly holds for each row (the
    first), -1 if none (no tokenizer: may run in the background)."""
    settled = np.full(n, -1, np.int8)
    for k, d in enumerate(drafts):
      todo = np.flatnonzero(settled < 0)
      if not len(todo):
        break
      held = drafts_lib.check(self.tail, bank, d.take(todo),
                              self._max_new_tokens, self._head_norm) >= 0
      settled[todo[held]] = k
    return settled

  def _decode_rest(self, bank, src, batch):
    """Greedy ids of the rows no draft settled (None if none)."""
    return None if src is None else self._generate_src(bank, src, batch)

  def _answered_by(self, records, drafts, settled, decoded, texts: bool):
    """`_correct`'s result from what `_settle` and `_decode_rest` found."""
    known = np.full(len(records), -1, np.int8)
    answers = [None] * len(records)
    for k, d in enumerate(drafts):
      held = np.flatnonzero(settled == k)
      known[held] = d.correct[held]
      if texts and len(held):
        for j, t in zip(held, qa_format.decode_ids(self.tokenizer, np.where(
            d.mask[held], d.tokens[held], 0))):
          answers[j] = t
    todo = np.flatnonzero(settled < 0)
    self.counts["certified"] += len(records) - len(todo)
    self.counts["decoded"] += len(todo)
    if len(todo):
      preds = qa_format.decode_ids(self.tokenizer, decoded)
      known[todo] = [qa_format.exact_match(p, records[i].answers)
                     for p, i in zip(preds, todo)]
      for i, p in zip(todo, preds):
        answers[i] = p
    return (known.astype(bool), answers) if texts else known.astype(bool)

  def _correct_later(self, bank, records: Sequence[Record], drafts, src,
                     batch: int, texts: bool = False,
                     background: bool = True,
                     priority: int = lookahead.NEXT) -> Callable[[], Any]:
    """`_correct` in two parts, for `src` (the records' questions encoded
    beforehand: the background thread runs no tokenizer). The model's part
    (drafts checked, the rest decoded) starts now, in the background
    (lookahead.py, at `priority`) with `background`; the returned function
    waits for it and returns what `_correct` does."""
    def model_part():
      settled = self._settle(bank, drafts, len(records))
      rest = np.flatnonzero(settled < 0)
      return settled, self._decode_rest(
          bank, _rows_of(src, rest) if len(rest) else None, batch)

    part = (self._ahead.submit(priority, model_part) if background
            else None)
    done = model_part() if part is None else None

    def result():
      settled, decoded = done if part is None else self._ahead.wait(part)
      return self._answered_by(records, drafts, settled, decoded, texts)

    return result

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
                max_neurons: int = 5, neuron_margin: float = 0.0):
    """Cached inputs of editing stream record i; None if teacher forcing
    finds no wrong token (generation and teacher forcing can disagree)."""
    enc = self.stream_qa
    # Crop to the answer positions (the mask is a prefix): each step runs the
    # LM head on every position it is given.
    mask = np.asarray(enc["label_mask"][i], bool)
    width = self._task_width(i)
    noisy = None
    if noise_samples:
      noisy = self._pools.get(i, rng, noise_samples,
                              self._pool_fn(i, noise_samples))
    task = common.make_edit_task(
        self.tail, bank, self.q_stream[i][:width], enc["labels"][i][:width],
        mask[:width], noisy_queries=noisy,
        # at most one neuron per position: width-4 tasks need only 4 slots
        max_neurons=min(max_neurons, width), neuron_margin=neuron_margin)
    # Slots for the neurons this edit needs (most need one or two): every
    # step scans the memory once per slot, used or not.
    return editor.fit_slots(task)

  def prefetch(self, idxs) -> None:
    """Start preparing the rephrase drafts of the records in `idxs` (the
    next ones a stream will visit), in the background (lookahead.py): their
    gold drafts (teacher forced) and base drafts (the unedited model's
    answers), which `after_edit` and `rephrases_before` read.

    Neither depends on the bank: computing them ahead in blocks replaces
    per-edit model calls, and with both drafts most rephrase answers of the
    patched model are certified instead of decoded (drafts.py). Called with
    the next n records every round, it starts a block when the first is
    missing or half are: blocks of about n / 2, begun n / 2 edits early.
    Records the unedited model gets right are left out: an edit breaks one
    rarely, and then `after_edit` drafts it.
    """
    right = self.base_drafts["stream"].correct
    idxs = [int(i) for i in idxs
            if not (self._cached_rephrases(int(i)) or right[int(i)])]
    todo = [i for i in idxs if i not in self._reph_drafts]
    if todo and (idxs[0] in todo or 2 * len(todo) >= len(idxs)):
      self._start_drafts(todo)

  def _start_drafts(self, todo) -> None:
    """Start drafting the rephrases of stream records `todo`, one block, in
    the background."""
    owners, questions = self._rephrase_rows(todo)
    drafts = lambda: None
    if questions:
      records = [self.stream[i] for i in owners]
      # tokenized here: the background thread runs the model only
      enc = qa_format.encode_qa(self.tokenizer, questions,
                                [r.answers[0] for r in records],
                                self.max_src_len, self.max_tgt_len)
      src = qa_format.encode_sources(self.tokenizer, questions,
                                     self.max_src_len)
      arrays = self._in_pieces(
          lambda rows: (self._teacher_forced(_rows_of(enc, rows),
                                             self.batch_size),
                        self._draft_arrays(_rows_of(src, rows))),
          len(questions))

      @functools.cache
      def drafts():
        gold_q, base = arrays()
        return (self._gold_drafts(records, enc, gold_q),
                self._finish_base_drafts(records, base))
    owners = np.asarray(owners, int)
    for i in todo:
      self._reph_drafts[i] = (drafts, np.flatnonzero(owners == i))

  def _in_pieces(self, work: Callable[[np.ndarray], Any], n: int):
    """Run work(rows) in the background over `n` rows, one batch of rows a
    submission (a pool or a check asked for meanwhile waits for one batch,
    not a whole block); returns a function that waits for every piece and
    returns their results concatenated along the rows."""
    pieces = [self._ahead.submit(lookahead.SOON, work, rows)
              for rows in np.array_split(np.arange(n),
                                         -(-n // self.batch_size))]
    return lambda: jax.tree.map(lambda *a: np.concatenate(a),
                                *[self._ahead.wait(p) for p in pieces])

  def _rephrase_drafts(self, i: int, pop: bool):
    """(gold drafts, base drafts) of record i's rephrases (None if it has
    none), waiting for their block if it is under way."""
    if self._cached_rephrases(i):
      position, starts, packed = self._reph_store
      p = position[i]
      if starts[p] == starts[p + 1]:
        return None
      return tuple(drafts_lib.unpack(d, starts[p], starts[p + 1])
                   for d in packed)
    if i not in self._reph_drafts:
      self._start_drafts([i])
    # popped when used; a block's other records stay until theirs are (a
    # record past the plan that no edit needs stays: a few blocks at most)
    drafts, rows = (self._reph_drafts.pop(i) if pop
                    else self._reph_drafts[i])
    block = drafts()
    return None if block is None else tuple(d.take(rows) for d in block)

  def _cached_rephrases(self, i: int) -> bool:
    position = self._reph_store[0]
    return i < len(position) and position[i] >= 0

  def prefetch_pool(self, candidates, rng, noise_samples: int
                    ) -> Optional[int]:
    """Start drawing, in the background, the dropout pool (under `rng`) of
    the first of `candidates` the unedited model gets wrong: the stream's
    likeliest next mistake. `edit_task` uses it if that is the next edit; a
    wrong guess costs only the other core's time.
    Returns the record guessed (None: no candidate).
    """
    i = common.first_base_mistake(candidates,
                                  ~self.base_drafts["stream"].correct)
    if noise_samples and i is not None:
      self._pools.start(i, rng, noise_samples, self._pool_fn(i, noise_samples))
    return i

  def _pool_fn(self, i: int, noise_samples: int):
    """rng -> record i's pool of `noise_samples` dropout samples [S, w, d]
    (a numpy array: computed where it is called)."""
    enc = self.stream_qa
    width = self._task_width(i)
    # the decoder is causal: positions past `width` change nothing before;
    # the source is cropped to its length (rounded up to 8: few compiles),
    # since padding costs as much as words in every encoder layer
    src = -(-int(enc["attention_mask"][i].sum()) // 8) * 8
    arrays = [jnp.asarray(enc[k][i:i + 1, :n]) for k, n in (
        ("input_ids", src), ("attention_mask", src),
        ("decoder_input_ids", width), ("decoder_attention_mask", width))]
    pool_fn = (_augment_fn(self.pool_word_drop, self.pool_dropout)
               if self.pool_word_drop else
               _decoder_pool_fn(self.pool_encoder_samples)
               if self.pool_encoder_samples is not None else
               bart.noisy_queries)
    fn = common.jitted_noisy_queries(self.model, pool_fn, noise_samples)
    return lambda rng: np.asarray(fn(self.params, rng, *arrays))

  # -- subject negatives (data/geo/negatives.py) -----------------------------

  def prefetch_negatives(self, idxs, per_relation: int) -> None:
    """Start computing, in the background, the negative rows
    (`negative_rows`) of the records in `idxs` the unedited model gets
    wrong (the likely edits), in blocks as `prefetch` does."""
    wrong = ~self.base_drafts["stream"].correct
    likely = [int(i) for i in idxs if wrong[int(i)]]
    todo = [i for i in likely if (i, per_relation) not in self._negatives]
    if not todo or (likely[0] not in todo and 2 * len(todo) < len(likely)):
      return
    self._start_negatives(todo, per_relation)

  def _start_negatives(self, idxs, per_relation: int) -> None:
    owners, questions = [], []
    for i in idxs:
      qs = self._negative_questions(i, per_relation)
      owners.extend([i] * len(qs))
      questions.extend(qs)
    owners = np.asarray(owners, int)
    block = None
    if questions:   # tokenized here: the background thread runs the model
      src = qa_format.encode_sources(self.tokenizer, questions,
                                     self.max_src_len)

      answers = self._in_pieces(
          lambda rows: self._answer_queries(_rows_of(src, rows)),
          len(questions))

      @functools.cache
      def rows_of_each():   # only the rows are kept, not the block's queries
        queries, mask = answers()
        return {int(i): (queries[owners == i][mask[owners == i]],
                         mask[owners == i].sum(-1))
                for i in np.unique(owners)}
      block = rows_of_each
    for i in idxs:
      self._negatives[(i, per_relation)] = block

  @functools.cached_property
  def _templates(self) -> learned_templates.TemplateIndex:
    """The memory's question templates (`learned_negatives` only)."""
    return learned_templates.learn(self._memory_questions)

  @functools.cached_property
  def _evaluated(self) -> set:
    """The evaluation's questions (TrainR, TestR): never a negative."""
    return {learned_templates.normalize(r.input)
            for r in [*self.train_sub, *self.test]}

  def _negative_questions(self, i: int, per_relation: int) -> list:
    """Stream record i's subject asked the other relations' ways: by the
    geo templates if they name its subject, else (`learned_negatives`) by
    the templates learned from the memory's questions (one wording each)."""
    record = self.stream[i]
    if not per_relation or negatives_lib.subject_of(record) is not None:
      return negatives_lib.negative_questions(record, per_relation)
    if not self.learned_negatives:
      return []
    norm = learned_templates.normalize
    skip = self._evaluated | {norm(q) for q in [record.input,
                                                *record.rephrases]}
    return [q for q in learned_templates.negative_questions(
        self._templates, record.input) if norm(q) not in skip]

  def negative_rows(self, i: int, per_relation: int = 1):
    """Memory rows of stream record i's negative questions (its subject in
    other relations' question templates, `negatives.negative_questions`):
    the queries along the unedited model's answers, as memory text's.

    Returns:
      (rows [r, d], the question of each row: r strings); no rows if the
      record names no subject.
    """
    key = (int(i), per_relation)
    if key not in self._negatives:
      self._start_negatives([int(i)], per_relation)
    block = self._negatives.pop(key)
    found = None if block is None else block().get(int(i))
    if found is None:
      return np.zeros((0, self.dim), np.float32), []
    rows, counts = found
    qs = self._negative_questions(int(i), per_relation)
    return rows, [q for q, c in zip(qs, counts) for _ in range(int(c))]

  def _task_width(self, i: int) -> int:
    mask = np.asarray(self.stream_qa["label_mask"][i], bool)
    return editor.task_width(int(mask.sum()), mask.shape[0])

  def after_edit(self, bank, i: int):
    """(edit correct now, rephrases correct, rephrases total)."""
    return self.after_edit_later(bank, i, background=False)()

  def after_edit_later(self, bank, i: int, background: bool = True):
    """`after_edit(bank, i)` in two parts: the model's part starts now, in
    the background (lookahead.py; it changes no decision of the stream);
    the returned function waits for it and returns what `after_edit` does.

    Call the functions in the order of the edits: each one sets what
    `edit_answers` and `rephrases_before` report for its record.
    """
    r = self.stream[i]
    more = self._rephrase_drafts(i, pop=True)
    # the edit's own drafts are cached; rows: the input, then its rephrases
    drafts = self._stream_drafts([i], edited=True)
    reph = list(r.rephrases)[:REPHRASES]
    if more is not None:
      drafts = tuple(drafts_lib.Drafts(*(np.concatenate(a) for a in zip(d, m)))
                     for d, m in zip(drafts, more))
    questions = [r.input] + reph
    # tokenized here, for the rows no draft may settle: a few questions
    src = qa_format.encode_sources(self.tokenizer, questions, self.max_src_len)
    before = self._checked.get(i)    # the answer `mistakes` saw
    # the base drafts are the unedited model's answers: GR before the edits
    self._reph_before[i] = 0 if more is None else int(more[1].correct.sum())

    check = self._correct_later(bank, [r] * len(questions), drafts, src,
                                CHECK_BATCH, texts=True,
                                background=background)

    def result():
      right, texts = check()
      self._answered = {i: (before, texts[0])}
      return bool(right[0]), int(right[1:].sum()), len(reph)

    return result

  def edit_answers(self, i: int):
    """(answer before, answer after) of the edit of stream record i, as the
    last `mistakes` check and `after_edit` saw them (None if not seen)."""
    return self._answered.get(i, (None, None))

  def rephrases_before(self, i: int):
    """(rephrases of record i the unedited model gets right, their number):
    read off their base drafts (the unedited model's own answers)."""
    n = len(list(self.stream[i].rephrases)[:REPHRASES])
    if i not in self._reph_before:
      more = self._rephrase_drafts(i, pop=False)
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
    return self.split_correct_later(bank, split, limit, background=False)()

  def split_correct_later(self, bank, split: str, limit: int | None = None,
                          background: bool = True) -> Callable[[], Any]:
    """`split_correct` with the model's part started in the background: the
    returned function waits for it and returns [N] bool."""
    records = {"train": self.train_sub, "test": self.test}[split][:limit]
    if not records:
      return lambda: np.zeros(0, bool)
    drafts = self.base_drafts[split].take(np.arange(len(records)))
    return self._correct_later(bank, records, (drafts,),
                               self._split_sources(split, len(records)),
                               EVAL_BATCH, background=background,
                               priority=lookahead.LATER)

  def _split_sources(self, split: str, n: int) -> Dict[str, np.ndarray]:
    """The first n questions of a split, encoded (the whole split once: the
    curve points and the final metrics ask the same rows again; rows are
    padded to `max_src_len`, so a prefix is the prefix's encoding)."""
    if split not in self._sources:
      records = {"train": self.train_sub, "test": self.test}[split]
      self._sources[split] = qa_format.encode_sources(
          self.tokenizer, [r.input for r in records], self.max_src_len)
    return {k: v[:n] for k, v in self._sources[split].items()}

  def accuracy(self, bank, split: str, limit: int | None = None) -> float:
    right = self.split_correct(bank, split, limit)
    return float(np.mean(right)) if len(right) else float("nan")

  def stream_accuracy(self, bank, idxs) -> float:
    return self.stream_accuracy_later(bank, idxs, background=False)()

  def stream_accuracy_later(self, bank, idxs, background: bool = True
                            ) -> Callable[[], float]:
    """`stream_accuracy` with the model's part started in the background:
    the returned function waits for it and returns the accuracy."""
    idxs = np.asarray(idxs, int)
    if not len(idxs):
      return lambda: float("nan")
    records = [self.stream[i] for i in idxs]
    src = qa_format.encode_sources(self.tokenizer, [r.input for r in records],
                                   self.max_src_len)
    right = self._correct_later(bank, records,
                                self._stream_drafts(idxs, edited=True), src,
                                EVAL_BATCH, background=background,
                                priority=lookahead.LATER)
    return lambda: float(np.mean(right()))


def _rows_of(arrays: Dict[str, np.ndarray], rows) -> Dict[str, np.ndarray]:
  return {k: v[rows] for k, v in arrays.items()}


@functools.lru_cache(maxsize=8)
def _augment_fn(word_drop: float, dropout: bool):
  """One function object per setting (jitted_noisy_queries caches by it)."""
  return functools.partial(bart.augmented_queries, word_drop=word_drop,
                           train=dropout)


def _through_eos(ids: np.ndarray, eos: int) -> np.ndarray:
  """[N, T] mask of generated ids through the first eos (all positions if
  generation never stopped)."""
  is_eos = ids == eos
  last = np.where(is_eos.any(-1), is_eos.argmax(-1), ids.shape[1] - 1)
  return np.arange(ids.shape[1])[None] <= last[:, None]


@functools.lru_cache(maxsize=8)
def _decoder_pool_fn(encoder_samples: int):
  """One function object per setting (jitted_noisy_queries caches by it)."""
  return functools.partial(bart.decoder_noisy_queries,
                           encoder_samples=encoder_samples)

