"""Losses against hand-computed values and brute-force references."""
import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patcher_jax import losses


def test_top_mean_hand_values():
  x = jnp.array([1.0, 5.0, 3.0, 2.0])
  chex.assert_trees_all_close(losses.top_mean(x, 2), 4.0)
  chex.assert_trees_all_close(losses.top_mean(x, 10), 2.75)  # fewer than k
  mask = jnp.array([True, False, True, True])
  chex.assert_trees_all_close(losses.top_mean(x, 2, mask), 2.5)
  chex.assert_trees_all_close(losses.top_mean(x, 2, jnp.zeros(4, bool)), 0.0)


def test_activation_loss_hand_value():
  alpha = jnp.array([[0.0, 1.0], [2.0, -1.0]])
  mask = jnp.array([[True, True], [True, False]])
  # exp(-alpha) over valid: 1, e^-1, e^-2; top-2 mean = (1 + e^-1) / 2
  want = (1.0 + np.exp(-1.0)) / 2
  chex.assert_trees_all_close(losses.activation_loss(alpha, mask, k=2), want,
                              rtol=1e-6)


def _brute_memory_loss(h, h_mask, alpha, alpha_mask, k1, k2, gamma, beta):
  """The reference's formula on the full [M, B, n] tensor, in numpy."""
  h, h_mask = np.asarray(h), np.asarray(h_mask)
  alpha, alpha_mask = np.asarray(alpha), np.asarray(alpha_mask)
  t1 = []
  for m in range(h.shape[0]):
    for b in range(alpha.shape[0]):
      for i in range(h.shape[1]):
        if h_mask[m, i] and alpha_mask[b, i]:
          t1.append(np.exp(h[m, i] - alpha[b, i] + gamma))
  t2 = [np.exp(h[m, i] - beta) for m in range(h.shape[0])
        for i in range(h.shape[1]) if h_mask[m, i]]
  top = lambda v, k: np.mean(sorted(v, reverse=True)[:k])
  return top(t1, k1), top(t2, k2)


def test_memory_loss_equals_brute_force():
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  h = jax.random.normal(k[0], (40, 3)) * 2
  h_mask = jax.random.bernoulli(k[1], 0.8, (40, 3)).at[:, 2].set(False)
  alpha = jax.random.normal(k[2], (4, 3))
  alpha_mask = jnp.ones((4, 3), bool).at[:, 2].set(False)
  for k1, k2 in [(7, 5), (1000, 125), (1, 1)]:
    got = losses.memory_loss(h, h_mask, alpha, alpha_mask, k1=k1, k2=k2,
                             gamma=3.0, beta=-3.0)
    want = _brute_memory_loss(h, h_mask, alpha, alpha_mask, k1, k2, 3.0, -3.0)
    chex.assert_trees_all_close(got, want, rtol=1e-5)


def test_memory_loss_duplication_equivalence():
  """Top-1000 over 8 duplicated copies equals top-125 over distinct values."""
  h = jax.random.normal(jax.random.PRNGKey(1), (300, 1))
  mask = jnp.ones_like(h, bool)
  dup = jnp.tile(h, (8, 1))
  a = losses.top_mean(jnp.exp(dup + 3.0), 1000)
  _, b = losses.memory_loss(h, mask, jnp.zeros((1, 1)), jnp.ones((1, 1), bool),
                            k2=125)
  chex.assert_trees_all_close(a, b, rtol=1e-6)


def test_binary_entropy_loss_hand_value():
  x, y = 0.7, 1.0
  p = 1 / (1 + np.exp(-x))
  bce = -np.log(p)
  ent = -(p * np.log(p) + (1 - p) * np.log(1 - p))
  got = losses.binary_entropy_loss(jnp.array([x]), jnp.array([y]))
  chex.assert_trees_all_close(got, bce - 0.1 * ent, rtol=1e-6)


