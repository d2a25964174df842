"""The benchmark helpers (experiments/bench_common.py) measure the real thing.

No timing here: the helpers that pick mistakes, force equal work and compute
the profiled memory loss, on fakes and small random arrays.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import patcher_jax as pj
from patcher_jax import losses
from patcher_jax import memory as memory_lib
from patcher_jax import configs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments"))
import bench_common as common  # pylint: disable=g-import-not-at-top,wrong-import-position


class _FakeRuntime:
  """Stream records 0..n-1; the multiples of 3 are mistakes."""

  def __init__(self, n=50):
    self.stream = list(range(n))
    self.calls = 0

  def mistakes(self, bank, idxs):
    del bank
    self.calls += 1
    return np.asarray(idxs) % 3 == 0


def test_find_mistakes_in_seeded_stream_order():
  rt = _FakeRuntime()
  picks = common.find_mistakes(rt, None, 5, seed=0, window=8)
  order = np.random.default_rng(0).permutation(50)
  assert picks == [int(i) for i in order if i % 3 == 0][:5]
  assert rt.calls < 50 // 8          # stops once it has enough
  assert len(common.find_mistakes(rt, None, 100, seed=0)) == 17


def test_memory_loss_top_equals_the_dense_memory_loss():
  """The profiled memory piece is the exact memory loss of the new neurons."""
  kq, km = jax.random.split(jax.random.PRNGKey(0))
  d, n = 16, 3
  queries = jax.random.normal(kq, (4, d))
  task = pj.EditTask(queries, queries[None], jnp.zeros_like(queries),
                     jnp.zeros_like(queries)[None], jnp.zeros(4, jnp.int32),
                     jnp.ones(4, bool), jnp.array([0, 2, 0], jnp.int32),
                     jnp.array([True, True, False]))
  neurons = pj.init_neurons(queries[task.neuron_pos], jax.random.PRNGKey(1))
  memory = pj.init_memory(jax.random.normal(km, (300, d)), 512)
  config = pj.fast_config(mem_k1=40, mem_k2=7)
  got = jax.jit(common.memory_loss_top, static_argnums=3)(
      neurons, task, memory, config)

  @jax.jit
  def dense(neurons, memory):
    h, h_mask = memory_lib.pre_activations(memory, neurons.keys,
                                           neurons.biases)
    alpha = (jnp.einsum("nd,nd->n", queries[task.neuron_pos], neurons.keys)
             + neurons.biases)[None]
    return losses.memory_loss(h, h_mask & task.neuron_mask[None], alpha,
                              task.neuron_mask[None], k1=40, k2=7)

  np.testing.assert_allclose(got, dense(neurons, memory), rtol=1e-5)


def test_forced_configs_never_stop_early_but_keep_parity_checks():
  """Equal work: the "steps" rule (pinned in test_editor) with the parity
  checks every 25 steps kept, as they halve the rate in the timed run."""
  fast = common.forced(configs.get("zsre", "fast"))
  parity = common.forced(configs.get("fever", "parity"))
  assert fast.stop_rule == parity.stop_rule == "steps"
  assert fast.check_every > fast.max_steps
  assert parity.check_every == 25 and parity.noise
  assert (fast.mem_weight, parity.mem_weight) == (10.0, 5.0)


def test_memory_capacity_is_the_streams():
  assert common.memory_capacity(1) == 1024
  assert common.memory_capacity(10_030) == 10_240
