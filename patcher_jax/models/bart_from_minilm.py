"""Warm-start a ``FlaxBartForConditionalGeneration`` from a BERT encoder (MiniLM).

BERT and BART layers are both post-LayerNorm transformers with exact-GELU FFNs,
so a BERT layer maps one-to-one onto a BART encoder layer, and onto a BART
decoder layer minus its cross-attention (the BERT2BERT warm start of Rothe et
al., 2020). The mapping, per layer (PyTorch BERT name -> Flax BART name):

  attention.self.{query,key,value}  -> self_attn.{q,k,v}_proj
  attention.output.dense            -> self_attn.out_proj
  attention.output.LayerNorm        -> self_attn_layer_norm
  intermediate.dense                -> fc1
  output.dense                      -> fc2
  output.LayerNorm                  -> final_layer_norm
  (decoder only) encoder_attn, encoder_attn_layer_norm: fresh

Embeddings:
  word_embeddings                   -> shared (tied: also the LM head)
  position_embeddings[i] + token_type_embeddings[0]
                                    -> embed_positions[i + 2] (BART's offset 2;
                                       BERT adds the type-0 row to every token,
                                       so it folds into the positions exactly)
  embeddings.LayerNorm              -> layernorm_embedding (encoder and decoder)

The decoder takes BERT's *top* ``decoder_layers`` layers. ``scale_embedding`` is
off (BERT does not scale). The one inexact piece: Flax BART hard-codes the
LayerNorm epsilon to 1e-5 where BERT uses 1e-12. MiniLM's embedding LayerNorm
sees variances of only ~0.004, so the BART encoder's outputs differ from
MiniLM's by up to ~1e-3 (with BERT's epsilon set to 1e-5 they agree to ~1e-6).
"""
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Params = Dict[str, Any]

POSITION_OFFSET = 2  # FlaxBart{En,De}coder index their position table at i + 2


def bart_config_from_bert(bert_config,
                          decoder_layers: int = 2,
                          bos_token_id: int = 101,
                          eos_token_id: int = 102,
                          dropout: float = 0.1,
                          attention_dropout: float = 0.1,
                          activation_dropout: float = 0.1,
                          tie_word_embeddings: bool = True):
  """The ``BartConfig`` matching a BERT config (MiniLM: d=384, 6 layers, 12 heads).

  Special tokens follow the reference's BART with WordPiece names: bos = [CLS],
  eos = decoder start = [SEP], pad = [PAD]. Generation defaults that the hub's
  bart-base would inject (forced bos/eos, no_repeat_ngram_size, beams) are
  switched off here; ``qa_format.generation_config`` pins the rest.
  Dropouts default to bart-base's (0.1 each, including activation dropout,
  which the reference's editor also trains under). With
  ``tie_word_embeddings=False`` the LM head is a separate matrix, initialised
  as a copy of the word embeddings (so it can train while the encoder's input
  table stays frozen).
  """
  from transformers import BartConfig  # pylint: disable=g-import-not-at-top
  if not 1 <= decoder_layers <= bert_config.num_hidden_layers:
    raise ValueError(f"decoder_layers must be in [1, "
                     f"{bert_config.num_hidden_layers}], got {decoder_layers}")
  if bert_config.hidden_act != "gelu":
    raise ValueError(f"BART uses exact GELU; got {bert_config.hidden_act}")
  return BartConfig(
      vocab_size=bert_config.vocab_size,
      d_model=bert_config.hidden_size,
      encoder_layers=bert_config.num_hidden_layers,
      decoder_layers=decoder_layers,
      encoder_attention_heads=bert_config.num_attention_heads,
      decoder_attention_heads=bert_config.num_attention_heads,
      encoder_ffn_dim=bert_config.intermediate_size,
      decoder_ffn_dim=bert_config.intermediate_size,
      activation_function="gelu",
      max_position_embeddings=bert_config.max_position_embeddings,
      scale_embedding=False,
      init_std=bert_config.initializer_range,
      dropout=dropout,
      attention_dropout=attention_dropout,
      activation_dropout=activation_dropout,
      classifier_dropout=0.0,
      pad_token_id=bert_config.pad_token_id,
      bos_token_id=bos_token_id,
      eos_token_id=eos_token_id,
      decoder_start_token_id=eos_token_id,
      forced_bos_token_id=None,
      forced_eos_token_id=None,
      tie_word_embeddings=tie_word_embeddings,
      no_repeat_ngram_size=0,
      num_beams=1,
  )


