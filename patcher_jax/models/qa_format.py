"""The seq2seq QA format, the exact-match metric and pinned greedy decoding.

Format (the reference's zsRE BART, with MiniLM's WordPiece names):

  source           tok(question)            = [CLS] q_1..q_n [SEP]
  target           tok(answer)              = [CLS] a_1..a_m [SEP]
  trg              [decoder_start] + target  (decoder_start = eos = [SEP], like
                                             BART's </s>)
  decoder inputs   trg[:-1] = [SEP] [CLS] a_1..a_m
  labels           trg[1:]  =       [CLS] a_1..a_m [SEP]

Everything is padded with [PAD] (0) to fixed lengths so one compiled program
serves every batch. ``label_mask`` marks real label positions.

Metric: ``normalize_answer(prediction) == normalize_answer(gold)``. Decoding
WordPiece is lossy (lower-case, accents stripped, spaces around punctuation:
"Île-de-France" decodes as "ile - de - france"), so the normalisation applies
the same rules to both sides.

Decoding: ``generation_config`` pins every setting the reference inherited from
the hub's bart-base (see ALGORITHM.md 9.2); ``greedy_generate`` is a jitted
greedy loop over cached encoder outputs and a key/value cache, equivalent to
``model.generate(..., generation_config=generation_config(...))``
(tests/test_models_qa_format.py checks they agree).
"""
import functools
import re
import unicodedata
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Params = Dict[str, Any]

DEFAULT_BATCH_SIZE = 64
# Evaluation decodes up to 16 tokens after the start token: enough for the
# longest answers here (10 word pieces with [CLS]/[SEP]); the reference
# inherited max_length 20 from the hub's bart-base config.
DEFAULT_MAX_NEW_TOKENS = 16


# --------------------------------------------------------------------------
# Encoding.


def decoder_start_id(tokenizer) -> int:
  """BART's convention: decoding starts from eos ([SEP] here, </s> in BART)."""
  return tokenizer.sep_token_id if tokenizer.sep_token_id is not None else (
      tokenizer.eos_token_id)


def source_lengths(tokenizer, texts: Sequence[str]) -> np.ndarray:
  """Token counts of ``tok(text)`` (special tokens included)."""
  return np.array([len(x) for x in tokenizer(list(texts))["input_ids"]])


def encode_sources(tokenizer, questions: Sequence[str],
                   max_src_len: int) -> Dict[str, np.ndarray]:
  """``input_ids`` and ``attention_mask`` (int32, [N, max_src_len])."""
  enc = tokenizer(list(questions), padding="max_length", truncation=True,
                  max_length=max_src_len, return_tensors="np")
  return {"input_ids": enc["input_ids"].astype(np.int32),
          "attention_mask": enc["attention_mask"].astype(np.int32)}


