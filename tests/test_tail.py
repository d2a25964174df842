"""The cached tail equals the full (patched) forward, for BERT and BART."""
import chex
import jax
import jax.numpy as jnp

from patcher_jax import objectives
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters import bart, bert


def _bank(d, n=5, seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 3)
  neurons = patch_lib.Neurons(jax.random.normal(k[0], (n, d)) * 0.3,
                              jax.random.normal(k[1], (n,)),
                              jax.random.normal(k[2], (n, d)), jnp.ones((n, d)))
  return patch_lib.add_neurons(patch_lib.init_bank(8, d), neurons,
                               jnp.ones(n, bool), 0)


def test_layer_norm_matches_flax():
  import flax.linen as nn
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16)) * 3 + 1
  ln = nn.LayerNorm(epsilon=1e-5)
  params = ln.init(jax.random.PRNGKey(1), x)["params"]
  params = {"scale": params["scale"] * 1.5, "bias": params["bias"] + 0.2}
  chex.assert_trees_all_close(
      tail_lib.layer_norm(x, params["scale"], params["bias"], 1e-5),
      ln.apply({"params": params}, x), atol=1e-6)


def test_bert_tail_equals_full_forward(tiny_bert):
  t = tiny_bert
  bank = _bank(32)
  logits, q = bert.forward(t.model, t.params, t.input_ids, t.attention_mask,
                           bank=bank)
  assert not jnp.allclose(logits, t.model(t.input_ids, t.attention_mask,
                                          params=t.params).logits)
  tail = bert.make_tail(t.config, t.params)
  got = tail_lib.tail_logits(tail, q, patch_lib.bank_output(bank, q),
                             jax.random.PRNGKey(0))
  chex.assert_shape(q, (6, 32))
  chex.assert_trees_all_close(got, logits, atol=1e-5)


def test_bert_multiclass_tail(tiny_bert):
  from conftest import TinyBert
  t = TinyBert(num_labels=3)
  logits, q = bert.forward(t.model, t.params, t.input_ids, t.attention_mask)
  tail = bert.make_tail(t.config, t.params)
  got = tail_lib.tail_logits(tail, q, jnp.zeros_like(q), jax.random.PRNGKey(0))
  chex.assert_trees_all_close(got, logits, atol=1e-5)


def test_bart_tail_equals_full_forward(tiny_bart):
  t = tiny_bart
  bank = _bank(32)
  logits, q = bart.forward(t.model, t.params, *t.batch(), bank=bank)
  tail = bart.make_tail(t.config, t.params)
  got = tail_lib.tail_logits(tail, q, patch_lib.bank_output(bank, q),
                             jax.random.PRNGKey(0))
  chex.assert_shape(q, (4, 5, 32))
  chex.assert_trees_all_close(got, logits, atol=1e-5)


def test_queries_do_not_depend_on_the_patch(tiny_bart):
  t = tiny_bart
  _, q0 = bart.forward(t.model, t.params, *t.batch())
  _, q1 = bart.forward(t.model, t.params, *t.batch(), bank=_bank(32))
  chex.assert_trees_all_equal(q0, q1)


def test_noisy_queries_vary_and_center_on_clean(tiny_bert):
  t = tiny_bert
  pool = bert.noisy_queries(t.model, t.params, t.input_ids, t.attention_mask,
                            jax.random.PRNGKey(0), 16)
  chex.assert_shape(pool, (16, 1, 32))
  assert float(jnp.std(pool[:, 0], axis=0).mean()) > 0


def test_bart_fused_objective_equals_logits_path(tiny_bart):
  """One pass over the chunked LM head == loss/wrong/unsure of the logits,
  values and gradient (chunks that do not divide the vocabulary, masks)."""
  t = tiny_bart
  _, q = bart.forward(t.model, t.params, *t.batch())
  tail = bart.make_tail(t.config, t.params)
  kernel = (tail.head["kernel"] if "kernel" in tail.head
            else tail.head["embedding"].T)                 # tied: [d, V]
  tail = tail.replace(head=dict(tail.head, fused=objectives.chunk_linear_head(
      kernel, tail.head["final_logits_bias"][0], chunk=48)))
  unfused = tail.replace(objective_fn=None)
  delta = patch_lib.bank_output(_bank(32), q[0])
  mask = jnp.array([True, True, False, True, True])
  logits = tail_lib.tail_logits(tail, q[0], delta, jax.random.PRNGKey(0))
  # targets: two right tokens (one by a small lead), the rest wrong
  targets = jnp.argmax(logits, -1).at[3].set(7).at[4].set(11)
  for margin in (0.0, 1e3):
    fn = lambda tl, dd: tail_lib.tail_objective(
        tl, q[0], dd, jax.random.PRNGKey(0), False, targets, mask, margin)
    got, want = fn(tail, delta), fn(unfused, delta)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    grad = lambda tl: jax.grad(lambda dd: fn(tl, dd)[0])(delta)
    chex.assert_trees_all_close(grad(tail), grad(unfused), atol=1e-6)
  assert bool(got[2][:2].all()) and not bool(got[1][:2].any())
