"""hide_words: shapes, kept ends, padding stays hidden, the rate holds."""
import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import augment


def test_hide_words_keeps_ends_and_padding():
  mask = jnp.array([[1, 1, 1, 1, 1, 1, 0, 0]], jnp.int32)
  m = np.asarray(augment.hide_words(jax.random.PRNGKey(0), mask, 500, 0.3))
  assert m.shape == (500, 8)
  assert (m[:, 0] == 1).all() and (m[:, 5] == 1).all()   # first, last real
  assert (m[:, 6:] == 0).all()                           # padding stays out
  hidden = 1.0 - m[:, 1:5].mean()
  assert abs(hidden - 0.3) < 0.05


def test_hide_words_rate_zero_is_the_input():
  mask = jnp.array([[1, 1, 1, 0]], jnp.int32)
  m = augment.hide_words(jax.random.PRNGKey(1), mask, 3, 0.0)
  np.testing.assert_array_equal(m, np.repeat(mask, 3, 0))