def encode_targets(tokenizer, answers: Sequence[str], max_tgt_len: int,
                   start_id: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Teacher-forcing arrays for answers, each [N, max_tgt_len] int32.

  ``max_tgt_len`` is the length of ``tok(answer)`` with its two special tokens
  (= number of decoder steps); longer answers are truncated keeping the final
  [SEP].
  """
  start_id = decoder_start_id(tokenizer) if start_id is None else start_id
  pad = tokenizer.pad_token_id
  toks = tokenizer(list(answers), truncation=True,
                   max_length=max_tgt_len)["input_ids"]
  n = len(toks)
  dec_in = np.full((n, max_tgt_len), pad, np.int32)
  labels = np.full((n, max_tgt_len), pad, np.int32)
  mask = np.zeros((n, max_tgt_len), np.int32)
  for i, t in enumerate(toks):
    trg = [start_id] + list(t)
    m = len(trg) - 1
    dec_in[i, :m] = trg[:-1]
    labels[i, :m] = trg[1:]
    mask[i, :m] = 1
  # Decoder inputs and labels cover the same positions, so one mask serves
  # as both the decoder attention mask and the loss mask.
  return {"decoder_input_ids": dec_in, "decoder_attention_mask": mask.copy(),
          "labels": labels, "label_mask": mask}


def encode_qa(tokenizer, questions: Sequence[str], answers: Sequence[str],
              max_src_len: int, max_tgt_len: int,
              start_id: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Source and teacher-forcing arrays: ``input_ids``, ``attention_mask``,
  ``decoder_input_ids``, ``decoder_attention_mask``, ``labels``, ``label_mask``.
  """
  if len(questions) != len(answers):
    raise ValueError("questions and answers differ in length")
  out = encode_sources(tokenizer, questions, max_src_len)
  out.update(encode_targets(tokenizer, answers, max_tgt_len, start_id))
  return out


# --------------------------------------------------------------------------
# Metric.


def _is_punct(ch: str) -> bool:
  # BERT's BasicTokenizer definition: ASCII symbols plus Unicode P* classes.
  cp = ord(ch)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(ch).startswith("P")


def normalize_answer(s: str) -> str:
  """Lower-case, strip accents, space out punctuation, collapse whitespace.

  Idempotent, and equal for a gold answer and its WordPiece round trip
  (``tok.decode(tok(s))``), so exact match is not defeated by decoding.
  """
  s = unicodedata.normalize("NFD", s.lower())
  s = "".join(c for c in s if unicodedata.category(c) != "Mn")
  s = "".join(f" {c} " if _is_punct(c) else c for c in s)
  return re.sub(r"\s+", " ", s).strip()


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
  """True if the normalised prediction equals any normalised gold answer."""
  p = normalize_answer(prediction)
  return any(p == normalize_answer(a) for a in answers)


# --------------------------------------------------------------------------
# Generation.


def generation_config(model_config, max_new_tokens: int):
  """The pinned ``transformers.GenerationConfig``: plain greedy decoding.

  ``max_length`` counts the decoder start token, as transformers does.
  Nothing is inherited from a hub config: no beams, no n-gram blocking, no
  forced bos/eos, no minimum length.
  """
  from transformers import GenerationConfig  # pylint: disable=g-import-not-at-top
  return GenerationConfig(
      num_beams=1, do_sample=False, max_length=max_new_tokens + 1,
      min_length=0, no_repeat_ngram_size=0, forced_bos_token_id=None,
      forced_eos_token_id=None, early_stopping=False,
      decoder_start_token_id=model_config.decoder_start_token_id,
      bos_token_id=model_config.bos_token_id,
      eos_token_id=model_config.eos_token_id,
      pad_token_id=model_config.pad_token_id)


def greedy_decode_fn(model, max_new_tokens: int,
                     capture: Optional[Callable] = None
                     ) -> Callable[..., Any]:
  """A pure, un-jitted ``fn(params, encoder_hidden, attention_mask) -> ids``.

  ``ids`` is [B, max_new_tokens] int32: the greedy tokens after the decoder
  start, with ``pad`` after the first eos. The encoder output is an input, so
  callers that already have it (training, the editor) skip the encoder; wrap
  in ``jax.jit`` yourself, e.g. under ``flax.linen.intercept_methods``.

  With ``capture`` (``capture(step) -> (output, query [B, 1, d])``, e.g. the
  patch site's input through `run_with_patch`), ``fn`` returns
  ``(ids, queries [B, T, d], lead [B, T])``: each step's query and how far
  its greedy token led the runner-up, what a draft of this answer needs
  (drafts.py) without a second, teacher-forced pass.
  """
  cfg = model.config
  start, eos, pad = (cfg.decoder_start_token_id, cfg.eos_token_id,
                     cfg.pad_token_id)

  def fn(params, encoder_hidden, attention_mask):
    from transformers.modeling_flax_outputs import FlaxBaseModelOutput  # pylint: disable=g-import-not-at-top
    b = encoder_hidden.shape[0]
    enc = FlaxBaseModelOutput(last_hidden_state=encoder_hidden)
    # Only the cache's shapes come from this init; jit drops the rest.
    cache = model.init_cache(b, max_new_tokens, enc)
    dec_mask = jnp.ones((b, max_new_tokens), jnp.int32)

    def cond(carry):
      t, _, _, done = carry[:4]
      return (t < max_new_tokens) & ~jnp.all(done)

    def body(carry):
      t, token, cache, done, ids = carry[:5]
      step = lambda: model.decode(
          token[:, None], enc, encoder_attention_mask=attention_mask,
          decoder_attention_mask=dec_mask,
          decoder_position_ids=jnp.full((b, 1), t, jnp.int32),
          past_key_values=cache, params=params)
      out, query = capture(step) if capture else (step(), None)
      logits = out.logits[:, -1]
      nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
      nxt = jnp.where(done, pad, nxt)
      put = lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x, t, 1)
      new = (t + 1, nxt, out.past_key_values, done | (nxt == eos),
             put(ids, nxt[:, None]))
      if capture:
        top = jnp.max(logits, axis=-1)
        vocab = jnp.arange(logits.shape[-1])
        runner_up = jnp.max(jnp.where(vocab == jnp.argmax(logits, -1)[:, None],
                                      -jnp.inf, logits), axis=-1)
        new += (put(carry[5], query), put(carry[6], (top - runner_up)[:, None]))
      return new

    # A while loop, not a scan: it stops once every row has emitted eos
    # (most answers are a few tokens long).
    init = (jnp.int32(0), jnp.full((b,), start, jnp.int32), cache,
            jnp.zeros((b,), bool), jnp.full((b, max_new_tokens), pad, jnp.int32))
    if capture:
      init += (jnp.zeros((b, max_new_tokens, cfg.d_model), jnp.float32),
               jnp.zeros((b, max_new_tokens), jnp.float32))
    out = jax.lax.while_loop(cond, body, init)
    return out[4:] if capture else out[4]

  return fn


