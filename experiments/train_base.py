"""Train (or reuse) the base model of a task and print its metrics.

  python experiments/train_base.py --task=fever
  python experiments/train_base.py --task=zsre --scale=small --retrain

Same cache as run.py: the first call trains and saves an Orbax checkpoint
under --cache_dir, later calls restore it. Prints one JSON object (training
time, train/val/test accuracy or exact match, held-out-template score,
mistakes on the edit split) and writes it to --out if given.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "zsre", ["fever", "zsre"], "Which base model.")
flags.DEFINE_string("cache_dir", None, "Base-model cache (default "
                    "$PATCHER_JAX_CACHE or ~/.cache/patcher_jax).")
flags.DEFINE_enum("scale", "full", ["tiny", "small", "full"],
                  "Size of the embedded benchmark.")
flags.DEFINE_string("data_dir", None, "Benchmark dir (train/val/edit/test"
                    ".jsonl) instead of the embedded benchmark.")
flags.DEFINE_string("model_dir", None, "Local HF model folder to start from "
                    "(or to use as is, if it already is a task model).")
flags.DEFINE_bool("retrain", False, "Train even if a cached model exists.")
flags.DEFINE_integer("seed", None, "Override the recipe's seed.")
flags.DEFINE_float("epochs", None, "Override the recipe's epochs.")
flags.DEFINE_float("max_seconds", None, "Hard stop of the training loop "
                   "(not reproducible when it triggers).")
flags.DEFINE_string("out", None, "Also write the JSON summary here.")


def main(argv):
  del argv
  from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  t0 = time.perf_counter()
  bench = load_benchmark(FLAGS.task, data_dir=FLAGS.data_dir,
                         scale=FLAGS.scale)
  settings = base_cache.default_settings(FLAGS.task)
  overrides = {k: v for k, v in (("seed", FLAGS.seed), ("epochs", FLAGS.epochs),
                                 ("max_seconds", FLAGS.max_seconds))
               if v is not None}
  settings = settings._replace(**overrides)
  base = base_cache.load_or_train_base(
      FLAGS.task, bench, cache_dir=FLAGS.cache_dir, model_dir=FLAGS.model_dir,
      settings=settings, retrain=FLAGS.retrain,
      data_key=FLAGS.data_dir or f"embedded:{FLAGS.scale}")
  train = base.info.get("train", {})
  out = {"task": FLAGS.task, "cache": base.path,
         "wall_seconds": round(time.perf_counter() - t0, 1),
         "train_seconds": train.get("train_seconds"),
         "steps": train.get("steps"),
         "load_average_at_save": base.info.get("load_average"),
         "metrics": base.info.get("metrics", {})}
  print(json.dumps(out, indent=1))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
