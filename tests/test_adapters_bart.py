"""The BART adapter's dropout pools (bart.decoder_noisy_queries)."""
import chex
import jax
import numpy as np
import pytest

from patcher_jax.adapters import bart


def _tiny(dropout: float):
  from transformers import BartConfig, FlaxBartForConditionalGeneration
  config = BartConfig(
      vocab_size=120, d_model=32, encoder_layers=1, decoder_layers=2,
      encoder_attention_heads=2, decoder_attention_heads=2,
      encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
      dropout=dropout, attention_dropout=dropout, activation_dropout=dropout)
  return FlaxBartForConditionalGeneration(config, seed=0)


def _example(tiny_bart):
  return tuple(a[:1] for a in tiny_bart.batch())


@pytest.mark.parametrize("encoder_samples", [0, 1, 4])
def test_without_dropout_every_sample_is_the_clean_query(tiny_bart,
                                                         encoder_samples):
  model = _tiny(0.0)
  example = _example(tiny_bart)
  clean = bart.queries(model, model.params, *example)
  pool = bart.decoder_noisy_queries(model, model.params, *example,
                                    jax.random.PRNGKey(0), 8,
                                    encoder_samples=encoder_samples)
  chex.assert_shape(pool, (8,) + clean.shape[1:])
  np.testing.assert_allclose(pool, np.repeat(clean, 8, 0), atol=1e-5)


def test_dropout_samples_differ_and_encoder_samples_matter(tiny_bart):
  model = _tiny(0.3)
  example = _example(tiny_bart)
  key = jax.random.PRNGKey(1)
  pools = {k: np.asarray(bart.decoder_noisy_queries(
      model, model.params, *example, key, 8, encoder_samples=k))
           for k in (0, 4)}
  for pool in pools.values():
    assert not np.allclose(pool[0], pool[1])
  assert not np.allclose(pools[0], pools[4])


def test_samples_must_divide_among_encoder_samples(tiny_bart):
  model = _tiny(0.1)
  with pytest.raises(ValueError, match="multiple"):
    bart.decoder_noisy_queries(model, model.params, *_example(tiny_bart),
                               jax.random.PRNGKey(0), 8, encoder_samples=3)
