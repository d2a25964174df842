"""Facts completed by a pretrained decoder-only LM (SmolLM2), as a runtime.

A record's input is a prompt that ends where the answer starts ("The capital
of Peru is", or a chat-template question with the assistant's answer begun);
the answer is " " + the object. The model is right when its greedy
continuation starts with the answer's tokens (exact match on tokens; what
follows is not looked at: a completion model goes on talking).

Every check is exact without decoding in almost all cases. The patch sits in
the last layer, so the queries along the gold answer (teacher forcing) do not
depend on it, and the patched tail gives the logits at every answer position
at once. If the argmax is the gold token at every position (by a margin),
greedy decoding produces the answer; if at the first position where it is
not, another token leads (by the margin), greedy decoding leaves the answer
there: wrong. Only near-ties are decoded for real. The unedited model's
answers go first through drafts.py's cheap certificate (no head).
"""
import functools
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import drafts as drafts_lib
from patcher_jax import editor
from patcher_jax import lookahead
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters import llama
from patcher_jax.data import Record
from patcher_jax.tasks import common

DECODE_BATCH = 8
NUM_REPHRASES = 5   # rephrases checked per edit (GR), as for zsRE


class Encoded(dict):
  """Token arrays of records: ids [N, W] (prompt + answer[:-1], right
  padded), mask [N, W], prompt_len [N], answer [N, K], answer_mask [N, K]."""


def encode(tokenizer, prompts: Sequence[str], answers: Sequence[str],
           max_answer_tokens: int) -> Encoded:
  """Prompts and " "-prefixed answers as token arrays (see `Encoded`)."""
  p_ids = [tokenizer(p, add_special_tokens=False)["input_ids"]
           for p in prompts]
  a_ids = [tokenizer(" " + a, add_special_tokens=False)["input_ids"]
           [:max_answer_tokens] for a in answers]
  n = len(prompts)
  w = max([len(p) + len(a) - 1 for p, a in zip(p_ids, a_ids)] or [1])
  ids = np.zeros((n, w), np.int32)
  mask = np.zeros((n, w), np.int32)
  ans = np.zeros((n, max_answer_tokens), np.int32)
  ans_mask = np.zeros((n, max_answer_tokens), bool)
  for i, (p, a) in enumerate(zip(p_ids, a_ids)):
    seq = p + a[:-1]
    ids[i, :len(seq)] = seq
    mask[i, :len(seq)] = 1
    ans[i, :len(a)] = a
    ans_mask[i, :len(a)] = True
  return Encoded(ids=ids, mask=mask, ans=ans, ans_mask=ans_mask,
                 prompt_len=np.array([len(p) for p in p_ids], np.int32))


def answer_queries(query_fn, enc: Encoded, batch_size: int, dim: int
                   ) -> np.ndarray:
  """Teacher-forced queries at the answer positions: [N, K, d] (position k
  is the query that predicts answer token k)."""
  n, k = enc["ans"].shape
  out = np.zeros((n, k, dim), np.float32)
  if n == 0:
    return out
  for rows, width in common.length_batches(enc["mask"].sum(-1), batch_size):
    ids = common.take_batch(enc["ids"], rows, width, batch_size)
    mask = common.take_batch(enc["mask"], rows, width, batch_size)
    mask[len(rows):, 0] = 1
    q = np.asarray(query_fn(ids, mask))[:len(rows)]
    pos = enc["prompt_len"][rows, None] - 1 + np.arange(k)[None]
    pos = np.minimum(pos, width - 1)
    got = np.take_along_axis(q, pos[..., None], axis=1)
    out[rows] = np.where(enc["ans_mask"][rows, :, None], got, 0.0)
  return out


@jax.jit
def _positions(tail, bank, queries):
  """Patched argmax [N, K] and its lead over the runner-up."""
  delta = patch_lib.bank_output(bank, queries, tail.act)
  logits = tail_lib.tail_logits(tail, queries, delta, jax.random.PRNGKey(0))
  best = jnp.argmax(logits, -1)
  return best, drafts_lib.lead_over_others(logits, best)


