"""Where a cached edit step's time goes: head + edit loss, memory loss, rest.

Times, on one real edit task of the benchmark and the run's memory, each
piece of `editor.patch_step` as N dependent iterations of one compiled loop
(every iteration moves the neurons a little, so nothing is hoisted):

  step         the whole patch_step (value_and_grad of every loss + Adam)
  edit_terms   value_and_grad of edit loss + activation loss (the FFN, the
               LayerNorm and the head: for BART the LM head over the vocabulary)
  memory       value_and_grad of l_m1 + l_m2 (top rows of the memory)
  memory_topk  of which: scoring every memory row and the top-k selection
               (forward only)

  python experiments/bench_profile.py --task=zsre --base_path=...
"""
import json
import time

import bench_common as common  # pylint: disable=g-import-not-at-top

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import editor  # pylint: disable=g-import-not-at-top
from patcher_jax import memory as memory_lib
from patcher_jax import configs

FLAGS = flags.FLAGS
flags.DEFINE_integer("iters", 200, "Loop iterations per timing.")
flags.DEFINE_integer("repeats", 5, "Timings per piece (median).")


def _loop(fn, iters: int):
  """jit(neurons -> neurons after `iters` dependent calls of fn)."""
  def body(_, n):
    _, g = fn(n)
    return jax.tree.map(lambda p, d: p - 1e-6 * d, n, g)
  return jax.jit(lambda n: jax.lax.fori_loop(0, iters, body, n))


def pieces(tail, task, memory, config, rng):
  """{name: neurons -> (value, grad wrt neurons)} of each piece of a step."""
  k = max(config.mem_k1, config.mem_k2)

  def step(n):
    state = editor.init_state(n, rng, config)
    state, parts = editor.patch_step(state, tail, task, memory, config)
    return parts.total, jax.tree.map(lambda a, b: a - b, n, state.neurons)

  def edit_terms(n):
    t = editor._edit_terms(n, tail, task, rng, config, True, None)  # pylint: disable=protected-access
    return t.edit + config.act_weight * t.act

  def memory_terms(n):
    return sum(common.memory_loss_top(n, task, memory, config))

  def memory_topk(n):
    """The row selection alone (no gradient flows through it)."""
    scores = n.keys @ memory.queries.T + n.biases[:, None]
    top, _ = jax.lax.top_k(jnp.where(memory.mask[None], scores, -jnp.inf), k)
    value = jnp.sum(top)
    return value, jax.tree.map(lambda p: jnp.full_like(p, 1e-9) * value, n)

  return {"step": step,
          "edit_terms": jax.value_and_grad(edit_terms),
          "memory": jax.value_and_grad(memory_terms),
          "memory_topk": memory_topk}


def profile(tail, task, memory, config, iters: int, repeats: int) -> dict:
  """Per-iteration milliseconds of each piece (median of `repeats`)."""
  rng = jax.random.PRNGKey(0)
  neurons = editor.initial_neurons(tail, task, rng, config)
  out = {}
  for name, fn in pieces(tail, task, memory, config, rng).items():
    run = _loop(fn, iters)
    jax.block_until_ready(run(neurons))           # compile
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(run(neurons))
      times.append(time.perf_counter() - t0)
    out[name] = float(np.median(times)) / iters * 1e3
  out["rest"] = out["step"] - out["edit_terms"] - out["memory"]
  return out


def main(argv):
  del argv
  _, _, rt = common.load_runtime(lean=True)
  config = configs.get(FLAGS.task, "fast")
  task = common.widest_task(rt, FLAGS.seed, common.neuron_cap(rt, "fast"))
  memory = memory_lib.init_memory(
      rt.memory0, common.memory_capacity(len(rt.memory0)))
  ms = profile(rt.tail, task, memory, config, FLAGS.iters, FLAGS.repeats)
  out = {"task": FLAGS.task, "per_step_ms": ms,
         "width": int(task.queries.shape[-2]),
         "neurons": int(task.neuron_mask.sum()),
         "memory_rows": int(memory.size),
         "memory_buffer_rows": int(memory.queries.shape[0]),
         "peak_rss_mb": common.peak_rss_mb(), "machine": common.machine()}
  print(json.dumps(out, indent=1))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
