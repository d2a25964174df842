"""Shared fixtures: tiny random transformers models (fast, offline)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import pytest


class TinyBert:
  """A 2-layer BERT classifier with random weights and a batch of inputs."""

  def __init__(self, num_labels=1, seed=0):
    from transformers import BertConfig, FlaxBertForSequenceClassification
    self.config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=num_labels,
        max_position_embeddings=32)
    self.model = FlaxBertForSequenceClassification(self.config, seed=seed)
    self.params = self.model.params
    k = jax.random.PRNGKey(seed + 1)
    self.input_ids = jax.random.randint(k, (6, 8), 1, 100)
    self.attention_mask = jnp.ones_like(self.input_ids).at[3:, 6:].set(0)


class TinyBart:
  """A 1+2-layer BART with random weights and a teacher-forced batch."""

  def __init__(self, seed=0):
    from transformers import BartConfig, FlaxBartForConditionalGeneration
    self.config = BartConfig(
        vocab_size=120, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32)
    self.model = FlaxBartForConditionalGeneration(self.config, seed=seed)
    self.params = self.model.params
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1))
    self.input_ids = jax.random.randint(k1, (4, 8), 3, 120)
    self.attention_mask = jnp.ones_like(self.input_ids)
    trg = jax.random.randint(k2, (4, 6), 3, 120)
    self.decoder_input_ids = trg[:, :-1]
    self.labels = trg[:, 1:]
    self.decoder_attention_mask = jnp.ones_like(self.decoder_input_ids)

  def batch(self):
    return (self.input_ids, self.attention_mask, self.decoder_input_ids,
            self.decoder_attention_mask)


@pytest.fixture(scope="session")
def tiny_bert():
  return TinyBert()


@pytest.fixture(scope="session")
def tiny_bart():
  return TinyBart()