def settle(tail, bank, queries, tokens, mask, margin=drafts_lib.MARGIN,
           chunk: int = 64) -> np.ndarray:
  """[N] int8 1 right / 0 wrong / -1 near-tie, exactly (module docstring)."""
  n = tokens.shape[0]
  out = np.full(n, -1, np.int8)
  lengths = mask.sum(-1)
  for rows, width in drafts_lib._chunks(lengths, np.arange(n), chunk,  # pylint: disable=protected-access
                                        tokens.shape[1]):
    pad = drafts_lib._padder(rows, width, min(chunk, drafts_lib._bucket(  # pylint: disable=protected-access
        len(rows))))
    best, gap = (np.asarray(a)[:len(rows)] for a in _positions(
        tail, bank, jnp.asarray(pad(queries))))
    tok, m = tokens[rows, :width], mask[rows, :width]
    sure = gap > margin
    ok = (best == tok) & sure
    right = np.all(ok | ~m, axis=-1)
    bad = ~ok & m
    first = np.argmax(bad, axis=-1)
    r = np.arange(len(rows))
    wrong = bad.any(-1) & (best[r, first] != tok[r, first]) & sure[r, first]
    out[rows] = np.where(right, 1, np.where(wrong, 0, -1))
  return out


class LMFactsRuntime:
  """Cached answer queries, memory and exact checks for one causal LM.

  Answers the stream's duck-typed calls (see tasks/__init__.py).
  """

  max_neurons = 16
  checks_by_row = True   # a check runs the LM head (stream._first_mistake)

  def __init__(self, model, params, tokenizer, stream: Sequence[Record],
               train_sub: Sequence[Record], test: Sequence[Record],
               memory: Sequence[Record], val: Sequence[Record], *,
               max_answer_tokens: int = 12, batch_size: int = 32,
               whiten: Optional[float] = None, word_drop: float = 0.25,
               neuron_act: str = "gelu",
               cache_dir: Optional[str] = None, log=print):
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.dim = model.config.hidden_size
    self.max_answer_tokens, self.batch_size = max_answer_tokens, batch_size
    self.stream, self.train_sub, self.test = (list(stream), list(train_sub),
                                              list(test))
    self._query_fn = common.jitted_queries(model, llama.residuals)
    self._pool_queries = jax.jit(functools.partial(
        llama.hidden_word_residuals, model), static_argnames=("num",))
    self.pool_word_drop = word_drop
    self._pools = common.Pools(lookahead.Lookahead())
    # every stream record's rephrases (NUM_REPHRASES at most) as one split,
    # record i's at rows reph_rows[i]: cached with the rest, checked at once
    reph, self.reph_rows = _rephrase_split(self.stream, 0)
    splits = {"stream": self.stream, "train": self.train_sub,
              "test": self.test, "reph": reph}
    self.enc = {k: self._encode(v) for k, v in splits.items()}
    arrays, key = self._cached_queries(splits, memory, val, cache_dir, log)
    # the patch sees the residuals centred and scaled (or whitened) by the
    # memory's statistics (adapters/llama.py): fixed for the run
    self.query_map = llama.fit_query_map(arrays["memory0"], whiten)
    self.neuron_act = neuron_act
    self.tail = llama.make_tail(model.config, params, self.query_map,
                                act=neuron_act)
    self._head_norm = llama.head_norm(self.tail)
    qmap = lambda h: np.asarray(self.query_map(h))
    self.queries = {k: qmap(arrays[f"q_{k}"]) for k in splits}
    self.q_stream = self.queries["stream"]
    self.memory0 = qmap(arrays["memory0"])
    self.val_memory0 = qmap(arrays["val_memory0"])
    self.base = self._cached_drafts(splits, cache_dir, key, whiten, log)
    self.counts = {"certified": 0, "settled": 0, "decoded": 0}
    if log:
      acc = {k: float(np.mean(d.correct)) if len(d.correct) else float("nan")
             for k, d in self.base.items()}
      log(f"  cached answer queries: stream {len(stream)} (rephrases "
          f"{len(reph)}), train {len(train_sub)}, test {len(test)}, memory "
          f"{len(self.memory0)} rows, val memory {len(self.val_memory0)} rows;"
          " base accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))

  def _cached_drafts(self, splits, cache_dir, queries_key, whiten, log):
    """The unedited model's answers (`_base_drafts`) of every split, kept
    next to the queries: minutes of head passes on a first run. Keyed by
    the queries' key and the query map's setting (the map changes the
    drafts' leads in the last float bits only, but the cache is exact)."""
    fields = ("tokens", "mask", "correct", "lead", "spread")

    def compute():
      t0 = time.perf_counter()
      arrays = {}
      for k in splits:
        d = self._base_drafts(self.queries[k], self.enc[k])
        arrays.update({f"{k}_{f}": getattr(d, f) for f in fields})
      if log:
        log(f"  the unedited model's answers: "
            f"{sum(len(v) for v in splits.values())} prompts in "
            f"{time.perf_counter() - t0:.0f} s")
      return arrays

    key = common.records_key("lm_facts_drafts", queries_key, whiten)
    arrays = common.load_or_compute(cache_dir, key, compute, None)
    return {k: drafts_lib.Drafts(self.queries[k],
                                 *(arrays[f"{k}_{f}"] for f in fields))
            for k in splits}

  def _cached_queries(self, splits, memory, val, cache_dir, log):
    """The residuals at the answer positions of every split and of the
    memory sets, computed once per records and kept (common.load_or_compute);
    and their cache key."""
    def compute():
      arrays = {}
      for k in splits:
        arrays[f"q_{k}"] = self._queries(self.enc[k], what=k, log=log)
      for name, recs in (("memory0", memory), ("val_memory0", val)):
        enc = self._encode(recs)
        arrays[name] = self._queries(enc, what=name, log=log)[enc["ans_mask"]]
      return arrays

    key = common.records_key("lm_facts", self.max_answer_tokens, NUM_REPHRASES,
                             *splits.values(), memory, val)
    return common.load_or_compute(cache_dir, key, compute, log), key

  # -- caching ---------------------------------------------------------------

  def _encode(self, records: Sequence[Record]) -> Encoded:
    return encode(self.tokenizer, [r.input for r in records],
                  [r.answers[0] for r in records], self.max_answer_tokens)

  def _queries(self, enc: Encoded, batch_size: int = 0, what: str = "",
               log=None) -> np.ndarray:
    """Residuals h at the answer positions (queries: `self.query_map`)."""
    t0 = time.perf_counter()
    out = answer_queries(lambda i, m: self._query_fn(self.params, i, m), enc,
                         batch_size or self.batch_size, self.dim)
    if log and what:
      log(f"  queries of {what}: {len(out)} prompts, "
          f"{int(enc['mask'].sum())} tokens in {time.perf_counter() - t0:.0f} s")
    return out

  def _base_drafts(self, q, enc: Encoded) -> drafts_lib.Drafts:
    """The unedited model's answers as drafts: the gold answer up to its
    first wrong token, that token in its place (exact by `settle`'s
    argument), with the leads for the cheap certificate."""
    tokens, mask = enc["ans"].copy(), enc["ans_mask"].copy()
    empty = patch_lib.init_bank(8, self.dim)
    best = np.zeros_like(tokens)
    for rows, width in drafts_lib._chunks(mask.sum(-1), np.arange(len(q)),  # pylint: disable=protected-access
                                          64, tokens.shape[1]):
      pad = drafts_lib._padder(rows, width, min(64, drafts_lib._bucket(  # pylint: disable=protected-access
          len(rows))))
      got = _positions(self.tail, empty, jnp.asarray(pad(q)))[0]
      best[rows, :width] = np.asarray(got)[:len(rows)]
    bad = (best != tokens) & mask
    wrong = bad.any(-1)
    first = np.argmax(bad, -1)
    r = np.flatnonzero(wrong)
    tokens[r, first[r]] = best[r, first[r]]
    mask &= ~(np.arange(mask.shape[1])[None] > np.where(
        wrong, first, mask.shape[1])[:, None])
    lead, spread = drafts_lib.leads(self.tail, q, tokens, mask)
    return drafts_lib.Drafts(q, tokens, mask, ~wrong, lead, spread)

  # -- checks ----------------------------------------------------------------

  def _correct(self, bank, queries, enc: Encoded, rows, base=None,
               own: bool = False) -> np.ndarray:
    """[len(rows)] bool: the patched model's greedy answer is the gold one
    (`own`: is still the unedited model's own, `base`'s drafts)."""
    rows = np.asarray(rows, int)
    known = np.full(len(rows), -1, np.int8)
    tokens, mask = enc["ans"][rows], enc["ans_mask"][rows]
    if base is not None:   # cheap certificate: the unedited answer holds
      d = base.take(rows)
      if own:
        d = d._replace(correct=np.ones(len(rows), bool))
        tokens, mask = d.tokens, d.mask
      held = drafts_lib.check(self.tail, bank, d, self.max_answer_tokens,
                              self._head_norm) if np.isfinite(
                                  self._head_norm) else known
      known = np.where(held >= 0, held, -1).astype(np.int8)
      self.counts["certified"] += int((known >= 0).sum())
    todo = np.flatnonzero(known < 0)
    if len(todo):
      known[todo] = settle(self.tail, bank, queries[rows[todo]],
                           tokens[todo], mask[todo])
      self.counts["settled"] += int((known[todo] >= 0).sum())
    todo = np.flatnonzero(known < 0)
    if len(todo):
      self.counts["decoded"] += len(todo)
      known[todo] = self._decode_correct(bank, enc, rows[todo], tokens[todo],
                                         mask[todo])
    return known.astype(bool)

  def _decode_correct(self, bank, enc: Encoded, rows, tokens, mask
                      ) -> np.ndarray:
    """Real greedy decoding of the patched model (near-ties only): does it
    start with `tokens` where `mask`? Only as many tokens as the longest
    mask are decoded (a power of two: few compiles), each step being a
    whole-model pass."""
    longest = max(int(mask.sum(-1).max()) if len(rows) else 1, 1)
    k = min(self.max_answer_tokens, 1 << (longest - 1).bit_length())
    got = self._greedy(bank, enc, rows, k)
    return np.all((got == tokens[:, :k]) | ~mask[:, :k], axis=-1)

  def _greedy(self, bank, enc: Encoded, rows, k: int) -> np.ndarray:
    """[len(rows), k] greedy continuations of the prompts of `enc`'s rows by
    the patched model (batches of similar prompt lengths)."""
    fn = llama.greedy_fn(self.model, k, act=self.neuron_act)
    out = np.zeros((len(rows), k), np.int32)
    plen = enc["prompt_len"][rows]
    for part, width in common.length_batches(plen, DECODE_BATCH):
      ids = common.take_batch(enc["ids"][rows], part, width, DECODE_BATCH)
      lens = np.ones(DECODE_BATCH, np.int32)
      lens[:len(part)] = plen[part]
      out[part] = np.asarray(fn(self.params, bank, self.query_map, ids,
                                lens))[:len(part)]
    return out

  # -- requests (the Editor) -------------------------------------------------

  def add_to_stream(self, records: Sequence[Record]) -> np.ndarray:
    """Append records to the edit stream (their queries, rephrases and
    drafts computed now, not cached); returns their stream indices."""
    records = list(records)
    start = len(self.stream)
    reph, rows = _rephrase_split(records, len(self.enc["reph"]["ans"]))
    for split, recs in (("stream", records), ("reph", reph)):
      enc = self._encode(recs)
      q = np.asarray(self.query_map(self._queries(enc)))
      self.enc[split] = _concat_encoded(self.enc[split], enc)
      self.queries[split] = np.concatenate([self.queries[split], q])
      self.base[split] = drafts_lib.Drafts(*(np.concatenate(x) for x in zip(
          self.base[split], self._base_drafts(q, enc))))
    self.q_stream = self.queries["stream"]
    self.reph_rows += rows
    self.stream += records
    return np.arange(start, len(self.stream))

  def predict(self, bank, texts: Sequence[str]) -> list:
    """The patched model's greedy continuations of `texts` (prompts), up to
    `max_answer_tokens` tokens, stripped."""
    texts = list(texts)
    if not texts:
      return []
    enc = encode(self.tokenizer, texts, ["x"] * len(texts), 1)
    got = self._greedy(bank, enc, np.arange(len(texts)),
                       self.max_answer_tokens)
    return [self.tokenizer.decode(row.tolist(),
                                  skip_special_tokens=True).strip()
            for row in got]

  # -- what the stream asks --------------------------------------------------

  def base_mistakes(self) -> int:
    """Stream records the unedited model gets wrong."""
    return int((~self.base["stream"].correct).sum())

  def mistakes(self, bank, idxs) -> np.ndarray:
    return ~self._correct(bank, self.q_stream, self.enc["stream"], idxs,
                          self.base["stream"])

  def edit_task(self, bank, i: int, rng, noise_samples: int = 0,
                max_neurons: int = 5, neuron_margin: float = 0.0):
    """The edit of stream record i, with a pool of `noise_samples` variants
    of its prompt with hidden words (no dropout in a Llama); None if teacher
    forcing finds nothing wrong."""
    mask = self.enc["stream"]["ans_mask"][i]
    width = editor.task_width(int(mask.sum()), mask.shape[0])
    noisy = None
    if noise_samples:
      noisy = self._pools.get(i, rng, noise_samples,
                              self._pool_fn(i, noise_samples))[:, :width]
    task = common.make_edit_task(
        self.tail, bank, self.q_stream[i][:width],
        self.enc["stream"]["ans"][i][:width], mask[:width],
        noisy_queries=noisy, max_neurons=min(max_neurons, width),
        neuron_margin=neuron_margin)
    return editor.fit_slots(task)

  def prefetch_pool(self, candidates, rng, noise_samples: int
                    ) -> Optional[int]:
    """Start drawing, in the background, the pool (under `rng`) of the first
    of `candidates` the unedited model gets wrong (the stream's likeliest
    next mistake); returns it (None: no candidate)."""
    i = common.first_base_mistake(candidates, ~self.base["stream"].correct)
    if noise_samples and i is not None:
      self._pools.start(i, rng, noise_samples, self._pool_fn(i, noise_samples))
    return i

  def _pool_fn(self, i: int, noise_samples: int):
    """rng -> record i's pool [S, K, d] (queries at the answer positions)."""
    enc = self.enc["stream"]
    n = -(-int(enc["mask"][i].sum()) // 8) * 8     # few compiled widths
    ids = jnp.asarray(common.take_batch(enc["ids"], [i], n, 1))
    mask = jnp.asarray(common.take_batch(enc["mask"], [i], n, 1))
    plen = int(enc["prompt_len"][i])
    k = enc["ans"].shape[1]
    pos = np.minimum(plen - 1 + np.arange(k), n - 1)

    def draw(rng):
      h = np.asarray(self._pool_queries(self.params, ids, mask, plen, rng,
                                        num=noise_samples,
                                        word_drop=self.pool_word_drop))
      q = np.asarray(self.query_map(h[:, pos]))
      return np.where(enc["ans_mask"][i][None, :, None], q, 0.0)
    return draw

  def after_edit(self, bank, i: int):
    ok = self._correct(bank, self.q_stream, self.enc["stream"], [i])[0]
    rows = self.reph_rows[i]
    if not len(rows):
      return bool(ok), 0, 0
    right = self._correct(bank, self.queries["reph"], self.enc["reph"], rows,
                          self.base["reph"])
    return bool(ok), int(right.sum()), len(rows)

  def rephrases_before(self, i: int):
    """(rephrases of record i the unedited model gets right, their number)."""
    rows = self.reph_rows[i]
    return int(self.base["reph"].correct[rows].sum()), len(rows)

  def target(self, i: int) -> str:
    return self.stream[i].answers[0]

  def answers(self, bank, idxs) -> list:
    """The patched model's answers to stream records idxs: the target when
    it is generated, else the unedited continuation when that certainly
    holds, else "<other>" (no decoding)."""
    idxs = np.asarray(idxs, int)
    right = self._correct(bank, self.q_stream, self.enc["stream"], idxs)
    base = self.base["stream"].take(idxs)
    held = drafts_lib.check(self.tail, bank, base, self.max_answer_tokens,
                            self._head_norm)
    out = []
    for j, i in enumerate(idxs):
      if right[j]:
        out.append(self.target(int(i)))
      elif held[j] >= 0:
        out.append(self.tokenizer.decode(
            base.tokens[j][base.mask[j]].tolist()).strip())
      else:
        out.append("<other>")
    return out

  def memory_rows(self, i: int, copies: int = 0) -> np.ndarray:
    """The edit's answer-position queries (`copies`: the reference's
    flattened copies [1:-1], for parity mode)."""
    rows = self.q_stream[i][self.enc["stream"]["ans_mask"][i]]
    return np.tile(rows, (copies, 1))[1:-1] if copies else rows

  def split_correct(self, bank, split: str,
                    limit: Optional[int] = None) -> np.ndarray:
    """[N] bool: the patched model still gives the unedited model's own
    answer on a split ("train", "test"): all True for an empty bank.

    A small pretrained LM knows few of these facts (SmolLM2-135M: 2-3 % of
    them), so retention of its right answers would rest on a few dozen
    records. What locality asks is that unrelated prompts keep their
    output, so the reference answer here is the unedited model's greedy
    continuation, up to the gold answer's length or its first departure
    from the gold (through that token): exactly the base drafts, whose
    queries are cached (the EasyEdit-style locality of decoder-only editing).
    """
    n = len(self.train_sub if split == "train" else self.test)
    n = min(n, limit) if limit else n
    return self._correct(bank, self.queries[split], self.enc[split],
                         np.arange(n), self.base[split], own=True)

  def accuracy(self, bank, split: str, limit: Optional[int] = None) -> float:
    right = self.split_correct(bank, split, limit)
    return float(np.mean(right)) if len(right) else float("nan")

  def stream_accuracy(self, bank, idxs) -> float:
    if not len(idxs):
      return float("nan")
    return float(np.mean(self._correct(bank, self.q_stream,
                                       self.enc["stream"], idxs)))


def _rephrase_split(records: Sequence[Record], first: int):
  """(the records' rephrases, NUM_REPHRASES at most each, as records of
  their own; per record the rows they take, counted from `first`)."""
  reph, rows = [], []
  for r in records:
    texts = list(r.rephrases)[:NUM_REPHRASES]
    rows.append(np.arange(first + len(reph), first + len(reph) + len(texts)))
    reph += [Record(f"{r.id}:r{j}", text, r.answers[:1], ())
             for j, text in enumerate(texts)]
  return reph, rows


def _concat_encoded(a: Encoded, b: Encoded) -> Encoded:
  """Rows of b after those of a (token arrays padded to a common width)."""
  width = max(a["ids"].shape[1], b["ids"].shape[1])
  pad = lambda x: np.pad(x, ((0, 0), (0, width - x.shape[1])))
  return Encoded({k: (np.concatenate([pad(a[k]), pad(b[k])]) if k in (
      "ids", "mask") else np.concatenate([a[k], b[k]])) for k in a})
