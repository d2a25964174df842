"""Fact checking (FEVER-style) on a BERT classifier, as an editing runtime.

Everything the stream needs is computed once with the frozen base model: the
[CLS] queries of the edit stream, its rephrases, the train subset, the test
split and the memory sets. After that every check, post-edit evaluation and
retention metric is a small matmul through the patch bank plus the tail.
"""
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import lookahead
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters import bert
from patcher_jax.data import FEVER_LABELS, Record, fever_label
from patcher_jax.tasks import common


class ClassificationRuntime:
  """Cached queries and evaluation for one classifier and one benchmark."""

  max_neurons = 1   # one label: one wrong position
  # The pool of edit-input variants (as Seq2SeqRuntime's).
  pool_word_drop = 0.0
  pool_dropout = True

  def __init__(self, model, params, tokenizer, stream: Sequence[Record],
               train_sub: Sequence[Record], test: Sequence[Record],
               memory: Sequence[Record], val: Sequence[Record], *,
               max_len: int = 32, batch_size: int = 128,
               cache_dir: Optional[str] = None,
               memory_text: Sequence[str] = (), log=print):
    # on the device once (a no-op for a loaded base model): numpy leaves
    # would be copied in at every jitted call, the tail's with them
    params = jax.device_put(params)
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.tail = bert.make_tail(model.config, params)
    self.max_len = max_len
    self.stream = list(stream)
    reph, self.reph_offsets = common.flatten_rephrases(stream)
    self.batch_size = batch_size
    encode = lambda texts, what: common.batched_queries(
        self._query_fn, self._tokenize, texts, batch_size, what, log)
    texts = {"q_stream": ([r.input for r in stream], "edit stream"),
             "q_reph": (reph, "rephrases"),
             "q_train": ([r.input for r in train_sub], "train subset"),
             "q_test": ([r.input for r in test], "test split"),
             "memory0": ([r.input for r in memory], "memory"),
             "val_memory0": ([r.input for r in val], "val memory")}
    key = common.records_key("classification", max_len,
                             {k: v[0] for k, v in texts.items()})
    arrays = common.load_or_compute(
        cache_dir, key, lambda: {k: encode(*v) for k, v in texts.items()},
        log)
    (self.q_stream, self.q_reph, self.q_train, self.q_test, self.memory0,
     self.val_memory0) = (arrays[k] for k in texts)
    self.y_stream = np.array([fever_label(r) for r in stream], np.int32)
    self.y_train = np.array([fever_label(r) for r in train_sub], np.int32)
    self.y_test = np.array([fever_label(r) for r in test], np.int32)
    self.dim = model.config.hidden_size
    self._logits = jax.jit(_patched_logits)
    self._empty = patch_lib.init_bank(8, self.dim)
    self._pools = common.Pools(lookahead.Lookahead())  # pools drawn ahead
    self._base_wrong = None    # [stream] the unedited model is wrong (lazy)
    self._reph_base = None     # [rephrases] the unedited model is right (lazy)
    self._answered = {}        # stream index -> label after its edit
    # a record's tokens as its pool takes them (asked up to three times)
    self._pool_inputs = functools.lru_cache(maxsize=16)(self._pool_input)
    if len(memory_text):
      self.memory0 = np.concatenate([self.memory0, self._text_rows(
          memory_text, cache_dir, log)])

  def _text_rows(self, texts: Sequence[str], cache_dir, log) -> np.ndarray:
    """Memory rows of unlabeled inputs (memory_text.py): their queries,
    cached apart from the benchmark's (the same entry serves any split)."""
    key = common.records_key("classification-text", self.max_len, list(texts))
    return common.load_or_compute(cache_dir, key, lambda: {
        "rows": common.batched_queries(
            self._query_fn, self._tokenize, list(texts), self.batch_size,
            f"memory text ({len(texts)} inputs)", log)}, log)["rows"]

  # -- model access ---------------------------------------------------------

  def _tokenize(self, texts):
    enc = self.tokenizer(list(texts), padding="longest", truncation=True,
                         max_length=self.max_len, return_tensors="np")
    return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(
        np.int32)

  def _query_fn(self, ids, mask):
    return _queries_jit(self.model, self.params, ids, mask)

  def _encode(self, texts) -> np.ndarray:
    """[CLS] queries [N, d] of `texts` (no caching)."""
    if not len(texts):
      return np.zeros((0, self.dim), np.float32)
    return common.batched_queries(self._query_fn, self._tokenize, list(texts),
                                  self.batch_size, log=None)

  # -- requests that arrive one by one (the Editor) ---------------------------

  def add_to_stream(self, records: Sequence[Record]) -> np.ndarray:
    """Append records to the edit stream (their queries computed now, not
    cached); returns their stream indices."""
    records = list(records)
    reph, offsets = common.flatten_rephrases(records)
    start = len(self.stream)
    self.q_stream = np.concatenate([self.q_stream.reshape(-1, self.dim),
                                    self._encode([r.input for r in records])])
    self.q_reph = np.concatenate([self.q_reph.reshape(-1, self.dim),
                                  self._encode(reph)])
    self.reph_offsets = np.concatenate([self.reph_offsets,
                                        self.reph_offsets[-1] + offsets[1:]])
    self.y_stream = np.concatenate([self.y_stream, np.array(
        [fever_label(r) for r in records], np.int32)])
    self.stream += records
    self._base_wrong = self._reph_base = None
    return np.arange(start, len(self.stream))

  def predict(self, bank, texts: Sequence[str]) -> list:
    """The patched model's labels ("SUPPORTS" / "REFUTES") for `texts`."""
    q = self._encode(texts)
    if not len(q):
      return []
    logits = common.chunked(lambda x: self._logits(self.tail, bank, x), q)
    return [FEVER_LABELS[int(v > 0)] for v in logits[:, 0]]

  # -- what the stream asks -------------------------------------------------

  def correct(self, bank, q, labels) -> np.ndarray:
    """Predictions of the patched model on cached queries == labels."""
    if not len(labels):
      return np.zeros((0,), bool)
    logits = common.chunked(lambda x: self._logits(self.tail, bank, x), q)
    return (logits[:, 0] > 0) == (np.asarray(labels) == 1)

  def base_mistakes(self) -> int:
    """Stream records the unedited model gets wrong (what can be edited)."""
    return int(self._base_mistakes().sum())

  def _base_mistakes(self) -> np.ndarray:
    """[stream] bool: the unedited model is wrong (computed once)."""
    if self._base_wrong is None:
      self._base_wrong = ~self.correct(self._empty, self.q_stream,
                                       self.y_stream)
    return self._base_wrong

  def mistakes(self, bank, idxs) -> np.ndarray:
    return ~self.correct(bank, self.q_stream[idxs], self.y_stream[idxs])

  def edit_task(self, bank, i: int, rng, noise_samples: int = 0,
                max_neurons: int = 1, neuron_margin: float = 0.0):
    """The cached inputs of editing stream record i (None: nothing to fix)."""
    noisy = None
    if noise_samples:
      noisy = self._pools.get(i, rng, noise_samples,
                              self._pool_fn(i, noise_samples))
    task = common.make_edit_task(
        self.tail, bank, self.q_stream[i:i + 1],
        self.y_stream[i:i + 1], np.ones(1, bool), noisy_queries=noisy,
        max_neurons=min(max_neurons, self.max_neurons),
        neuron_margin=neuron_margin)
    return task if bool(task.neuron_mask.any()) else None

  def prefetch_pool(self, candidates, rng, noise_samples: int
                    ) -> Optional[int]:
    """Start drawing, in the background, the dropout pool (under `rng`) of
    the first of `candidates` the unedited model gets wrong: the stream's
    likeliest next mistake (`edit_task` uses it if it guessed right).
    Returns the record guessed (None: no candidate).
    """
    i = common.first_base_mistake(candidates, self._base_mistakes())
    if noise_samples and i is not None:
      self._pools.start(i, rng, noise_samples, self._pool_fn(i, noise_samples))
    return i

  def _pool_input(self, i: int):
    """Record i's (ids, mask) [1, T], padded as its pool takes them."""
    return tuple(jnp.asarray(common.pad_to_multiple(a))
                 for a in self._tokenize([self.stream[i].input]))

  def _pool_fn(self, i: int, noise_samples: int):
    """rng -> record i's pool of `noise_samples` dropout samples (numpy;
    tokenized here, so the returned function may run in the background)."""
    ids, mask = self._pool_inputs(i)
    pool_fn = (_augment_fn(self.pool_word_drop, self.pool_dropout)
               if self.pool_word_drop else bert.noisy_queries)
    fn = common.jitted_noisy_queries(self.model, pool_fn, noise_samples)
    return lambda rng: np.asarray(fn(self.params, rng, ids, mask))

  def after_edit(self, bank, i: int):
    """(edit correct now, rephrases correct, rephrases total)."""
    ok = bool(self.correct(bank, self.q_stream[i:i + 1],
                           self.y_stream[i:i + 1])[0])
    self._answered[i] = FEVER_LABELS[self.y_stream[i] ^ (not ok)]
    lo, hi = self.reph_offsets[i], self.reph_offsets[i + 1]
    if hi == lo:
      return ok, 0, 0
    labels = np.full(hi - lo, self.y_stream[i], np.int32)
    right = self.correct(bank, self.q_reph[lo:hi], labels)
    return ok, int(right.sum()), int(hi - lo)

  def edit_answers(self, i: int):
    """(answer before, answer after) of the edit of stream record i: before,
    the label it was wrong with (two labels: the other one); after, what
    `after_edit` saw. (None, None) if `after_edit` has not checked it."""
    if i not in self._answered:
      return None, None
    return FEVER_LABELS[1 - self.y_stream[i]], self._answered[i]

  def memory_rows(self, i: int, copies: int = 0) -> np.ndarray:
    """The queries an edit adds to memory: its [CLS] query; with `copies`,
    the reference's rows: the query of each of its training copies (all
    identical: one row per copy)."""
    q = self.q_stream[i:i + 1]
    return np.repeat(q, copies, axis=0) if copies else q

  def rephrases_before(self, i: int):
    """(rephrases of record i the unedited model gets right, their number),
    from one pass over every rephrase of the stream (a report, not a
    decision: XLA may round a row differently in a batch of another size)."""
    if self._reph_base is None:
      labels = np.repeat(self.y_stream, np.diff(self.reph_offsets))
      self._reph_base = self.correct(self._empty, self.q_reph, labels)
    lo, hi = self.reph_offsets[i], self.reph_offsets[i + 1]
    return int(self._reph_base[lo:hi].sum()), int(hi - lo)

  def target(self, i: int) -> str:
    return FEVER_LABELS[self.y_stream[i]]

  def answers(self, bank, idxs) -> list:
    """The patched model's labels ("SUPPORTS" / "REFUTES") of records idxs."""
    idxs = np.asarray(idxs, int)
    if not len(idxs):
      return []
    logits = common.chunked(lambda x: self._logits(self.tail, bank, x),
                            self.q_stream[idxs])
    return [FEVER_LABELS[int(v > 0)] for v in logits[:, 0]]

  def split_correct(self, bank, split: str,
                    limit: int | None = None) -> np.ndarray:
    """[N] bool: the patched model is right on a split ("train": the TrainR
    subset, "test")."""
    q, y = {"train": (self.q_train, self.y_train),
            "test": (self.q_test, self.y_test)}[split]
    return self.correct(bank, q[:limit], y[:limit])

  def accuracy(self, bank, split: str, limit: int | None = None) -> float:
    right = self.split_correct(bank, split, limit)
    return float(np.mean(right)) if len(right) else float("nan")

  def stream_accuracy(self, bank, idxs) -> float:
    if not len(idxs):
      return float("nan")
    return float(np.mean(self.correct(bank, self.q_stream[idxs],
                                      self.y_stream[idxs])))


def _patched_logits(tail, bank: Optional[patch_lib.PatchBank], q):
  delta = patch_lib.bank_output(bank, q, tail.act)
  return tail_lib.tail_logits(tail, q, delta, jax.random.PRNGKey(0))


def _queries_jit(model, params, ids, mask):
  return common.jitted_queries(model, bert.queries)(params, ids, mask)


@functools.lru_cache(maxsize=8)
def _augment_fn(word_drop: float, dropout: bool):
  """One function object per setting (jitted_noisy_queries caches by it)."""
  return functools.partial(bert.augmented_queries, word_drop=word_drop,
                           train=dropout)
