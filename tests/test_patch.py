"""The patch bank: what an empty / zero-valued patch changes (nothing),
static shapes (no recompile), growth and rollback."""
import chex
import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import patch as patch_lib
from patcher_jax.adapters import bart, bert


def _random_neurons(n, d, seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 3)
  return patch_lib.Neurons(jax.random.normal(k[0], (n, d)),
                           jax.random.normal(k[1], (n,)),
                           jax.random.normal(k[2], (n, d)), jnp.ones((n, d)))


def test_init_bank_shapes():
  bank = patch_lib.init_bank(8, 16)
  chex.assert_shape([bank.keys, bank.values], (8, 16))
  chex.assert_shape([bank.biases, bank.live, bank.edit_ids], (8,))
  assert int(bank.size) == 0 and not bool(bank.live.any())


def test_init_neurons_key_fires_exactly_one_on_its_query():
  q = jax.random.normal(jax.random.PRNGKey(0), (3, 16))
  n = patch_lib.init_neurons(q, jax.random.PRNGKey(1))
  alpha = jnp.sum(q * n.keys, -1) + n.biases
  chex.assert_trees_all_close(alpha, jnp.ones(3), rtol=1e-6)
  chex.assert_trees_all_close(n.amplifier, jnp.full((3, 16), 10.0))


def _zero_valued_bank(d, n=4):
  bank = patch_lib.init_bank(8, d)
  neurons = _random_neurons(n, d)._replace(values=jnp.zeros((n, d)))
  bank = patch_lib.add_neurons(bank, neurons, jnp.ones(n, bool), 7)
  assert int(bank.size) == n and bool(bank.live[:n].all())
  return bank


def test_empty_and_zero_banks_leave_bert_bit_identical(tiny_bert):
  t = tiny_bert
  base = t.model(t.input_ids, t.attention_mask, params=t.params).logits
  for bank in [patch_lib.init_bank(8, 32), _zero_valued_bank(32)]:
    got, _ = bert.forward(t.model, t.params, t.input_ids, t.attention_mask,
                          bank=bank)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(base))


def test_empty_and_zero_banks_leave_bart_bit_identical(tiny_bart):
  t = tiny_bart
  ids, am, dec, dm = t.batch()
  base = t.model(ids, am, decoder_input_ids=dec, decoder_attention_mask=dm,
                 params=t.params).logits
  for bank in [patch_lib.init_bank(8, 32), _zero_valued_bank(32)]:
    got, _ = bart.forward(t.model, t.params, *t.batch(), bank=bank)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(base))


def test_bank_output_matches_widened_ffn():
  """sum_i act(x.k_i + b_i) v_i == [act(x K^T + b)] @ V over live slots."""
  d = 16
  bank = patch_lib.add_neurons(patch_lib.init_bank(8, d), _random_neurons(3, d),
                               jnp.array([True, True, False]), 0)
  x = jax.random.normal(jax.random.PRNGKey(3), (5, d))
  live = np.asarray(bank.live)
  k, b, v = (np.asarray(a)[live] for a in (bank.keys, bank.biases,
                                           bank.values))
  want = np.asarray(jax.nn.gelu(x @ k.T + b, approximate=False)) @ v
  chex.assert_trees_all_close(patch_lib.bank_output(bank, x), want, atol=1e-5)
  assert int(bank.size) == 2  # the masked third neuron took no slot


def test_adding_to_capacity_does_not_recompile():
  traces = []

  @jax.jit
  def add(bank, neurons, mask, edit_id):
    traces.append(1)  # runs only when jax traces (compiles) the function
    return patch_lib.add_neurons(bank, neurons, mask, edit_id)

  bank = patch_lib.init_bank(16, 8)
  for i in range(8):
    mask = jnp.array([True, i % 2 == 0])
    bank = add(bank, _random_neurons(2, 8, seed=i), mask, i)
  assert len(traces) == 1
  assert int(bank.size) == 12
  ids = np.asarray(bank.edit_ids)
  assert ids[:3].tolist() == [0, 0, 1] and (ids[12:] == -1).all()


def test_overflow_is_a_no_op_and_ensure_capacity_grows():
  bank = patch_lib.init_bank(2, 4)
  full = patch_lib.add_neurons(bank, _random_neurons(2, 4), jnp.ones(2, bool), 0)
  over = patch_lib.add_neurons(full, _random_neurons(2, 4, 1),
                               jnp.ones(2, bool), 1)
  chex.assert_trees_all_equal(over, full)
  grown = patch_lib.ensure_capacity(full, 2)
  assert grown.capacity == 4 and int(grown.size) == 2
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  chex.assert_trees_all_close(patch_lib.bank_output(grown, x),
                              patch_lib.bank_output(full, x))


def test_drop_edit_restores_previous_output():
  d = 8
  x = jax.random.normal(jax.random.PRNGKey(0), (3, d))
  b1 = patch_lib.add_neurons(patch_lib.init_bank(8, d), _random_neurons(1, d),
                             jnp.ones(1, bool), 1)
  b2 = patch_lib.add_neurons(b1, _random_neurons(2, d, 5), jnp.ones(2, bool), 2)
  rolled = patch_lib.drop_edit(b2, 2)
  chex.assert_trees_all_close(patch_lib.bank_output(rolled, x),
                              patch_lib.bank_output(b1, x), atol=1e-6)
