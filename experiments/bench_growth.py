"""Growth and throughput of editing: long streams, big memories, many folds.

  # per-edit time at edits 1, 10, 100, 1000 of one real stream (stream.run),
  # what the wall time per edit is made of, compiles, neurons per edit
  python experiments/bench_growth.py --task=zsre --part=stream --num_edits=1000
  # memory-loss cost as the memory set grows (10k, 40k, 200k queries)
  python experiments/bench_growth.py --task=fever --part=memory
  # edits per second: n folds vmapped on one device ...
  python experiments/bench_growth.py --task=fever --part=throughput --folds=1,4,8
  # ... and sharded over 8 forced host devices (flag read before jax loads)
  python experiments/bench_growth.py --task=fever --part=throughput --folds=8 \
      --devices=8

Every part writes one JSON (--json). Timings are wall clock on a shared CPU:
compare numbers within one run.
"""
import os
import sys

# Forced host devices must be configured before jax is imported anywhere.
for _arg in sys.argv:
  if _arg.startswith("--devices="):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={_arg.split('=')[1]}")

import collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import json
import statistics
import tempfile
import time

import bench_common as common

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import patcher_jax as pj
from patcher_jax import losses
from patcher_jax import memory as memory_lib
from patcher_jax import stream
from patcher_jax import configs
from patcher_jax.timing import Timings

FLAGS = flags.FLAGS
flags.DEFINE_enum("part", "stream", ["stream", "memory", "throughput"],
                  "What to measure.")
flags.DEFINE_integer("num_edits", 1000, "Edits per fold (stream, throughput).")
flags.DEFINE_string("probes", "1,10,100,1000", "stream: edit counts at which "
                    "a fixed probe edit is timed against the current bank.")
flags.DEFINE_integer("probe_steps", 50, "Steps of the probe edit (forced).")
flags.DEFINE_string("memory_sizes", "10000,40000,200000",
                    "memory: memory set sizes (queries).")
flags.DEFINE_string("folds", "1,4,8", "throughput: fold counts.")
flags.DEFINE_integer("devices", 1, "throughput: forced host devices (set "
                     "before jax loads; folds are sharded when they divide).")
flags.DEFINE_integer("checkpoint_every", 10, "stream: as run.py (0: none).")


def _window(records, start: int, size: int = 10):
  """Records of edits start..start+size-1 (1-based), the last `size` if the
  stream is shorter."""
  lo = min(start - 1, max(len(records) - size, 0))
  return records[lo:lo + size]


# -- stream ------------------------------------------------------------------


