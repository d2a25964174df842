"""A tiny random Llama with a tied head, attention sharp enough for positions
(and so the RoPE base) to matter."""
import jax
import numpy as np
from transformers import FlaxLlamaForCausalLM, LlamaConfig

from patcher_jax.models import smollm2

TINY = dict(vocab_size=61, hidden_size=32, intermediate_size=48,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            rms_norm_eps=1e-5, rope_theta=1e5, max_position_embeddings=32,
            tie_word_embeddings=True, hidden_act="silu")


def tiny_llama(seed=0, **overrides):
  """(model, params with lm_head = embedding.T, config)."""
  config = LlamaConfig(**{**TINY, **overrides})
  model = FlaxLlamaForCausalLM(config, _do_init=False)
  params = model.init_weights(jax.random.PRNGKey(seed), (1, 8))
  params = dict(jax.tree.map(np.asarray, params))
  params.pop("lm_head", None)
  # init std 0.02 leaves attention almost uniform and logits flat: sharpen
  for layer in params["model"]["layers"].values():
    for name in ("q_proj", "k_proj"):
      layer["self_attn"][name]["kernel"] = layer["self_attn"][name][
          "kernel"] * 25.0
  params["model"]["embed_tokens"]["embedding"] = params["model"][
      "embed_tokens"]["embedding"] * 50.0
  return model, smollm2.tie_head(params), config
