"""How fast is this machine today? Two numbers that bound the project's runs.

Wall times of the same command differ between machines of the same kind (and
between days on a shared host): a cached zsRE stream took 254 s on one day and
413 s on another, with the same code and the same decisions. Print these two
figures next to any timing, so that figures from different days can be put
side by side:

  matmul   float32 [1024, 1024] @ [1024, 1024] under jit, in GFLOP/s: what
           the dropout pools and base-model training are bound by;
  head     [16, 384] @ [384, 30522] under jit (zsRE's vocabulary head, 47 MB
           read per call), in GB/s of the head read: what a zsRE edit step is
           bound by.

  python experiments/machine_speed.py [--seconds=3]

Each figure is the median of repeated timed calls; the load average before and
after is printed with them (both cores are used: run it alone).
"""
import json
import os
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_float("seconds", 3.0, "Time spent on each figure.")


def median_call_s(fn, *args, seconds: float) -> float:
  """Median wall time of fn(*args) (compiled first), over `seconds`."""
  jax.block_until_ready(fn(*args))
  times, start = [], time.perf_counter()
  while time.perf_counter() - start < seconds or len(times) < 5:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def speeds(seconds: float = 3.0) -> dict:
  """{"matmul_gflops", "head_gbps"} of this machine (see the docstring).

  Example:
    >>> s = speeds(seconds=0.01)
    >>> sorted(s) == ["head_gbps", "matmul_gflops"] and min(s.values()) > 0
    True
  """
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((1024, 1024), np.float32))
  matmul = jax.jit(lambda x: x @ x)
  t_mm = median_call_s(matmul, a, seconds=seconds)
  head = jnp.asarray(rng.standard_normal((384, 30522), np.float32))
  x = jnp.asarray(rng.standard_normal((16, 384), np.float32))
  logits = jax.jit(lambda x, w: x @ w)
  t_head = median_call_s(logits, x, head, seconds=seconds)
  return {"matmul_gflops": round(2 * 1024 ** 3 / t_mm / 1e9, 1),
          "head_gbps": round(head.size * 4 / t_head / 1e9, 1)}


def main(argv):
  del argv
  load_before = os.getloadavg()[0]
  out = speeds(FLAGS.seconds)
  out.update(load_before=round(load_before, 2),
             load_after=round(os.getloadavg()[0], 2),
             devices=str(jax.devices()))
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
