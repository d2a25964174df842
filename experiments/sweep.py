"""Compare edit settings on the first edits of one stream (SR, GR, ER, time).

The runtime (base model, cached queries: shared with run.py's cache) is
built once; each setting then runs the same seeded stream from an empty bank.

  python experiments/sweep.py --task=zsre --num_edits=100 \
      --settings="edit_margin=0;edit_margin=2;edit_margin=4"
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
flags.DEFINE_enum("task", "zsre", ["fever", "zsre", "lm_complete", "lm_chat"],
                  "Benchmark task (lm_*: the pretrained SmolLM2).")
flags.DEFINE_enum("mode", "fast", ["fast", "parity"], "Base edit config.")
flags.DEFINE_integer("num_edits", 100, "Edits per setting.")
flags.DEFINE_string("settings", "", "';'-separated settings, each a ','-"
                    "separated list of EditConfig overrides (name=value), or "
                    "of the pool settings pool (variants of the edit input "
                    "per edit), word_drop, pool_dropout, encoder_samples, "
                    "or neuron_margin; an empty setting is the mode's "
                    "default.")
flags.DEFINE_integer("memory_size", 0, "Memory records (as run.py).")
flags.DEFINE_string("cache_dir", None, "Base-model cache (as run.py).")
flags.DEFINE_string("data_dir", None, "Benchmark dir instead of the embedded "
                    "one (as run.py; zsre / fever).")
flags.DEFINE_integer("train_sub_size", 2000, "TrainR subset (as run.py).")
flags.DEFINE_integer("seed", 0, "Stream seed.")
flags.DEFINE_string("json", None, "Write the table here.")
flags.DEFINE_float("whiten", None, "lm_* tasks: whiten the queries (the "
                   "runtime's query map, adapters/llama.fit_query_map).")
flags.DEFINE_string("neuron_act", None, "lm_* tasks: the neurons' "
                    "activation (gelu / relu).")


def _runtime(tasks):
  """The task's runtime, built as run.py builds it (cached base, queries)."""
  if FLAGS.task.startswith("lm_"):
    from patcher_jax.models import smollm2  # pylint: disable=g-import-not-at-top
    return tasks.build_lm_runtime(
        FLAGS.task, smollm2.load(FLAGS.cache_dir), scale="full",
        seed=FLAGS.seed, train_sub_size=FLAGS.train_sub_size,
        memory_size=FLAGS.memory_size, num_edits=FLAGS.num_edits,
        whiten=FLAGS.whiten, neuron_act=FLAGS.neuron_act)
  from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  bench = load_benchmark(FLAGS.task, data_dir=FLAGS.data_dir)
  base = base_cache.load_or_train_base(
      FLAGS.task, bench, cache_dir=FLAGS.cache_dir,
      data_key=FLAGS.data_dir or "embedded:full")
  return tasks.build_runtime(FLAGS.task, bench, base, seed=FLAGS.seed,
                             train_sub_size=FLAGS.train_sub_size,
                             memory_size=FLAGS.memory_size)


def main(argv):
  del argv
  from patcher_jax import metrics, stream, tasks  # pylint: disable=g-import-not-at-top
  runtime = _runtime(tasks)
  rows = []
  defaults = setting_text.runtime_defaults(runtime)
  for text in FLAGS.settings.split(";"):
    config, settings = setting_text.apply(text, FLAGS.task, FLAGS.mode,
                                          runtime, defaults)
    t0 = time.perf_counter()
    out = stream.run(runtime, config,
                     stream.StreamConfig(
                         num_edits=FLAGS.num_edits, seed=FLAGS.seed,
                         checkpoint_every=0, **settings),
                     log=lambda *_: None)
    summary = metrics.summarize(out["records"], out["folds"])
    times = [r["edit_time_s"] for r in out["records"][2:]]  # after compiles
    row = {"setting": text.strip() or "default",
           **{k: summary[k] for k in ("SR", "GR", "ER", "TrainR", "TestR")},
           "median_edit_s": statistics.median(times) if times else None,
           "median_steps": statistics.median(
               r["steps"] for r in out["records"]),
           "failed": sum(not r["train_success"] for r in out["records"]),
           "neurons": statistics.mean(r["neurons"] for r in out["records"]),
           "wall_s": round(time.perf_counter() - t0, 1),
           "load": round(os.getloadavg()[0], 1)}
    rows.append(row)
    print(json.dumps(row), flush=True)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
