"""Base-model training helpers (patcher_jax/models/train_utils.py)."""
import doctest

import numpy as np

from patcher_jax.models import train_utils as tu


def test_doctests():
  result = doctest.testmod(tu)
  assert result.attempted and not result.failed


def test_hidden_states_equal_one_call_per_row_and_zero_past_the_bucket():
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 50, size=(7, 6))
  lengths = np.array([2, 6, 3, 6, 2, 4, 1])
  mask = (np.arange(6)[None] < lengths[:, None]).astype(np.int32)
  buckets = np.where(lengths <= 2, 2, np.where(lengths <= 4, 4, 6))
  weights = rng.standard_normal((50, 3)).astype(np.float32)
  # a position-wise "encoder": the row's embedding scaled by its mask
  fn = lambda i, m: weights[i] * m[..., None]
  calls = []
  out = tu.hidden_states(lambda i, m: calls.append(i.shape) or fn(i, m),
                         ids, mask, buckets, 2, 3)
  assert out.shape == (7, 6, 3) and out.dtype == np.float32
  for r in range(7):
    b = buckets[r]
    np.testing.assert_array_equal(out[r, :b], fn(ids[r:r + 1, :b],
                                                 mask[r:r + 1, :b])[0])
    assert not out[r, b:].any()
  assert {s[0] for s in calls} == {2}            # fixed batch size
  assert {s[1] for s in calls} == {2, 4, 6}      # one width per bucket
