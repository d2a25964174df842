"""Which train answers do the edits break, and which neuron breaks them?

Runs the stream of each setting (as sweep.py: the runtime is built once,
each setting starts from an empty bank), then, on the final bank:
  * the headline metrics and the TrainR/TestR flips;
  * for every lost train answer: the neuron with the largest pre-activation
    along the unedited model's answer (its teacher-forced queries), the edit
    that added it (input, target), the position, the pre-activation;
  * how many kept train answers have a neuron firing above 0 / -1 / -2 (a
    smoother signal of the same locality than the lost count).

  python experiments/loc_probe.py --num_edits=300 \
      --settings="default;beta=-3" --json=/tmp/loc.json
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import setting_text  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "zsre", ["fever", "zsre"], "Benchmark task.")
flags.DEFINE_integer("num_edits", 300, "Edits per setting.")
flags.DEFINE_string("settings", "", "';'-separated settings (as sweep.py; "
                    "'default' or empty: the mode's default).")
flags.DEFINE_integer("memory_size", 0, "Memory records (as run.py).")
flags.DEFINE_string("memory_text", None, "Unlabeled inputs (as run.py).")
flags.DEFINE_integer("train_sub_size", 2000, "TrainR subset (as run.py).")
flags.DEFINE_integer("seed", 0, "Stream seed.")
flags.DEFINE_string("data_dir", None, "Benchmark dir instead of the embedded "
                    "one (as run.py).")
flags.DEFINE_string("cache_dir", None, "Base-model cache (as run.py).")
flags.DEFINE_integer("show", 15, "Lost answers printed per setting.")
flags.DEFINE_string("json", None, "Write the rows (with the lost answers).")


def lost_answers(runtime, bank, records):
  """The lost train answers and the neuron that fired most along each."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from patcher_jax import patch as patch_lib  # pylint: disable=g-import-not-at-top
  empty = patch_lib.init_bank(8, runtime.dim)
  base = runtime.split_correct(empty, "train")
  final = runtime.split_correct(bank, "train")
  drafts = runtime.base_drafts["train"]
  live = np.asarray(bank.live)
  keys = np.asarray(bank.keys)[live]
  biases = np.asarray(bank.biases)[live]
  edit_ids = np.asarray(bank.edit_ids)[live]
  by_edit = {r["edit"]: r for r in records}
  # the largest pre-activation of any neuron along each kept base answer
  top = np.full(len(base), -np.inf)
  who = np.zeros((len(base), 2), int)
  for start in range(0, len(base), 256):
    q = drafts.queries[start:start + 256]
    m = drafts.mask[start:start + 256]
    pre = np.einsum("btd,nd->btn", q, keys) + biases     # [b, T, n]
    pre = np.where(m[..., None], pre, -np.inf)
    flat = pre.reshape(len(q), -1)
    arg = flat.argmax(-1)
    top[start:start + 256] = flat.max(-1)
    who[start:start + 256] = np.stack(np.unravel_index(
        arg, pre.shape[1:]), -1)
  lost = np.flatnonzero(base & ~final)
  rows = []
  for i in lost:
    pos, n = who[i]
    e = int(edit_ids[n])
    rec = by_edit.get(e, {})
    rows.append({
        "train": runtime.train_sub[i].input,
        "answer": runtime.train_sub[i].answers[0],
        "now": runtime.generate(bank, [runtime.train_sub[i].input], 8)[0],
        "pre": round(float(top[i]), 2), "pos": int(pos), "edit": e,
        "edit_input": rec.get("input"), "edit_target": rec.get("target")})
  kept = base & final
  firing = {f">{t}": int(np.sum(top[kept] > t)) for t in (0, -1, -2)}
  return rows, firing, int(base.sum())


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  from patcher_jax import metrics, stream, tasks  # pylint: disable=g-import-not-at-top
  from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  bench = load_benchmark(FLAGS.task, data_dir=FLAGS.data_dir)
  base = base_cache.load_or_train_base(
      FLAGS.task, bench, cache_dir=FLAGS.cache_dir,
      data_key=FLAGS.data_dir or "embedded:full")
  extra = {}
  if FLAGS.memory_text:
    from patcher_jax import memory_text  # pylint: disable=g-import-not-at-top
    extra["memory_text"] = memory_text.read_inputs(FLAGS.memory_text)[0]
  runtime = tasks.build_runtime(FLAGS.task, bench, base, seed=FLAGS.seed,
                                train_sub_size=FLAGS.train_sub_size,
                                memory_size=FLAGS.memory_size, **extra)
  out_rows = []
  defaults = setting_text.runtime_defaults(runtime)
  for text in FLAGS.settings.split(";"):
    config, settings = setting_text.apply(text, FLAGS.task, "fast", runtime,
                                          defaults)
    t0 = time.perf_counter()
    out = stream.run(runtime, config, stream.StreamConfig(
        num_edits=FLAGS.num_edits, seed=FLAGS.seed, checkpoint_every=0,
        **settings), log=lambda *_: None)
    wall = time.perf_counter() - t0
    summary = metrics.summarize(out["records"], out["folds"])
    bank = stream._unstack(out["state"].bank, 0)  # pylint: disable=protected-access
    lost, firing, base_right = (lost_answers(runtime, bank, out["records"])
                                if FLAGS.task == "zsre" else ([], {}, 0))
    times = [r["edit_time_s"] for r in out["records"][2:]]
    row = {"setting": text.strip() or "default",
           **{k: round(summary[k], 4) for k in ("SR", "GR", "ER", "TrainR",
                                                "TestR")},
           "train_lost": summary["TrainR_flips"]["lost"],
           "test_lost_gained": (summary["TestR_flips"]["lost"],
                                summary["TestR_flips"]["gained"]),
           "firing_kept": firing,
           "median_edit_s": round(statistics.median(times), 3),
           "median_steps": statistics.median(r["steps"]
                                             for r in out["records"]),
           "neurons": round(statistics.mean(r["neurons"]
                                            for r in out["records"]), 2),
           "wall_s": round(wall, 1), "load": round(os.getloadavg()[0], 1)}
    print(json.dumps(row), flush=True)
    for r in lost[:FLAGS.show]:
      print("   lost:", json.dumps(r), flush=True)
    row["lost"] = lost
    out_rows.append(row)
    if FLAGS.json:
      with open(FLAGS.json, "w") as f:
        json.dump(out_rows, f, indent=1)
  del np


if __name__ == "__main__":
  app.run(main)