@functools.lru_cache(maxsize=16)
def _jitted_decode(model, max_new_tokens: int):
  return jax.jit(greedy_decode_fn(model, max_new_tokens))


@functools.lru_cache(maxsize=16)
def _jitted_encode(model):
  return jax.jit(lambda p, ids, mask: model.encode(
      ids, attention_mask=mask, params=p).last_hidden_state)


def _batches(n: int, batch_size: int):
  for start in range(0, n, batch_size):
    yield start, min(start + batch_size, n)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  if x.shape[0] == rows:
    return x
  pad = np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)
  return np.concatenate([x, pad], axis=0)


def decode_ids(tokenizer, ids: np.ndarray) -> list:
  """Token ids -> strings, dropping special tokens (and everything after eos)."""
  eos = tokenizer.sep_token_id
  texts = []
  for row in np.asarray(ids):
    row = list(row)
    if eos in row:
      row = row[:row.index(eos)]
    texts.append(tokenizer.decode(row, skip_special_tokens=True))
  return texts


def greedy_generate_ids(model, params: Params, input_ids: np.ndarray,
                        attention_mask: np.ndarray, max_new_tokens: int,
                        batch_size: int = DEFAULT_BATCH_SIZE,
                        encoder_hidden: Optional[np.ndarray] = None,
                        on_batch: Optional[Callable[[int], Any]] = None
                        ) -> np.ndarray:
  """Greedy token ids [N, max_new_tokens] for padded sources.

  Runs in fixed-size batches (the last one zero-padded) so there is one
  compile per (batch_size, source length, max_new_tokens). Pass
  ``encoder_hidden`` (e.g. cached frozen-encoder outputs) to skip the encoder,
  ``on_batch`` to hear the rows of each batch as it is done (a progress bar's
  ``update``).
  """
  encode = _jitted_encode(model)
  decode = _jitted_decode(model, max_new_tokens)
  n = input_ids.shape[0]
  out = []
  for s, e in _batches(n, batch_size):
    mask = _pad_rows(np.asarray(attention_mask[s:e]), batch_size)
    mask[e - s:, 0] = 1  # padded rows attend to one token: no NaN softmax
    if encoder_hidden is None:
      ids = _pad_rows(np.asarray(input_ids[s:e]), batch_size)
      hidden = encode(params, ids, mask)
    else:
      hidden = _pad_rows(np.asarray(encoder_hidden[s:e]), batch_size)
    out.append(np.asarray(decode(params, hidden, mask))[:e - s])
    if on_batch is not None:
      on_batch(e - s)
  if not out:
    return np.zeros((0, max_new_tokens), np.int32)
  return np.concatenate(out, axis=0)


def greedy_generate(model, params: Params, input_ids: np.ndarray,
                    attention_mask: np.ndarray, max_new_tokens: int,
                    tokenizer, batch_size: int = DEFAULT_BATCH_SIZE,
                    encoder_hidden: Optional[np.ndarray] = None,
                    on_batch: Optional[Callable[[int], Any]] = None) -> list:
  """Greedy decoding to strings (special tokens removed).

  Compare to gold answers with ``exact_match``. ``on_batch``: as for
  ``greedy_generate_ids``.
  """
  ids = greedy_generate_ids(model, params, input_ids, attention_mask,
                            max_new_tokens, batch_size, encoder_hidden,
                            on_batch)
  return decode_ids(tokenizer, ids)


def generate_answers(model, params: Params, tokenizer,
                     questions: Sequence[str], max_src_len: int,
                     max_new_tokens: int,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> list:
  """Questions in, greedy answer strings out."""
  src = encode_sources(tokenizer, questions, max_src_len)
  return greedy_generate(model, params, src["input_ids"],
                         src["attention_mask"], max_new_tokens, tokenizer,
                         batch_size)
