"""Split one raw KILT file into train/val/edit the reference way, but seeded.

The reference (`fever_dataloader.py`, `zsre_dataloader.py`) shuffles the raw
records with an unseeded `random.shuffle` and cuts consecutive slices of
`int(n * ratio)` records: FEVER 0.8/0.1/0.1, zsRE 0.9/0.075/0.025; the KILT dev
file is the test split. Here the shuffle is `random.Random(seed)` (the same
algorithm), val and edit get `int(n * ratio)` records and train the rest, so
the up-to-two records the reference's rounding leaves unused are kept. Lines
are copied verbatim (after validation) and the chosen line numbers are written
to `split_indices.json` next to the output.
"""
import hashlib
import json
import os
import random
import shutil
from typing import Dict, NamedTuple, Optional

from patcher_jax.data import kilt

REFERENCE_RATIOS = {
    "fever": {"train": 0.8, "val": 0.1, "edit": 0.1},
    "zsre": {"train": 0.9, "val": 0.075, "edit": 0.025},
}
INDEX_FILE = "split_indices.json"


class SplitResult(NamedTuple):
  counts: Dict[str, int]     # records written per split (test included if given)
  index_path: str            # where the split indices were written


def split_sizes(n: int, ratios: Dict[str, float]) -> Dict[str, int]:
  """val/edit as the reference rounds them; train takes the remainder."""
  if abs(sum(ratios.values()) - 1.0) > 1e-9:
    raise ValueError(f"ratios must sum to 1, got {ratios}")
  val, edit = int(n * ratios["val"]), int(n * ratios["edit"])
  return {"train": n - val - edit, "val": val, "edit": edit}


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def split_raw_file(raw_path: str, out_dir: str, task: str, *, seed: int = 0,
                   ratios: Optional[Dict[str, float]] = None,
                   test_path: Optional[str] = None) -> SplitResult:
  """Validates `raw_path` and writes out_dir/{train,val,edit}.jsonl.

  If `test_path` (e.g. the KILT dev file) is given it is validated and copied
  to out_dir/test.jsonl, making out_dir a complete benchmark directory.
  """
  kilt.check_task(task)
  ratios = dict(ratios or REFERENCE_RATIOS[task])
  kf = kilt.read_kilt_jsonl(raw_path, task)   # raises DataError on bad lines
  with open(raw_path, "rb") as f:
    raw_lines = f.read().split(b"\n")
  n = len(kf.records)
  order = list(range(n))
  random.Random(seed).shuffle(order)
  sizes = split_sizes(n, ratios)
  os.makedirs(out_dir, exist_ok=True)
  chosen, start, counts = {}, 0, {}
  for split in ("train", "val", "edit"):
    picked = order[start:start + sizes[split]]
    start += sizes[split]
    chosen[split] = [kf.lines[i] for i in picked]
    with open(os.path.join(out_dir, f"{split}.jsonl"), "wb") as f:
      for line_no in chosen[split]:
        f.write(raw_lines[line_no - 1].rstrip(b"\r").lstrip(b"\xef\xbb\xbf"))
        f.write(b"\n")
    counts[split] = len(picked)
  if test_path is not None:
    counts["test"] = len(kilt.read_kilt_jsonl(test_path, task).records)
    shutil.copyfile(test_path, os.path.join(out_dir, "test.jsonl"))
  index = {
      "source": os.path.abspath(raw_path), "source_sha256": _sha256(raw_path),
      "task": task, "seed": seed, "ratios": ratios, "records": n,
      "test_source": os.path.abspath(test_path) if test_path else None,
      "note": "1-based line numbers of the source file, in the written order",
      "lines": chosen,
  }
  index_path = os.path.join(out_dir, INDEX_FILE)
  with open(index_path, "w", encoding="utf-8") as f:
    json.dump(index, f, indent=1, sort_keys=True)
    f.write("\n")
  return SplitResult(counts=counts, index_path=index_path)
