"""Where a run's wall time went, and whether two runs made the same decisions.

  # the time split of a finished run.py run (its results.json)
  python experiments/time_split.py --run=runs/zsre
  # ... and the outcomes of two runs compared edit by edit (same records
  # edited in the same order, same per-edit success and rephrase counts)
  python experiments/time_split.py --run=runs/zsre --compare=runs/zsre_before

run.py records the split itself (`time_split_s` in results.json: setup
phases, then each phase of the stream loop as `stream.run` times it through
its `timings` hook); this script prints it as seconds and fractions of the
wall time, and the stream's overhead: wall - setup - edit calls, as a
fraction of the edit calls (the issue-11 ratio).
"""
import json
import os
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Output dir of a run.py run.", required=True)
flags.DEFINE_string("compare", None, "Another run's output dir: compare "
                    "per-edit outcomes (the first min(n, m) edits).")
flags.DEFINE_string("json", None, "Also write the table here.")

OUTCOME_KEYS = ("fold", "edit", "stream_index", "success", "train_success",
                "rephrase_correct", "rephrase_total", "neurons")
METRICS = ("SR", "GR", "ER", "TrainR", "TestR")


def split_table(results: dict) -> dict:
  """{phase: {"s", "fraction"}} plus the overhead ratio of one run."""
  wall = results["wall_time_s"]
  phases = results.get("time_split_s", {})
  rows = {k: {"s": v["s"], "calls": v.get("calls", 1),
              "fraction": v["s"] / wall} for k, v in phases.items()}
  setup = sum(v["s"] for k, v in phases.items() if k.startswith("setup."))
  edit_total = results["edit_time_s"]["total"]
  overhead = wall - setup - edit_total
  return {"wall_s": wall, "setup_s": setup, "edit_calls_s": edit_total,
          "overhead_s": overhead,
          "overhead_ratio": overhead / edit_total if edit_total else None,
          "edits": results.get("edits_made"),
          "edit_median_s": results["edit_time_s"]["median"],
          "edit_p90_s": results["edit_time_s"]["p90"], "phases": rows}


def compare_outcomes(a_dir: str, b_dir: str) -> dict:
  """Per-edit decisions of two runs, over their common prefix."""
  def records(d):
    with open(os.path.join(d, "edits.jsonl")) as f:
      return [json.loads(line) for line in f]
  a, b = records(a_dir), records(b_dir)
  n = min(len(a), len(b))
  diffs = [i for i in range(n)
           if any(a[i].get(k) != b[i].get(k) for k in OUTCOME_KEYS)]
  first = None
  if diffs:
    i = diffs[0]
    first = {"edit": i, "a": {k: a[i].get(k) for k in OUTCOME_KEYS},
             "b": {k: b[i].get(k) for k in OUTCOME_KEYS}}
  with open(os.path.join(a_dir, "results.json")) as f:
    ra = json.load(f)
  with open(os.path.join(b_dir, "results.json")) as f:
    rb = json.load(f)
  return {"compared_edits": n, "differing_edits": len(diffs),
          "first_difference": first,
          "metrics": {k: [ra.get(k), rb.get(k)] for k in METRICS},
          "steps_equal": sum(a[i]["steps"] == b[i]["steps"]
                             for i in range(n))}


def main(argv):
  del argv
  with open(os.path.join(FLAGS.run, "results.json")) as f:
    results = json.load(f)
  table = split_table(results)
  print(f"wall {table['wall_s']:.1f} s | setup {table['setup_s']:.1f} s | "
        f"edit calls {table['edit_calls_s']:.1f} s | overhead "
        f"{table['overhead_s']:.1f} s = {table['overhead_ratio']:.0%} of the "
        "edit calls")
  print(f"{'phase':<28}{'s':>9}{'calls':>8}{'of wall':>9}")
  for name, row in table["phases"].items():
    print(f"{name:<28}{row['s']:>9.1f}{row['calls']:>8}"
          f"{row['fraction']:>9.1%}")
  if FLAGS.compare:
    table["compare"] = compare_outcomes(FLAGS.run, FLAGS.compare)
    print(json.dumps(table["compare"], indent=1))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(table, f, indent=1)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
