"""RoPE with the config's base for transformers' `FlaxLlamaForCausalLM`.

transformers 4.57's Flax Llama builds its sin/cos table with a hard-coded base
of 10000 and ignores `config.rope_theta` (SmolLM2 uses 100000). We do not
patch the library: `rope_scope(config)` intercepts the calls of every
`FlaxLlamaRotaryEmbedding` (flax.linen.intercept_methods) and applies the
rotation with a table of the right base instead. The scope is a context
manager around the model call; it must be active while the model is traced
(so inside the jitted function, around `model(...)`), and it touches no
global state: outside it the model is the library's.
"""
import contextlib
import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=8)
def sincos_table(num_pos: int, head_dim: int, theta: float) -> np.ndarray:
  """[num_pos, 1, 2 * head_dim] float32: sin then cos of each position and
  rotary frequency (HF's rotate-half layout: the frequencies repeated).

  Example:
    >>> sincos_table(4, 8, 1e5).shape
    (4, 1, 16)
  """
  inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2) / head_dim))
  freqs = np.outer(np.arange(num_pos), inv_freq).astype(np.float32)
  emb = np.concatenate([freqs, freqs], axis=-1)
  return np.concatenate([np.sin(emb), np.cos(emb)], axis=-1)[:, None, :]


def _rotate_half(x):
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(key, query, position_ids, table, dtype=jnp.float32):
  """(key, query) rotated: [B, T, H, hd] arrays, position_ids [B, T]."""
  sin, cos = jnp.split(jnp.asarray(table)[position_ids], 2, axis=-1)
  rot = lambda x: (x * cos + _rotate_half(x) * sin).astype(dtype)
  return rot(key), rot(query)


def _is_rotary(module) -> bool:
  return type(module).__name__ == "FlaxLlamaRotaryEmbedding"


@contextlib.contextmanager
def rope_scope(config):
  """Within this context, Flax Llama models rotate with `config.rope_theta`.

  Args:
    config: a transformers `LlamaConfig` (hidden_size, num_attention_heads,
      max_position_embeddings, rope_theta).

  Example:
    >>> from transformers import LlamaConfig
    >>> cfg = LlamaConfig(hidden_size=16, num_attention_heads=2,
    ...                   max_position_embeddings=8, rope_theta=1e5)
    >>> with rope_scope(cfg):
    ...   pass   # call (and trace) the model here
  """
  head_dim = config.hidden_size // config.num_attention_heads
  table = sincos_table(int(config.max_position_embeddings), head_dim,
                       float(getattr(config, "rope_theta", 10000.0)))

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and _is_rotary(context.module):
      key, query, position_ids = args
      return apply_rope(key, query, position_ids, table, context.module.dtype)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield
