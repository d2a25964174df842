"""MiniLM loading and the BERT -> BART warm start."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file
from transformers import (BertConfig, FlaxBartForConditionalGeneration,
                          FlaxBertModel)

from patcher_jax.models import bart_from_minilm, minilm


def _tiny_bert_config(**kw):
  base = dict(vocab_size=64, hidden_size=16, num_hidden_layers=3,
              num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=24, hidden_act="gelu")
  base.update(kw)
  return BertConfig(**base)


def _torch_style_state_dict(cfg, seed=0):
  """Random tensors under PyTorch BertModel names, (out, in) Linear layout."""
  rng = np.random.default_rng(seed)
  h, f = cfg.hidden_size, cfg.intermediate_size
  sd = {}

  def add(name, *shape):
    sd[name] = rng.normal(size=shape).astype(np.float32) * 0.2

  add("embeddings.word_embeddings.weight", cfg.vocab_size, h)
  add("embeddings.position_embeddings.weight", cfg.max_position_embeddings, h)
  add("embeddings.token_type_embeddings.weight", 2, h)
  for i in range(cfg.num_hidden_layers):
    p = f"encoder.layer.{i}."
    for n in ("query", "key", "value"):
      add(p + f"attention.self.{n}.weight", h, h)
      add(p + f"attention.self.{n}.bias", h)
    add(p + "attention.output.dense.weight", h, h)
    add(p + "attention.output.dense.bias", h)
    add(p + "intermediate.dense.weight", f, h)
    add(p + "intermediate.dense.bias", f)
    add(p + "output.dense.weight", h, f)
    add(p + "output.dense.bias", h)
  for ln in ["embeddings.LayerNorm"] + [
      f"encoder.layer.{i}.{s}.LayerNorm" for i in range(cfg.num_hidden_layers)
      for s in ("attention.output", "output")]:
    sd[ln + ".weight"] = 1 + 0.1 * rng.normal(size=h).astype(np.float32)
    add(ln + ".bias", h)
  add("pooler.dense.weight", h, h)
  add("pooler.dense.bias", h)
  return sd


def test_safetensors_mapping_matches_transformers_loader(tmp_path):
  # transformers' own PyTorch->Flax converter is the ground truth for names
  # and transposes; a wrong name would leave a random init there.
  cfg = _tiny_bert_config()
  sd = _torch_style_state_dict(cfg)
  save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
  cfg.save_pretrained(str(tmp_path))
  ours = minilm.load_bert_params(str(tmp_path))
  theirs = FlaxBertModel.from_pretrained(str(tmp_path)).params
  chex.assert_trees_all_equal_structs(ours, theirs)
  chex.assert_trees_all_close(ours, theirs, atol=0, rtol=0)


def _bert_and_bart_encoder(cfg, bert_params, ids, mask):
  bert = FlaxBertModel(cfg, _do_init=False)
  want = bert(ids, attention_mask=mask, params=bert_params).last_hidden_state
  bart_cfg, bart_params = bart_from_minilm.bart_from_bert(
      bert_params, cfg, jax.random.PRNGKey(0), decoder_layers=2)
  bart = FlaxBartForConditionalGeneration(bart_cfg, _do_init=False)
  got = bart.encode(ids, attention_mask=mask,
                    params=bart_params).last_hidden_state
  valid = np.asarray(mask, bool)
  return np.asarray(want)[valid], np.asarray(got)[valid]


def test_bart_encoder_is_exact_when_epsilons_agree():
  # With BERT's LayerNorm epsilon set to BART's hard-coded 1e-5 the two
  # encoders compute the same function: only float round-off may differ.
  cfg = _tiny_bert_config(layer_norm_eps=1e-5)
  params = minilm.torch_bert_to_flax(_torch_style_state_dict(cfg), 3)
  ids = jnp.array([[1, 5, 9, 33, 2, 0], [1, 7, 2, 0, 0, 0]])
  mask = (ids > 0).astype(jnp.int32)
  want, got = _bert_and_bart_encoder(cfg, params, ids, mask)
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


@pytest.mark.parametrize("bert_eps, atol", [(1e-5, 1e-5), (None, 2e-3)])
def test_bart_encoder_matches_minilm(bert_eps, atol):
  """The real MiniLM: BART's encoder output equals BertModel's for the same tokens.

  Flax BART hard-codes LayerNorm epsilon 1e-5 while MiniLM uses 1e-12.
  - With BERT's epsilon overridden to 1e-5 the functions are identical, so we
    demand float round-off only (1e-5 on outputs of magnitude ~5).
  - With MiniLM's own 1e-12 the embedding LayerNorm sees a variance of only
    ~0.004, so sqrt(var + 1e-5) differs from sqrt(var) by ~1e-3 relative and
    the outputs move by up to ~7e-4: a 2e-3 tolerance. A wrong mapping (missing
    transpose, dropped type embedding, off-by-one position) moves them by
    >= 1e-1, so both checks can fail.
  """
  overrides = {} if bert_eps is None else {"layer_norm_eps": bert_eps}
  cfg = minilm.load_bert_config(**overrides)
  params = minilm.load_bert_params()
  tok = minilm.load_tokenizer()
  enc = tok(["What is the capital of France?", "Which country is Lyon in?"],
            padding=True, return_tensors="np")
  want, got = _bert_and_bart_encoder(cfg, params, enc["input_ids"],
                                     enc["attention_mask"])
  assert np.abs(want).max() > 1.0  # a real signal, not a trivially small one
  np.testing.assert_allclose(got, want, atol=atol, rtol=0)


def test_bart_tree_structure_and_decoder_sources():
  cfg = _tiny_bert_config()
  bert = minilm.torch_bert_to_flax(_torch_style_state_dict(cfg), 3)
  bart_cfg, params = bart_from_minilm.bart_from_bert(
      bert, cfg, jax.random.PRNGKey(1), decoder_layers=2)
  model = FlaxBartForConditionalGeneration(bart_cfg, _do_init=False)
  want = jax.eval_shape(lambda r: model.init_weights(r, (1, 4)),
                        jax.random.PRNGKey(0))
  chex.assert_trees_all_equal_shapes_and_dtypes(params, want)
  assert bart_cfg.max_position_embeddings + 2 == (
      params["model"]["encoder"]["embed_positions"]["embedding"].shape[0])
  assert not bart_cfg.scale_embedding
  assert bart_cfg.decoder_start_token_id == bart_cfg.eos_token_id == 102
  assert bart_cfg.forced_bos_token_id is None
  assert bart_cfg.forced_eos_token_id is None
  # Decoder layers 0, 1 come from BERT's top layers 1, 2.
  dec = params["model"]["decoder"]["layers"]
  for j, i in ((0, 1), (1, 2)):
    np.testing.assert_array_equal(
        dec[str(j)]["fc1"]["kernel"],
        bert["encoder"]["layer"][str(i)]["intermediate"]["dense"]["kernel"])
    np.testing.assert_array_equal(
        dec[str(j)]["self_attn"]["q_proj"]["kernel"],
        bert["encoder"]["layer"][str(i)]["attention"]["self"]["query"]["kernel"])
  # Fresh cross-attention: small random kernels, seeded.
  k = np.asarray(dec["0"]["encoder_attn"]["q_proj"]["kernel"])
  assert 0.01 < k.std() < 0.03
  _, again = bart_from_minilm.bart_from_bert(
      bert, cfg, jax.random.PRNGKey(1), decoder_layers=2)
  chex.assert_trees_all_equal(params, again)
  # Positions: type-0 embedding folded in, offset 2.
  emb = bert["embeddings"]
  np.testing.assert_allclose(
      params["model"]["decoder"]["embed_positions"]["embedding"][2 + 5],
      emb["position_embeddings"]["embedding"][5]
      + emb["token_type_embeddings"]["embedding"][0], rtol=1e-6)


def test_bad_decoder_depth_raises():
  with pytest.raises(ValueError):
    bart_from_minilm.bart_config_from_bert(_tiny_bert_config(),
                                           decoder_layers=4)
