"""BART seq2seq (transformers `FlaxBartForConditionalGeneration`).

The patch goes into the FFN (fc1/fc2) of the last decoder layer. Queries are the
fc1 inputs at every teacher-forced decoder position; the tail runs the FFN, the
final LayerNorm of that layer and the tied LM head at those positions only, so
the vocabulary projection is paid for the answer tokens, not the whole batch.
"""
import jax
import jax.numpy as jnp

from patcher_jax import augment
from patcher_jax import objectives
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters.intercept import FFNSite, run_with_patch
from patcher_jax.fullpath import FullModel

BART_NORM_EPS = 1e-5  # hard-coded in transformers' FlaxBartDecoderLayer


def last_layer(config) -> str:
  return str(config.decoder_layers - 1)


def site(config) -> FFNSite:
  layer = ("model", "decoder", "layers", last_layer(config))
  return FFNSite(key_path=layer + ("fc1",), value_path=layer + ("fc2",))


def _lm_head(head, hidden, rng, train, rate):
  """Tied LM head: hidden @ E^T + final_logits_bias (no dropout)."""
  del rng, train, rate
  logits = hidden @ head["embedding"].T
  return logits + head["final_logits_bias"][0]


def _untied_lm_head(head, hidden, rng, train, rate):
  del rng, train, rate
  return hidden @ head["kernel"] + head["final_logits_bias"][0]


def _fused_objective(head, hidden, targets, mask, margin):
  return objectives.fused_seq2seq_objective(head["fused"], hidden, targets,
                                            mask, margin)


def make_tail(config, params) -> tail_lib.Tail:
  """The frozen top of a BART: last decoder FFN + LayerNorm + LM head."""
  if config.activation_function != "gelu":
    raise ValueError("expected a GELU BART, got activation_function="
                     f"{config.activation_function}")
  layer = params["model"]["decoder"]["layers"][last_layer(config)]
  ffn = {"fc1": layer["fc1"], "fc2": layer["fc2"],
         "norm": layer["final_layer_norm"]}
  bias = params["final_logits_bias"]
  if config.tie_word_embeddings:
    head = {"embedding": params["model"]["shared"]["embedding"],
            "final_logits_bias": bias}
    head_fn = _lm_head
    kernel = head["embedding"].T
  else:
    head = {"kernel": params["lm_head"]["kernel"], "final_logits_bias": bias}
    head_fn = _untied_lm_head
    kernel = head["kernel"]
  # The edit loop reads the LM head once per step through the fused
  # objective (a chunked copy; see objectives.chunk_linear_head).
  head["fused"] = objectives.chunk_linear_head(kernel, bias[0])
  return tail_lib.Tail(
      ffn=ffn, head=head, head_fn=head_fn,
      loss_fn=objectives.seq2seq_loss, wrong_fn=objectives.argmax_wrong,
      norm_eps=BART_NORM_EPS, hidden_dropout=config.dropout,
      activation_dropout=config.activation_dropout, head_dropout=0.0,
      act=patch_lib.gelu, objective_fn=_fused_objective)


def forward(model, params, input_ids, attention_mask, decoder_input_ids,
            decoder_attention_mask, *, bank=None, train=False, rng=None):
  """Teacher-forced full forward: (logits [B, T, V], queries [B, T, d])."""
  delta_fn = None
  if bank is not None:
    delta_fn = lambda q: patch_lib.bank_output(bank, q)
  out, captured = run_with_patch(
      lambda: model(input_ids, attention_mask,
                    decoder_input_ids=decoder_input_ids,
                    decoder_attention_mask=decoder_attention_mask,
                    params=params, train=train, dropout_rng=rng),
      site(model.config), delta_fn)
  return out.logits, captured[0]


def head_norm(tail: tail_lib.Tail) -> float:
  """The largest norm of an LM-head row (how far a logit can move per unit
  move of the hidden state)."""
  head = tail.head
  rows = (head["embedding"] if "embedding" in head else head["kernel"].T)
  return float(jnp.max(jnp.linalg.norm(rows, axis=-1)))


