"""Integration on the real pretrained MiniLM (6 layers, d=384).

A classifier with MiniLM's encoder and pooler and a fresh one-logit head; the
labels are set to the opposite of its predictions so every claim is a mistake.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax.adapters import bert

CLAIMS = [
    "Paris is the capital of France.",
    "The currency of Japan is the yen.",
    "Lima is located in Peru.",
    "Canberra is the capital of Australia.",
    "The Nile flows through Egypt.",
    "Ottawa is a city in Canada.",
    "Nairobi is the capital of Kenya.",
    "The currency of Mexico is the peso.",
    "Madrid is located in Spain.",
    "Hanoi is the capital of Vietnam.",
    "Bern is a city in Switzerland.",
    "The official language of Brazil is Portuguese.",
]


@pytest.fixture(scope="module")
def minilm():
  from patcher_jax.models import minilm as minilm_lib
  from patcher_jax.models import train_classifier
  config = minilm_lib.load_bert_config()
  config, params = train_classifier.init_classifier(
      minilm_lib.load_bert_params(config=config), config, seed=0)
  model = train_classifier.classifier_model(config)
  tok = minilm_lib.load_tokenizer()
  enc = tok(CLAIMS, padding="max_length", max_length=16, truncation=True,
            return_tensors="np")
  return model, params, jnp.asarray(enc["input_ids"]), jnp.asarray(
      enc["attention_mask"])


def test_minilm_tail_equals_full_forward(minilm):
  model, params, ids, mask = minilm
  k = jax.random.split(jax.random.PRNGKey(0), 3)
  neurons = pj.Neurons(jax.random.normal(k[0], (3, 384)) * 0.05,
                       jax.random.normal(k[1], (3,)),
                       jax.random.normal(k[2], (3, 384)), jnp.ones((3, 384)))
  bank = pj.add_neurons(pj.init_bank(8, 384), neurons, jnp.ones(3, bool), 0)
  logits, q = bert.forward(model, params, ids, mask, bank=bank)
  tail = bert.make_tail(model.config, params)
  got = pj.tail_logits(tail, q, pj.bank_output(bank, q), jax.random.PRNGKey(0))
  chex.assert_shape(q, (len(CLAIMS), 384))
  chex.assert_trees_all_close(got, logits, atol=1e-5)


def test_minilm_fast_edit_fixes_claim_and_keeps_others(minilm):
  model, params, ids, mask = minilm
  logits, q = bert.forward(model, params, ids, mask)
  labels = (logits[:, 0] <= 0).astype(jnp.int32)
  tail = bert.make_tail(model.config, params)
  targets, tmask = bert.targets(labels)
  memory = pj.init_memory(q[1:], 64)
  bank = pj.init_bank(8, 384)
  task = pj.make_edit_task(tail, bank, q[:1], targets[0], tmask[0],
                           max_neurons=1)
  new_bank, stats = jax.jit(pj.edit, static_argnames="config")(
      tail, bank, task, memory, memory, jax.random.PRNGKey(0), 0,
      config=pj.fast_config())
  assert bool(stats.success) and bool(stats.margins_ok)
  after, _ = bert.forward(model, params, ids, mask, bank=new_bank)
  assert int(after[0, 0] > 0) == int(labels[0])
  # The other claims are in memory, so the neuron's pre-activation there is
  # below -3 and it adds at most |gelu(-3)| ~ 0.004 of its value: their
  # logits move far less than the edited one and no prediction flips.
  moved = np.abs(np.asarray(after - logits)[:, 0])
  assert moved[1:].max() < 0.05 * moved[0], moved
  np.testing.assert_array_equal(np.asarray(after[1:, 0] > 0),
                                np.asarray(logits[1:, 0] > 0))
