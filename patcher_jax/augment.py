"""Variants of an edit's input made from that input alone.

An edit that also fixes the rephrasings of its input generalises; the
rephrasings themselves are held out, so the editor may only perturb the
input it is given. `hide_words` builds attention masks that hide random
input tokens (a paraphrase-like word deletion that keeps static shapes);
the adapters run the frozen model on them (`bart.augmented_queries`,
`bert.augmented_queries`) to get a pool of query variants for the editor's
`pool_alpha` option.
"""
import chex
import jax
import jax.numpy as jnp


def hide_words(rng: chex.PRNGKey, attention_mask: chex.Array, num: int,
               rate: float) -> chex.Array:
  """`num` copies of a [1, T] attention mask, each hiding every token but
  the first and the last real one with probability `rate`: [num, T].

  Example:
    >>> m = hide_words(jax.random.PRNGKey(0), jnp.ones((1, 6), jnp.int32),
    ...                4, 0.5)
    >>> m.shape, bool((m[:, 0] == 1).all()), bool((m[:, 5] == 1).all())
    ((4, 6), True, True)
  """
  t = attention_mask.shape[-1]
  last = jnp.sum(attention_mask[0]) - 1
  pos = jnp.arange(t)[None, :]
  keep = jax.random.bernoulli(rng, 1.0 - rate, (num, t))
  keep = keep | (pos == 0) | (pos == last)
  rep = jnp.repeat(attention_mask[:1], num, axis=0)
  return rep * keep.astype(attention_mask.dtype)
