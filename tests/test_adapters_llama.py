"""The Llama adapter on a tiny random Llama: the patch changes nothing when
empty, the cached tail equals the patched model, greedy decoding with the
patch equals transformers' own generate."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.tiny_llama import tiny_llama
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters import llama
from patcher_jax.adapters.intercept import run_with_patch
from patcher_jax.models.llama_rope import rope_scope

IDS = np.random.default_rng(0).integers(3, 61, (3, 9)).astype(np.int32)
MASK = np.ones_like(IDS)


def _bank(qmap_queries, rng, scale=3.0, n=4, capacity=8):
  """Live neurons keyed on some of the given queries [M, d], big values."""
  q = np.asarray(qmap_queries)
  pick = rng.choice(len(q), n, replace=False)
  neurons = patch_lib.init_neurons(jnp.asarray(q[pick]), jax.random.PRNGKey(1))
  neurons = neurons._replace(values=neurons.values * scale)
  bank = patch_lib.init_bank(capacity, q.shape[-1])
  return patch_lib.add_neurons(bank, neurons, jnp.ones(n, bool), 0)


@pytest.fixture(scope="module")
def tiny():
  model, params, cfg = tiny_llama()
  h = np.asarray(llama.residuals(model, params, IDS, MASK))
  qmap = llama.fit_query_map(h.reshape(-1, h.shape[-1]))
  return model, params, cfg, h, qmap


def test_empty_or_zero_bank_changes_nothing(tiny):
  model, params, cfg, h, qmap = tiny
  plain = llama.forward(model, params, IDS, MASK)[0]
  empty = llama.forward(model, params, IDS, MASK,
                        bank=patch_lib.init_bank(8, cfg.hidden_size),
                        query_map=qmap)[0]
  bank = _bank(qmap(h.reshape(-1, cfg.hidden_size)), np.random.default_rng(0))
  zero = bank._replace(values=jnp.zeros_like(bank.values))
  zeroed = llama.forward(model, params, IDS, MASK, bank=zero,
                         query_map=qmap)[0]
  chex.assert_trees_all_equal(plain, empty)
  chex.assert_trees_all_equal(plain, zeroed)


@pytest.mark.parametrize("whiten,act", [(None, "gelu"), (0.05, "gelu"),
                                        (None, "relu")])
def test_tail_equals_patched_model(tiny, whiten, act):
  model, params, cfg, h, qmap = tiny
  if whiten is not None:
    qmap = llama.fit_query_map(h.reshape(-1, h.shape[-1]), whiten)
  q = qmap(h)
  bank = _bank(q.reshape(-1, cfg.hidden_size), np.random.default_rng(1))
  full = llama.forward(model, params, IDS, MASK, bank=bank, query_map=qmap,
                       act=act)[0]
  assert float(jnp.abs(full - llama.forward(model, params, IDS, MASK)[0]
                       ).max()) > 0.1   # the bank matters
  tail = llama.make_tail(cfg, params, qmap, act=act)
  got = tail_lib.tail_logits(tail, q, patch_lib.bank_output(bank, q,
                                                            tail.act),
                             jax.random.PRNGKey(0))
  np.testing.assert_allclose(got, full, atol=2e-4, rtol=2e-4)
  # the unpatched tail too, and the queries do not depend on the bank
  np.testing.assert_allclose(
      tail_lib.tail_logits(tail, q, jnp.zeros_like(q), jax.random.PRNGKey(0)),
      llama.forward(model, params, IDS, MASK)[0], atol=2e-4, rtol=2e-4)
  h2 = llama.forward(model, params, IDS, MASK, bank=bank, query_map=qmap)[1]
  np.testing.assert_array_equal(h2, h)


def test_whitened_map_whitens_and_inverts(tiny):
  """fit_query_map(whiten=w): the mapped rows' covariance is C (C + wI)^-1
  (identity up to the regulariser), and h = q @ inverse + center."""
  h = tiny[3].reshape(-1, tiny[2].hidden_size).astype(np.float64)
  for whiten in (1e-3, 0.5):
    qmap = llama.fit_query_map(h, whiten)
    q = np.asarray(qmap(h), np.float64)
    np.testing.assert_allclose(q @ np.asarray(qmap.inverse, np.float64)
                               + np.asarray(qmap.center), h, atol=1e-3)
    x = h - h.mean(0)
    cov = x.T @ x / len(x)
    evals = np.linalg.eigvalsh(cov)
    shrink = evals / (evals + whiten * evals.mean())
    np.testing.assert_allclose(np.linalg.eigvalsh(q.T @ q / len(q)),
                               np.sort(shrink), atol=2e-3)
  plain = llama.fit_query_map(h)   # no whitening: a scalar scale
  m = np.asarray(plain.matrix)
  np.testing.assert_allclose(m, np.eye(len(m)) * m[0, 0], atol=1e-7)


def test_tail_wants_the_last_layer(tiny):
  _, params, cfg, _, _ = tiny
  with pytest.raises(ValueError, match="last layer"):
    llama.make_tail(cfg, params, layer=0)


def _hf_greedy(model, params, prompt, bank, qmap, steps):
  """transformers' own generate (KV cache, step by step), patched."""
  delta = lambda hh: patch_lib.bank_output(bank, qmap(hh))
  with rope_scope(model.config):
    out, _ = run_with_patch(
        lambda: model.generate(prompt[None], params=params,
                               max_new_tokens=steps, do_sample=False,
                               pad_token_id=0, eos_token_id=None),
        llama.site(model.config), delta)
  return np.asarray(out.sequences)[0, len(prompt):]


def test_greedy_fn_equals_transformers_generate(tiny):
  model, params, cfg, h, qmap = tiny
  bank = _bank(qmap(h.reshape(-1, cfg.hidden_size)), np.random.default_rng(2),
               scale=6.0)
  lengths = np.array([5, 9, 7], np.int32)
  ids = np.where(np.arange(9)[None] < lengths[:, None], IDS, 0)
  fn = llama.greedy_fn(model, 4)
  got = np.asarray(fn(params, bank, qmap, ids, lengths))
  unpatched = np.asarray(fn(params, patch_lib.init_bank(8, cfg.hidden_size),
                            qmap, ids, lengths))
  assert (got != unpatched).any()   # the bank changes some answers
  for i, n in enumerate(lengths):
    np.testing.assert_array_equal(
        got[i], _hf_greedy(model, params, IDS[i, :n], bank, qmap, 4))
