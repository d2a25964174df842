"""The reference's record filters, applied with counts (never silently).

- zsRE: only questions with exactly one answer are kept, in every split
  (`zsre_dataloader.py`: `len(d["output"]) == 1`).
- Edit records without rephrases are kept (the reference drops them; real
  FEVER has no rephrases at all, so that rule would empty the edit split).
  They are edited and counted; generality (GR) is measured over the edit
  records that have rephrases.
"""
import collections

from patcher_jax.data.kilt import check_task

SPLITS = ("train", "val", "edit", "test")
MULTI_ANSWER = "zsRE record without exactly one answer"
NO_REPHRASE = "edit records without rephrases (edited; not in GR)"


def keep_only(source, keep, dropped):
  """`source` (a KiltFile or formats.SourceFile) with only the records where
  `keep` is true, and `dropped` (reason -> count) added to its report."""
  per_record = ["records", "lines"] + [
      f for f in ("subjects",) if f in source._fields and getattr(source, f)]
  out = {f: tuple(x for x, k in zip(getattr(source, f), keep) if k)
         for f in per_record}
  total = collections.Counter(source.report.dropped)
  total.update(dropped)
  report = source.report._replace(kept=len(out["records"]),
                                  dropped=dict(total))
  return source._replace(report=report, **out)


def reference_filter(source, task: str, split: str):
  """Drops what the reference drops for `split`; the report counts each rule.

  `source` is a KiltFile or formats.SourceFile; the same type is returned.
  """
  check_task(task)
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  keep = [not (task == "zsre" and len(r.answers) != 1) for r in source.records]
  out = keep_only(source, keep, {MULTI_ANSWER: keep.count(False)}
                  if keep.count(False) else {})
  if split == "edit":
    missing = sum(not r.rephrases for r in out.records)
    if missing:
      notes = dict(out.report.notes)
      notes[NO_REPHRASE] = missing
      out = out._replace(report=out.report._replace(notes=notes))
  return out