def _attn(layer: Params) -> Params:
  a = layer["attention"]["self"]
  return {"q_proj": a["query"], "k_proj": a["key"], "v_proj": a["value"],
          "out_proj": layer["attention"]["output"]["dense"]}


def _fresh_dense(rng, d_in: int, d_out: int, std: float) -> Params:
  return {"kernel": std * jax.random.normal(rng, (d_in, d_out), jnp.float32),
          "bias": jnp.zeros((d_out,), jnp.float32)}


def _layer_common(layer: Params) -> Params:
  return {
      "self_attn": _attn(layer),
      "self_attn_layer_norm": layer["attention"]["output"]["LayerNorm"],
      "fc1": layer["intermediate"]["dense"],
      "fc2": layer["output"]["dense"],
      "final_layer_norm": layer["output"]["LayerNorm"],
  }


def bart_params_from_bert(bert_params: Params, bart_config,
                          rng: jax.Array) -> Params:
  """``FlaxBartForConditionalGeneration`` params from ``FlaxBertModel`` params.

  Args:
    bert_params: the ``FlaxBertModel`` tree (``embeddings``, ``encoder``, ...).
    bart_config: from ``bart_config_from_bert``.
    rng: seeds the fresh cross-attention weights (normal, std ``init_std``).

  Returns:
    A params tree with exactly the structure ``FlaxBartForConditionalGeneration``
    initialises (with tied embeddings there is no ``lm_head``), as jax arrays.
  """
  emb = bert_params["embeddings"]
  n_enc, n_dec = bart_config.encoder_layers, bart_config.decoder_layers
  bert_layers = bert_params["encoder"]["layer"]
  if len(bert_layers) != n_enc:
    raise ValueError(f"BERT has {len(bert_layers)} layers, config says {n_enc}")
  d = bart_config.d_model
  pos = np.asarray(emb["position_embeddings"]["embedding"])
  type0 = np.asarray(emb["token_type_embeddings"]["embedding"])[0]
  n_pos = bart_config.max_position_embeddings + POSITION_OFFSET
  if pos.shape[0] + POSITION_OFFSET < n_pos:
    raise ValueError("BART needs more positions than BERT has")
  table = np.tile(type0, (n_pos, 1))  # rows 0, 1 are never indexed
  table[POSITION_OFFSET:] += pos[:n_pos - POSITION_OFFSET]
  positions = {"embedding": table}

  encoder = {
      "embed_positions": positions,
      "layernorm_embedding": emb["LayerNorm"],
      "layers": {str(i): _layer_common(bert_layers[str(i)])
                 for i in range(n_enc)},
  }
  rngs = jax.random.split(rng, n_dec * 4)
  std = bart_config.init_std
  dec_layers = {}
  for j in range(n_dec):
    layer = dict(_layer_common(bert_layers[str(n_enc - n_dec + j)]))
    layer["encoder_attn"] = {
        name: _fresh_dense(rngs[4 * j + k], d, d, std)
        for k, name in enumerate(("q_proj", "k_proj", "v_proj", "out_proj"))}
    layer["encoder_attn_layer_norm"] = {"scale": jnp.ones((d,), jnp.float32),
                                        "bias": jnp.zeros((d,), jnp.float32)}
    dec_layers[str(j)] = layer
  decoder = {
      "embed_positions": positions,
      "layernorm_embedding": emb["LayerNorm"],
      "layers": dec_layers,
  }
  params = {
      "model": {
          "shared": {"embedding": emb["word_embeddings"]["embedding"]},
          "encoder": encoder,
          "decoder": decoder,
      },
      "final_logits_bias": np.zeros((1, bart_config.vocab_size), np.float32),
  }
  if not bart_config.tie_word_embeddings:
    params["lm_head"] = {"kernel": np.asarray(
        emb["word_embeddings"]["embedding"]).T}
  # Fresh copies: encoder and decoder must not alias one buffer (donation).
  return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.float32), params)


def bart_from_bert(bert_params: Params, bert_config, rng: jax.Array,
                   **config_kwargs) -> Tuple[Any, Params]:
  """(BartConfig, params): the whole conversion in one call."""
  bart_config = bart_config_from_bert(bert_config, **config_kwargs)
  return bart_config, bart_params_from_bert(bert_params, bart_config, rng)
