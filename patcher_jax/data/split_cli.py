"""`python -m patcher_jax split`: a raw data file to a benchmark directory.

  python -m patcher_jax split --task=fever --input=paper_dev.jsonl \
      --out=data/fever --seed=0
  python -m patcher_jax split --task=zsre --input=zsre_mend_train.json \
      --test_input=zsre_mend_eval.json --out=data/zsre

(also `python -m patcher_jax.data.split_cli ...`). The format (KILT, FEVER
1.0, MEND or EasyEdit zsRE) is read off the content. Prints a summary table;
then `python run.py --task=T --data_dir=OUT` runs on the directory. A mistake
in the flags or the files prints one line `error: <where>: <problem>` and
returns 2.
"""
import argparse
import sys
from typing import Dict, List, Optional

from patcher_jax.data import split
from patcher_jax.data.errors import DataError

SIZE_SPLITS = ("val", "edit", "test")


class UsageError(Exception):
  """A command-line mistake: `where` and `problem` make the one-line error."""

  def __init__(self, where: str, problem: str):
    super().__init__(f"{where}: {problem}")


class _Parser(argparse.ArgumentParser):

  def error(self, message):   # argparse would print usage and exit
    raise UsageError("command line", message)


def build_parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m patcher_jax split",
              description="Split a raw FEVER / zsRE file into a benchmark "
              "directory (train/val/edit/test.jsonl) for run.py --data_dir.")
  p.add_argument("--task", required=True, choices=("fever", "zsre"))
  # --raw / --test: the names experiments/split_raw.py used
  p.add_argument("--input", "--raw", dest="input", required=True,
                 help="the raw file: KILT jsonl, FEVER 1.0 jsonl, MEND or "
                 "EasyEdit zsRE json")
  p.add_argument("--test_input", "--test", dest="test_input", default=None,
                 help="a separate test file (e.g. KILT dev); default: test is "
                 "carved from --input")
  p.add_argument("--out", required=True, help="the benchmark directory")
  p.add_argument("--seed", type=int, default=0, help="shuffle seed")
  p.add_argument("--ratios", default=None, help="train,val,edit[,test] "
                 "shares summing to 1 (default: the reference's)")
  for s in SIZE_SPLITS:
    p.add_argument(f"--{s}_size", type=int, default=None,
                   help=f"records in {s} (overrides the ratio)")
  p.add_argument("--max_len", type=int, default=split.MAX_LEN,
                 help="drop inputs longer than this many MiniLM tokens "
                 "(0: no check)")
  p.add_argument("--target", choices=("gold", "new"), default="gold",
                 help="MEND / EasyEdit: edit toward the gold answer or the "
                 "counterfactual alt / target_new")
  p.add_argument("--tokenizer_dir", default=None, help="tokenizer folder "
                 "(default: MiniLM, the project's)")
  return p


def parse_ratios(text: Optional[str], with_test: bool
                 ) -> Optional[Dict[str, float]]:
  """'0.8,0.1,0.1' -> {"train": .8, "val": .1, "edit": .1} (+ test)."""
  if not text:
    return None
  names = ["train", "val", "edit"] + ([] if with_test else ["test"])
  try:
    values = [float(v) for v in text.split(",")]
  except ValueError:
    raise UsageError("--ratios", f"not numbers: {text!r}") from None
  if len(values) != len(names):
    raise UsageError("--ratios", f"expected {len(names)} numbers "
                     f"({','.join(names)}), got {len(values)}")
  if any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
    raise UsageError("--ratios", f"shares must be >= 0 and sum to 1, got "
                     f"{text!r}")
  return dict(zip(names, values))


def _tokenizer(args):
  if not args.max_len:
    return None
  from patcher_jax.models import minilm  # pylint: disable=g-import-not-at-top
  return minilm.load_tokenizer(args.tokenizer_dir)


def run(args) -> split.SplitResult:
  ratios = parse_ratios(args.ratios, args.test_input is not None)
  sizes = {s: getattr(args, f"{s}_size") for s in SIZE_SPLITS
           if getattr(args, f"{s}_size") is not None}
  if args.test_input is not None and "test" in sizes:
    raise UsageError("--test_size", "not with --test_input (the test file is "
                     "the test split)")
  for s, n in sizes.items():
    if n < 1:
      raise UsageError(f"--{s}_size", f"must be >= 1, got {n}")
  try:
    return split.split_file(args.input, args.out, args.task, seed=args.seed,
                            test_path=args.test_input, ratios=ratios,
                            sizes=sizes, tokenizer=_tokenizer(args),
                            max_len=args.max_len, target=args.target)
  except ValueError as e:   # sizes leaving no train records
    raise UsageError(args.input, str(e)) from None


def main(argv: List[str]) -> int:
  """Runs the split; returns the exit status (0, or 2 on a user mistake).

  Args:
    argv: the arguments after the program / subcommand name (a leading
      "split" is skipped).
  """
  argv = list(argv)
  if argv and argv[0] == "split":
    argv = argv[1:]
  try:
    args = build_parser().parse_args(argv)
    result = run(args)
  except (UsageError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:   # unwritable --out and the like
    print(f"error: {e.filename or args.out}: {e.strerror}", file=sys.stderr)
    return 2
  print(result.table)
  print(f"wrote {args.out} (split indices: {result.index_path}); next:\n"
        f"  python run.py --task={args.task} --data_dir={args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