def test_label_smoothed_nll_hand_value():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [9.0, 9.0, 9.0]])
  targets = jnp.array([0, 2, 1])
  mask = jnp.array([True, True, False])
  logp = np.asarray(jax.nn.log_softmax(logits))
  eps, v = 0.1, 3
  eps_i = eps / (v - 1)
  per = [(1 - eps - eps_i) * -logp[t, targets[t]] + eps_i * -logp[t].sum()
         for t in range(2)]
  got = losses.label_smoothed_nll(logits, targets, mask, epsilon=eps)
  chex.assert_trees_all_close(got, np.mean(per), rtol=1e-6)


def test_losses_have_finite_gradients_with_masks():
  def f(a):
    h = jnp.stack([a, a * 2]).T                       # [2, 2]
    mask = jnp.array([[True, False], [True, False]])
    l1, l2 = losses.memory_loss(h, mask, a[None], mask[:1], k1=3, k2=2)
    return l1 + l2 + losses.activation_loss(a[None], mask[:1])
  g = jax.grad(f)(jnp.array([0.3, -0.2]))
  assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("alpha", [-200.0, -95.0, 0.5])
def test_margin_losses_stay_finite_far_from_the_margins(alpha):
  """A sharp key can start a pool copy ~100 below its margin: exp overflows
  float32 there, the losses must not (values and gradients finite)."""
  def f(a):
    al = jnp.stack([a, a + 1.0])[None]                  # [1, 2]
    h = jnp.array([[2.0, -1.0], [-300.0, 0.0]])
    mask = jnp.ones_like(h, bool)
    l1, l2 = losses.memory_loss(h, mask, al, jnp.ones_like(al, bool), k1=3,
                                k2=2)
    return l1 + l2 + losses.activation_loss(al, jnp.ones_like(al, bool))
  value, grad = jax.value_and_grad(f)(jnp.asarray(alpha))
  assert np.isfinite(float(value)) and np.isfinite(float(grad))
  assert float(grad) < 0.0          # still pushes the edit up


def test_safe_exp_is_exp_below_the_cap_and_linear_above():
  x = jnp.array([-jnp.inf, -3.0, 0.0, 29.9, 30.0, 31.0])
  got = losses.safe_exp(x)
  chex.assert_trees_all_close(got[:4], jnp.exp(x[:4]))
  chex.assert_trees_all_close(got[4:], np.exp(30.0) * np.array([1.0, 2.0]),
                              rtol=1e-6)
  grads = jax.vmap(jax.grad(losses.safe_exp))(x)
  assert np.all(np.isfinite(np.asarray(grads)))


def test_memory_loss_on_top_rows_equals_dense_values_and_gradients():
  """Top rows chosen without gradient, h recomputed on them: the same loss
  and the same key/bias gradients as the dense [M, n] formula (padding rows,
  fewer valid rows than k for one setting, a masked neuron)."""
  from patcher_jax import memory as memory_lib
  k = jax.random.split(jax.random.PRNGKey(3), 4)
  alpha = jax.random.normal(k[2], (2, 3))
  alpha_mask = jnp.ones((2, 3), bool).at[:, 2].set(False)
  for m_valid, kc in [(300, 50), (40, 50)]:
    queries = jax.random.normal(k[0], (m_valid, 8))
    memory = memory_lib.init_memory(queries, capacity=512)
    keys = jax.random.normal(k[1], (3, 8))
    biases = jnp.array([0.1, -0.2, 0.3])

    def dense(kb):
      h, h_mask = memory_lib.pre_activations(memory, *kb)
      h_mask = h_mask & alpha_mask[0][None, :]
      return sum(losses.memory_loss(h, h_mask, alpha, alpha_mask, k1=kc,
                                    k2=7))

    def top(kb):
      h, h_mask = memory_lib.top_pre_activations(memory, *kb, kc)
      h_mask = h_mask & alpha_mask[0][:, None]
      return sum(losses.memory_loss_top(h, h_mask, alpha, alpha_mask, k1=kc,
                                        k2=7))

    chex.assert_trees_all_close(top((keys, biases)), dense((keys, biases)),
                                rtol=1e-5)
    chex.assert_trees_all_close(jax.grad(top)((keys, biases)),
                                jax.grad(dense)((keys, biases)),
                                rtol=1e-4, atol=1e-6)


def test_docstring_examples_run():
  assert doctest.testmod(losses).failed == 0