def run_stream(rt):
  """One real stream (stream.run, fast mode), instrumented."""

  compiles = common.CompileLog()
  # stream.run's hooks: phase timings, a per-round callback (the probe)
  timings = Timings()
  probe_s = {"total": 0.0}

  config = configs.get(FLAGS.task)
  n_cap = common.neuron_cap(rt, "fast")
  scfg = stream.StreamConfig(num_edits=FLAGS.num_edits, seed=FLAGS.seed,
                             checkpoint_every=FLAGS.checkpoint_every,
                             max_neurons=n_cap)
  # the buffers as the stream sized them until 2026-11-30 (the neuron
  # cap's floor of rows an edit; now `stream._memory_rows_per_edit`): kept,
  # so the growth figures stay comparable with the earlier ones
  rows = stream._append_width(rt, scfg)  # pylint: disable=protected-access
  capacity = common.memory_capacity(len(rt.memory0) + scfg.num_edits * rows)
  # a fixed probe: the first mistake of the stream order, task from the
  # empty bank, timed at fixed step counts against the bank of the moment
  order = stream.fold_orders(len(rt.stream), 1, FLAGS.seed)[0]
  probe_idx = next(int(i) for i in order[:256]
                   if rt.mistakes(pj.init_bank(8, rt.dim), [i])[0])
  probe_task = rt.edit_task(pj.init_bank(8, rt.dim), probe_idx,
                            jax.random.PRNGKey(0), 0, n_cap)
  probe_cfg = common.forced(config)
  probe_run = jax.jit(pj.edit, static_argnames="config")
  probes_at = {int(p) for p in FLAGS.probes.split(",")}
  probes, edited = [], []

  def probe(bank):
    queries = [rt.memory0] + [memory_lib.deduplicate(rt.memory_rows(i))
                              for i in edited]
    mem = memory_lib.init_memory(np.concatenate(queries), capacity)
    return common.timeit(lambda: probe_run(
        rt.tail, bank, probe_task, mem, mem, jax.random.PRNGKey(1), 0,
        config=probe_cfg, num_steps=FLAGS.probe_steps))

  def on_round(state, prog):
    """Probe the bank at the chosen edit counts (not part of any phase)."""
    edited[:] = [r["stream_index"] for r in prog.records]
    if len(edited) in probes_at and len(edited) not in {
        p["edits"] for p in probes}:
      compiles.phase = "probe"
      bank = jax.tree.map(lambda a: a[0], state.bank)
      t = probe(bank)
      probe_s["total"] += t
      probes.append({"edits": len(edited), "probe_s": t,
                     "per_step_ms": t / FLAGS.probe_steps * 1e3,
                     "bank_neurons": int(bank.size)})
      compiles.phase = "stream"

  marks, last = [], {"t": time.perf_counter(), "timers": {}, "probe": 0.0}

  def on_edit(rec):
    now = time.perf_counter()
    snap = dict(timings.seconds)
    parts = {k: v - last["timers"].get(k, 0.0) for k, v in snap.items()}
    # a probe is no part of the stream: drop it from the wall time
    rec = dict(rec, wall_s=now - last["t"] - (probe_s["total"] - last["probe"]),
               parts=parts, compiles=len([e for e in compiles.events
                                          if e[0] == "stream"]))
    marks.append(rec)
    last.update(t=now, timers=snap, probe=probe_s["total"])

  compiles.phase = "stream"
  t0 = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="bench_growth_") as ckpt_dir:
    result = stream.run(rt, config, scfg, checkpoint_dir=(
        ckpt_dir if FLAGS.checkpoint_every else None), on_edit=on_edit,
                        on_round=on_round, timings=timings,
                        log=lambda *a: None)
  wall = time.perf_counter() - t0 - probe_s["total"]
  records = marks
  windows = []
  for k in sorted(probes_at):
    if k > len(records):
      continue
    w = [r for r in _window(records, max(k, 2))]
    windows.append({
        "edit": k, "edits": [w[0]["edit"] + 1, w[-1]["edit"] + 1],
        "edit_s": statistics.median(r["edit_time_s"] for r in w),
        "per_step_ms": statistics.median(
            r["edit_time_s"] / max(r["steps"], 1) * 1e3 for r in w),
        "steps": statistics.median(r["steps"] for r in w),
        "wall_s": statistics.median(r["wall_s"] for r in w),
        "parts_mean_s": {k2: float(np.mean([r["parts"].get(k2, 0.0)
                                            for r in w]))
                         for k2 in ("next_mistake", "edit", "after_edit",
                                    "memory_append", "checkpoint", "curve")},
    })
  steps = [r["steps"] for r in records]
  neurons = [r["neurons"] for r in records]
  edit_s = [r["edit_time_s"] for r in records[1:]]
  return {
      "part": "stream", "edits": len(records), "stream_wall_s": wall,
      "windows": windows, "probes": probes,
      "first_edit_s": records[0]["edit_time_s"] if records else None,
      "edit_s": common.summary(edit_s),
      "wall_per_edit_s": common.summary([r["wall_s"] for r in records[1:]]),
      "totals_s": timings.as_dict(),
      "steps": {"median": float(np.median(steps)),
                "p90": float(np.percentile(steps, 90)), "max": max(steps)},
      "neurons_per_edit": {"mean": float(np.mean(neurons)),
                           "histogram": {str(n): neurons.count(n)
                                         for n in sorted(set(neurons))}},
      "success": float(np.mean([r["success"] for r in records])),
      "train_success": float(np.mean([r["train_success"] for r in records])),
      "skipped_no_wrong_token": len(result["skipped"]),
      "compiles": {
          "stream": compiles.summary("stream"),
          # any compile (edit loop, checks, evaluation) after edit 10
          "stream_after_edit_10": (records[-1]["compiles"]
                                   - records[min(9, len(records) - 1)]
                                   ["compiles"])},
      "records": [{k: v for k, v in r.items() if k != "parts"} | {
          "parts": {k: round(v, 5) for k, v in r["parts"].items()}}
                  for r in records],
  }


# -- memory size -------------------------------------------------------------


