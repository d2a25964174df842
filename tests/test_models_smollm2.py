"""The SmolLM2 loader's pieces on a tiny random Llama: RoPE base, q/k
un-permute, tied head, GGUF name mapping (no real weights needed)."""
import jax
import numpy as np
import pytest

from helpers.tiny_llama import tiny_llama
from patcher_jax.models import llama_rope
from patcher_jax.models import smollm2

def _rms(x, w, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def numpy_llama(params, cfg, ids):
  """Independent float64 forward of a Llama (rotate-half RoPE with
  cfg.rope_theta, GQA, SwiGLU, logits through the tied embedding)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["model"]
  emb = p["embed_tokens"]["embedding"]
  h_n, kv_n = cfg.num_attention_heads, cfg.num_key_value_heads
  hd = cfg.hidden_size // h_n
  t = len(ids)
  ang = np.outer(np.arange(t), cfg.rope_theta ** (-np.arange(0, hd, 2) / hd))
  cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(
      np.concatenate([ang, ang], -1))

  def rope(x):   # [T, H, hd]
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    return x * cos[:, None] + rot * sin[:, None]

  x = emb[ids]
  for i in range(cfg.num_hidden_layers):
    lp = p["layers"][str(i)]
    a = lp["self_attn"]
    h = _rms(x, lp["input_layernorm"]["weight"], cfg.rms_norm_eps)
    q = rope((h @ a["q_proj"]["kernel"]).reshape(t, h_n, hd))
    k = rope((h @ a["k_proj"]["kernel"]).reshape(t, kv_n, hd))
    v = (h @ a["v_proj"]["kernel"]).reshape(t, kv_n, hd)
    group = np.arange(h_n) // (h_n // kv_n)
    s = np.einsum("thd,shd->hts", q, k[:, group]) / np.sqrt(hd)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("hts,shd->thd", w, v[:, group]).reshape(t, -1)
    x = x + o @ a["o_proj"]["kernel"]
    m = lp["mlp"]
    h = _rms(x, lp["post_attention_layernorm"]["weight"], cfg.rms_norm_eps)
    g = h @ m["gate_proj"]["kernel"]
    x = x + ((g / (1 + np.exp(-g))) * (h @ m["up_proj"]["kernel"])
             ) @ m["down_proj"]["kernel"]
  x = _rms(x, p["norm"]["weight"], cfg.rms_norm_eps)
  return x @ emb.T


def _flax_logits(model, params, ids, scope):
  if scope:
    with llama_rope.rope_scope(model.config):
      return np.asarray(jax.jit(lambda p, i: model(i, params=p).logits)(
          params, ids))
  return np.asarray(model(ids, params=params).logits)


def test_rope_scope_matches_numpy_reference():
  model, params, cfg = tiny_llama()
  ids = np.random.default_rng(0).integers(0, cfg.vocab_size, 12)
  ref = numpy_llama(params, cfg, ids)
  got = _flax_logits(model, params, ids[None], scope=True)[0]
  np.testing.assert_allclose(got, ref, atol=2e-4, rtol=1e-4)
  # without the scope the library's hard-coded base 10000 is used: wrong
  plain = _flax_logits(model, params, ids[None], scope=False)[0]
  assert np.abs(plain - ref).max() > 1e-2


def test_rope_scope_base_10000_is_the_library():
  model, params, _ = tiny_llama(rope_theta=10000.0)
  ids = np.arange(10)[None] % 61
  np.testing.assert_allclose(_flax_logits(model, params, ids, True),
                             _flax_logits(model, params, ids, False),
                             atol=1e-5)


def test_unpermute_undoes_permute():
  rng = np.random.default_rng(1)
  for heads, (out, inp) in ((9, (576, 8)), (3, (192, 8)), (4, (32, 5))):
    w = rng.normal(size=(out, inp))
    np.testing.assert_array_equal(
        smollm2.unpermute_qk(smollm2.permute_qk(w, heads), heads), w)
    assert not np.array_equal(smollm2.permute_qk(w, heads), w)


def test_permuted_interleaved_rope_is_rotate_half_rope():
  """What llama.cpp computes on the stored (permuted) q equals the permuted
  HF rotate-half RoPE of the un-permuted q: the un-permute is the right one."""
  rng = np.random.default_rng(2)
  heads, hd, pos, theta = 3, 8, 5, 1e5
  w = rng.normal(size=(heads * hd, 6))
  x = rng.normal(size=6)
  inv = theta ** (-np.arange(0, hd, 2) / hd)
  c, s = np.cos(pos * inv), np.sin(pos * inv)
  # llama.cpp "normal" RoPE on pairs (2i, 2i+1) of each head of the GGUF q
  y = (smollm2.permute_qk(w, heads) @ x).reshape(heads, hd // 2, 2)
  inter = np.stack([y[..., 0] * c - y[..., 1] * s,
                    y[..., 0] * s + y[..., 1] * c], -1).reshape(-1)
  # HF rotate-half RoPE on the un-permuted weights, then the same permutation
  z = (w @ x).reshape(heads, hd)
  half = np.concatenate([-z[:, hd // 2:], z[:, :hd // 2]], -1)
  hf = z * np.concatenate([c, c]) + half * np.concatenate([s, s])
  np.testing.assert_allclose(
      inter, smollm2.permute_qk(hf.reshape(-1, 1), heads)[:, 0], atol=1e-12)


def test_tie_head_is_embedding_transpose():
  """The head is the embedding's transpose (the numpy reference, which uses
  the embedding itself as the head, pins the logits)."""
  _, params, _ = tiny_llama()
  emb = params["model"]["embed_tokens"]["embedding"]
  np.testing.assert_array_equal(params["lm_head"]["kernel"], emb.T)
  untied = {k: v for k, v in params.items() if k != "lm_head"}
  assert "lm_head" not in untied and "lm_head" in smollm2.tie_head(untied)


def test_flat_params_maps_every_gguf_tensor():
  model, params, cfg = tiny_llama()
  c = cfg.to_dict()
  heads = {"attn_q": c["num_attention_heads"],
           "attn_k": c["num_key_value_heads"]}
  # build a fake GGUF (torch layout, q/k permuted) from the Flax params
  tensors = {"token_embd.weight": params["model"]["embed_tokens"]["embedding"],
             "output_norm.weight": params["model"]["norm"]["weight"]}
  for i in range(cfg.num_hidden_layers):
    layer = params["model"]["layers"][str(i)]
    for name, (path, linear) in smollm2._LAYER_MAP.items():
      w = layer
      for k in path:
        w = w[k]
      w = w.T if linear else w
      if name in heads:
        w = smollm2.permute_qk(w, heads[name])
      tensors[f"blk.{i}.{name}.weight"] = w
  back = smollm2.tie_head(smollm2.nest(smollm2.flat_params(tensors, c)))
  jax.tree.map(np.testing.assert_array_equal, back, params)
  with pytest.raises(ValueError, match="untied"):
    smollm2.flat_params({**tensors, "output.weight": tensors[
        "token_embd.weight"]}, c)
