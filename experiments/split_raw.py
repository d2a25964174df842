"""Split one raw KILT file into a benchmark directory, the reference way.

  python -m experiments.split_raw --task=fever \
      --raw=data/fever-train-kilt.jsonl --test=data/fever-dev-kilt.jsonl \
      --out=data/fever --seed=0

writes data/fever/{train,val,edit,test}.jsonl and split_indices.json; then
`run.py --task=fever --data_dir=data/fever` runs on it.
"""
import os
import sys

from absl import app, flags

# Runnable as a file too (python experiments/split_raw.py) from any directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from patcher_jax.data.api import load_benchmark_and_report  # noqa: E402
from patcher_jax.data.split import split_raw_file  # noqa: E402

_TASK = flags.DEFINE_enum("task", None, ["fever", "zsre"], "Which task.")
_RAW = flags.DEFINE_string("raw", None, "The raw KILT jsonl file to split.")
_TEST = flags.DEFINE_string("test", None, "The KILT dev file, copied as test.")
_OUT = flags.DEFINE_string("out", None, "The benchmark directory to write.")
_SEED = flags.DEFINE_integer("seed", 0, "Shuffle seed.")
_RATIOS = flags.DEFINE_list(
    "ratios", None, "train,val,edit ratios (default: the reference's).")


def main(argv):
  del argv
  ratios = None
  if _RATIOS.value:
    ratios = dict(zip(("train", "val", "edit"), map(float, _RATIOS.value)))
  result = split_raw_file(_RAW.value, _OUT.value, _TASK.value, seed=_SEED.value,
                          ratios=ratios, test_path=_TEST.value)
  print(f"wrote {result.counts} and {result.index_path}")
  if _TEST.value:
    # Read back as run.py will, so the reference filters' counts are shown.
    _, report = load_benchmark_and_report(_TASK.value, data_dir=_OUT.value)
    print(report.summary())


if __name__ == "__main__":
  flags.mark_flags_as_required(["task", "raw", "out"])
  app.run(main)
