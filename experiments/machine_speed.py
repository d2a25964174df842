"""How fast is this machine today? Two numbers that bound the project's runs.

Wall times of the same command differ between machines of the same kind (and
over time on a shared host): a cached zsRE stream took 254 s on one machine
and 413 s on another the same day (2026-11-30), with the same code and the
same decisions. Print these two figures next to any timing, so that timings
from different machines can be put side by side:

  matmul   float32 [1024, 1024] @ [1024, 1024] under jit, in GFLOP/s: the
           kind of work the dropout pools and base-model training do;
  head     [16, 384] @ E.T, E [30522, 384] (zsRE's tied vocabulary head, 47
           MB, in the layout adapters/bart.py multiplies it in) under jit,
           as the head's bytes over the call's time (GB/s): the kind of work
           that dominates a zsRE edit step (part of it is arithmetic).

It runs with run.py's malloc settings (patcher_jax/host_malloc.py), as the
runs it accompanies.

  python experiments/machine_speed.py [--seconds=3]

Each figure is the median of repeated timed calls; the load average before and
after is printed with them (both cores are used: run it alone).
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_float("seconds", 3.0, "Time spent on each figure.")


def median_call_s(fn, *args, seconds: float) -> float:
  """Median wall time of fn(*args).

  Args:
    fn: the function (called once first, untimed: the compile).
    *args: its arguments.
    seconds: how long to repeat it (at least five timed calls).

  Returns:
    The median of the timed calls, in seconds.
  """
  jax.block_until_ready(fn(*args))
  times, start = [], time.perf_counter()
  while time.perf_counter() - start < seconds or len(times) < 5:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def speeds(seconds: float = 3.0) -> dict:
  """This machine's two figures (module docstring).

  Args:
    seconds: time spent on each figure.

  Returns:
    {"matmul_gflops", "head_gbps"}.

  Example:
    >>> s = speeds(seconds=0.01)
    >>> sorted(s) == ["head_gbps", "matmul_gflops"] and min(s.values()) > 0
    True
  """
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((1024, 1024), np.float32))
  matmul = jax.jit(lambda x: x @ x)
  t_mm = median_call_s(matmul, a, seconds=seconds)
  head = jnp.asarray(rng.standard_normal((30522, 384), np.float32))
  x = jnp.asarray(rng.standard_normal((16, 384), np.float32))
  logits = jax.jit(lambda x, e: x @ e.T)
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
  from patcher_jax import host_malloc  # pylint: disable=g-import-not-at-top
  host_malloc.reexec()
  app.run(main)
