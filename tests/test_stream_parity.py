"""Parity mode against the reference (ALGORITHM.md): the val-plateau stop
decisions, fresh dropout noise at every step, no dropout in the FEVER head.
(The memory rows an edit adds per task are checked in test_stream.py and
test_stream_seq2seq.py, next to their runtimes.)"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import configs
from patcher_jax import editor
from patcher_jax.adapters import bert


def _replay(checks, tolerance=1e-3):
  """Index of the check that stops a hand-made sequence of (ok, val_mem)."""
  best, n_ok = jnp.inf, 0
  for i, (ok, val_mem) in enumerate(checks):
    stop, best, n_ok = editor.val_plateau_stop(ok, val_mem, best, n_ok,
                                               tolerance)
    if bool(stop):
      return i
  return None


@pytest.mark.parametrize("checks,want", [
    # two successful checks at least: the first never stops
    ([(True, 1.0)], None),
    # stop at the first value not lower than the best by more than 1e-3
    ([(True, 3.0), (True, 2.0), (True, 1.5), (True, 1.4995)], 3),
    ([(True, 3.0), (True, 2.0), (True, 1.5), (True, 1.4985)], None),
    # the best earlier value counts, not the last one
    ([(True, 1.0), (True, 2.0)], 1),
    # failed checks neither stop nor count
    ([(False, 0.5), (True, 3.0), (False, 9.0), (False, 0.1), (True, 2.0),
      (True, 2.5)], 5),
    ([(False, 1.0), (False, 1.0), (True, 1.0)], None),
])
def test_val_plateau_stop_decisions(checks, want):
  assert _replay(checks) == want


def _noisy_task(t, pool=64):
  tail = bert.make_tail(t.config, t.params)
  _, q = bert.forward(t.model, t.params, t.input_ids, t.attention_mask)
  noisy = bert.noisy_queries(t.model, t.params, t.input_ids[:1],
                             t.attention_mask[:1], jax.random.PRNGKey(3), pool)
  task = pj.make_edit_task(tail, pj.init_bank(8, 32), q[:1],
                           jnp.zeros((1,), jnp.int32), jnp.ones((1,), bool),
                           noisy_queries=noisy, max_neurons=1)
  return tail, task


def test_parity_noise_is_fresh_at_every_step(tiny_bert):
  tail, task = _noisy_task(tiny_bert)
  config = configs.get("fever", "parity")
  neurons = editor.initial_neurons(tail, task, jax.random.PRNGKey(0), config)
  state = pj.init_state(neurons, jax.random.PRNGKey(1), config)
  seen, losses = [], []
  for _ in range(3):
    # the key patch_step draws its noise from, then the next step's state
    rng, r_loss = jax.random.split(state.rng)
    loss, _, _, q = editor._objective(neurons, tail, task, r_loss, config,  # pylint: disable=protected-access
                                      True, None)
    seen.append(np.asarray(q))
    losses.append(float(loss))
    state = state._replace(rng=rng)
  clean = np.asarray(task.queries)
  for q in seen:
    assert q.shape[0] == 8                               # 8 copies
    assert not np.allclose(q, clean[None])               # with dropout
    assert len({q[b].tobytes() for b in range(8)}) > 1    # copies differ
  assert not np.allclose(seen[0], seen[1])               # steps differ
  assert not np.allclose(seen[1], seen[2])
  assert len(set(losses)) == 3
  # the eval-mode objective (checks, success) has no noise at all
  eval_q = editor._objective(neurons, tail, task, r_loss, config, False,  # pylint: disable=protected-access
                             None)[3]
  np.testing.assert_array_equal(np.asarray(eval_q),
                                np.broadcast_to(clean, eval_q.shape))


def test_fever_head_has_no_dropout(tiny_bert):
  """The reference's BertBinary: pooler -> Linear, no dropout between."""
  t = tiny_bert
  tail = bert.make_tail(t.config, t.params)
  hidden = jax.random.normal(jax.random.PRNGKey(0), (16, 32))
  train = tail.head_fn(tail.head, hidden, jax.random.PRNGKey(1), True,
                       tail.head_dropout)
  evald = tail.head_fn(tail.head, hidden, jax.random.PRNGKey(1), False,
                       tail.head_dropout)
  np.testing.assert_array_equal(np.asarray(train), np.asarray(evald))
