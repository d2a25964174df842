"""The reference's record filters, applied with counts (never silently).

- zsRE: only questions with exactly one answer are kept, in every split
  (`zsre_dataloader.py`: `len(d["output"]) == 1`).
- Edit split, both tasks: only records with at least one rephrase are kept
  (generality needs equivalent inputs; `fever_dataloader.py`).
"""
import collections

from patcher_jax.data.kilt import KiltFile, check_task

SPLITS = ("train", "val", "edit", "test")
MULTI_ANSWER = "zsRE record without exactly one answer"
NO_REPHRASE = "edit record without rephrases"


def reference_filter(kf: KiltFile, task: str, split: str) -> KiltFile:
  """Drops what the reference drops for `split`; the report counts each rule."""
  check_task(task)
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  dropped = collections.Counter(kf.report.dropped)
  keep_recs, keep_lines = [], []
  for rec, line in zip(kf.records, kf.lines):
    if task == "zsre" and len(rec.answers) != 1:
      dropped[MULTI_ANSWER] += 1
    elif split == "edit" and not rec.rephrases:
      dropped[NO_REPHRASE] += 1
    else:
      keep_recs.append(rec)
      keep_lines.append(line)
  report = kf.report._replace(kept=len(keep_recs), dropped=dict(dropped))
  return KiltFile(tuple(keep_recs), tuple(keep_lines), report)
