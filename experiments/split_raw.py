"""Deprecated name of `python -m patcher_jax split` (patcher_jax/data/split_cli.py).

  python experiments/split_raw.py --task=fever --input=paper_dev.jsonl --out=data/fever
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from patcher_jax.data import split_cli  # noqa: E402

if __name__ == "__main__":
  sys.exit(split_cli.main(sys.argv[1:]))