def run_memory(rt):
  """Step cost of one edit as the memory set grows; the memory loss alone,
  computed the current way (top rows) and the dense way (before)."""

  config = configs.get(FLAGS.task)
  forced = common.forced(config)
  empty = pj.init_bank(8, rt.dim)
  # a probe with as many neurons as the task allows (zsRE: up to the cap)
  task = common.widest_task(rt, FLAGS.seed, common.neuron_cap(rt, "fast"))
  run = jax.jit(pj.edit, static_argnames="config")
  rng = np.random.default_rng(FLAGS.seed)
  base_rows = np.asarray(rt.memory0)
  neurons = pj.init_neurons(task.queries[task.neuron_pos],
                            jax.random.PRNGKey(2))

  def dense(n, mem):
    h, h_mask = memory_lib.pre_activations(mem, n.keys, n.biases)
    alpha = (jnp.einsum("nd,nd->n", task.queries[task.neuron_pos], n.keys)
             + n.biases)[None]
    return sum(losses.memory_loss(
        h, h_mask & task.neuron_mask[None, :], alpha, task.neuron_mask[None],
        k1=config.mem_k1, k2=config.mem_k2))

  def top(n, mem):
    return sum(common.memory_loss_top(n, task, mem, config))

  grads = {name: jax.jit(jax.value_and_grad(fn))
           for name, fn in (("dense", dense), ("top_rows", top))}
  out = []
  for size in [int(s) for s in FLAGS.memory_sizes.split(",")]:
    reps = -(-size // len(base_rows))
    rows = np.tile(base_rows, (reps, 1))[:size]
    # distinct rows (tiled copies would tie in the top-k)
    rows = rows + 0.01 * rng.standard_normal(rows.shape).astype(np.float32)
    mem = memory_lib.init_memory(rows, common.memory_capacity(size))
    steps = 50
    edit = lambda n: run(rt.tail, empty, task, mem, mem, jax.random.PRNGKey(1),
                         0, config=forced, num_steps=n)
    t, t0 = common.timeit(lambda: edit(steps)), common.timeit(lambda: edit(0))
    row = {"memory_rows": size, "buffer_rows": int(mem.queries.shape[0]),
           "neurons": int(task.neuron_mask.sum()),
           "edit_per_step_ms": (t - t0) / steps * 1e3,
           "edit_fixed_ms": t0 * 1e3,
           "memory_loss_grad_ms": {
               name: common.timeit(lambda g=g: g(neurons, mem)) * 1e3
               for name, g in grads.items()}}
    print(json.dumps(row), flush=True)
    out.append(row)
    del mem
  return {"part": "memory", "sizes": out}


# -- throughput --------------------------------------------------------------


def run_throughput(rt):
  """Edits per second of stream.run with n folds in lock step."""
  config = configs.get(FLAGS.task)
  out = []
  for folds in [int(f) for f in FLAGS.folds.split(",")]:
    scfg = stream.StreamConfig(num_edits=FLAGS.num_edits, num_folds=folds,
                               seed=FLAGS.seed, checkpoint_every=0,
                               max_neurons=common.neuron_cap(rt, "fast"))
    sharded = stream._fold_sharding(folds) is not None  # pylint: disable=protected-access
    t0 = time.perf_counter()
    result = stream.run(rt, config, scfg, log=lambda *a: None)
    wall = time.perf_counter() - t0
    recs = result["records"]
    # edit_time_s is the vmapped call's time shared by its active folds
    calls = collections.defaultdict(float)
    for r in recs:
      calls[(r["edit"], r["fold"])] = r["edit_time_s"]
    edit_s = float(sum(calls.values()))
    first = collections.defaultdict(float)   # round 0 holds the compile
    for r in recs:
      if r["edit"] == 0:
        first[0] += r["edit_time_s"]
    row = {"folds": folds, "devices": jax.device_count(), "sharded": sharded,
           "edits": len(recs), "wall_s": wall,
           "edit_call_s": edit_s, "edit_call_s_without_first_round":
               edit_s - first[0],
           "edits_per_s_edit_calls": (len(recs) - folds) / max(
               edit_s - first[0], 1e-9),
           "edits_per_s_wall": len(recs) / wall,
           "steps_median": float(np.median([r["steps"] for r in recs]))}
    print(json.dumps(row), flush=True)
    out.append(row)
  return {"part": "throughput", "runs": out}


def main(argv):
  del argv
  # the stream checks rephrases after each edit (part of its wall time);
  # train-subset / test accuracy only matter at the end: skipped
  _, base, rt = common.load_runtime(
      lean=True, keep_rephrases=FLAGS.part == "stream")
  if FLAGS.part == "stream":
    out = run_stream(rt)
  elif FLAGS.part == "memory":
    out = run_memory(rt)
  else:
    out = run_throughput(rt)
  out.update(task=FLAGS.task, scale=FLAGS.scale, base=base.path,
             memory_rows=len(rt.memory0), peak_rss_mb=common.peak_rss_mb(),
             machine=common.machine())
  print(json.dumps({k: v for k, v in out.items() if k != "records"},
                   indent=1))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