def queries(model, params, input_ids, attention_mask, decoder_input_ids,
            decoder_attention_mask, *, train=False, rng=None):
  """fc1 inputs of the last decoder layer at every position: [B, T, d]."""
  return forward(model, params, input_ids, attention_mask, decoder_input_ids,
                 decoder_attention_mask, train=train, rng=rng)[1]


def noisy_queries(model, params, input_ids, attention_mask, decoder_input_ids,
                  decoder_attention_mask, rng, num: int):
  """`num` dropout samples of one example's decoder queries: [num, T, d]."""
  rep = lambda a: jnp.repeat(a[:1], num, axis=0)
  return queries(model, params, rep(input_ids), rep(attention_mask),
                 rep(decoder_input_ids), rep(decoder_attention_mask),
                 train=True, rng=rng)


def decoder_noisy_queries(model, params, input_ids, attention_mask,
                          decoder_input_ids, decoder_attention_mask, rng,
                          num: int, encoder_samples: int = 0):
  """`num` dropout samples of one example's decoder queries: [num, T, d],
  at a fraction of `noisy_queries`' cost.

  The encoder, most of the work, runs `encoder_samples` times (0: once
  without dropout; k: k dropout samples, each shared by num / k decoder
  samples); the decoder always runs with dropout. Inputs are [1, T] arrays.

  Example:
    pool = decoder_noisy_queries(model, params, ids, am, dec, dm,
                                 jax.random.PRNGKey(0), 16)
  """
  if encoder_samples and num % encoder_samples:
    raise ValueError(f"num={num} is not a multiple of "
                     f"encoder_samples={encoder_samples}")
  rep = lambda a, n: jnp.repeat(a[:1], n, axis=0)
  r_enc, r_dec = jax.random.split(rng)
  n_enc = max(encoder_samples, 1)
  encoded = model.encode(rep(input_ids, n_enc), rep(attention_mask, n_enc),
                         params=params, train=encoder_samples > 0,
                         dropout_rng=r_enc)
  encoded = encoded.replace(last_hidden_state=jnp.repeat(
      encoded.last_hidden_state, num // n_enc, axis=0))
  _, captured = run_with_patch(
      lambda: model.decode(rep(decoder_input_ids, num), encoded,
                           encoder_attention_mask=rep(attention_mask, num),
                           decoder_attention_mask=rep(decoder_attention_mask,
                                                      num),
                           params=params, train=True, dropout_rng=r_dec),
      site(model.config))
  return captured[0]


def augmented_queries(model, params, input_ids, attention_mask,
                      decoder_input_ids, decoder_attention_mask, rng,
                      num: int, word_drop: float = 0.1, train: bool = False):
  """`num` variants of one example's decoder queries: [num, T, d].

  Each variant hides every input token but the first and the last with
  probability `word_drop` (masked out of attention: a paraphrase-like
  deletion made from the input alone) and, with `train`, adds dropout.
  Inputs are [1, T] arrays.
  """
  rep = lambda a: jnp.repeat(a[:1], num, axis=0)
  r_words, r_drop = jax.random.split(rng)
  mask = augment.hide_words(r_words, attention_mask, num, word_drop)
  return queries(model, params, rep(input_ids), mask, rep(decoder_input_ids),
                 rep(decoder_attention_mask), train=train, rng=r_drop)


def _full_forward(model, params, inputs, delta_fn, rng, train, copies):
  """Whole-model forward of `copies` copies: logits [B, T, V], q [B, T, d]."""
  ids, mask, dec, dec_mask = (jnp.repeat(a, copies, axis=0) for a in inputs)
  out, captured = run_with_patch(
      lambda: model(ids, mask, decoder_input_ids=dec,
                    decoder_attention_mask=dec_mask, params=params,
                    train=train, dropout_rng=rng),
      site(model.config), delta_fn)
  return out.logits, captured[0]


def full_model(model, params, bank, input_ids, attention_mask,
               decoder_input_ids, decoder_attention_mask) -> FullModel:
  """The reference's per-step cost for one example ([1, ...] inputs)."""
  return FullModel(params=params, bank=bank,
                   inputs=(input_ids, attention_mask, decoder_input_ids,
                           decoder_attention_mask),
                   model=model, forward_fn=_full_forward)
