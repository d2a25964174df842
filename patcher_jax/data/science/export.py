"""Write the science benchmark as benchmark directories (KILT jsonl).

  .venv/bin/python -m patcher_jax.data.science.export --out=data/science

writes <out>/zsre/ and <out>/fever/, each {train,val,edit,test}.jsonl, which
`run.py --task=zsre --data_dir=<out>/zsre` reads like any user's files. Built
offline from the committed facts table (patcher_jax/data/facts/science.tsv.gz)
in about a second; same seed, same bytes.
"""
import collections
import os

from absl import app, flags

from patcher_jax.data.benchmark_dir import export_benchmark
from patcher_jax.data.filters import SPLITS
from patcher_jax.data.science import generate

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The command's flags, defined only when it runs: importing this module
  (tests, other tools) must not claim common names such as --seed."""
  flags.DEFINE_string("out", None, "Directory to write (required).")
  flags.DEFINE_integer("seed", 0, "Split and negative-sampling seed.")
  flags.DEFINE_enum("scale", "full", ["tiny", "full"], "Size.")
  flags.DEFINE_list("tasks", ["zsre", "fever"], "Tasks to write.")


def write(out: str, tasks=("zsre", "fever"), scale: str = "full",
          seed: int = 0) -> dict:
  """Writes `<out>/<task>/` per task; returns {task: {split: records}}."""
  counts = {}
  for task in tasks:
    bench = generate.science_benchmark(task, scale, seed)
    counts[task] = export_benchmark(bench, os.path.join(out, task))
  return counts


def relation_counts(task: str, scale: str, seed: int) -> str:
  bench = generate.science_benchmark(task, scale, seed)
  per = {s: collections.Counter(r.id.split(":")[2] for r in getattr(bench, s))
         for s in SPLITS}
  rows = [f"{task:24s} " + " ".join(f"{s:>6s}" for s in SPLITS)]
  for rel in sorted(set().union(*per.values())):
    rows.append(f"{rel:24s} " + " ".join(f"{per[s][rel]:6d}" for s in SPLITS))
  return "\n".join(rows)


def main(argv):
  del argv
  if not FLAGS.out:
    raise app.UsageError("--out is required")
  for task in FLAGS.tasks:
    if task not in generate.SIZES:
      raise app.UsageError(f"--tasks: unknown task {task!r}")
  counts = write(FLAGS.out, FLAGS.tasks, FLAGS.scale, FLAGS.seed)
  for task, c in counts.items():
    print(relation_counts(task, FLAGS.scale, FLAGS.seed))
    print(f"wrote {os.path.join(FLAGS.out, task)}: {c}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
