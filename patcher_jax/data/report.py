"""Counts of what a loader read, kept, dropped or repaired: nothing goes unseen."""
from typing import Mapping, NamedTuple, Optional, Sequence, Tuple


class LoadReport(NamedTuple):
  """What happened to one source file.

  `dropped` counts whole records removed by a documented filter (the reference's
  single-answer zsRE rule, edit records without rephrases). `notes` counts
  things that were accepted but are worth knowing (blank lines skipped,
  synthesized ids, duplicate labels merged, ...).
  """
  source: str
  read: int
  kept: int
  dropped: Mapping[str, int]
  notes: Mapping[str, int]

  def summary(self) -> str:
    parts = [f"{self.source}: read {self.read}, kept {self.kept}"]
    parts += [f"dropped {n} ({why})" for why, n in sorted(self.dropped.items()) if n]
    parts += [f"{why}: {n}" for why, n in sorted(self.notes.items()) if n]
    return "; ".join(parts)



def splits_table(title: str, rows: Sequence[Tuple[str, LoadReport]],
                 warnings: Sequence[str] = ()) -> str:
  """A table of what each split's file gave: read, kept, dropped per reason
  (and notes: accepted but worth knowing).

  Example:
    >>> r = LoadReport("d/edit.jsonl", 10, 9, {"zsRE record without exactly "
    ...                "one answer": 1}, {})
    >>> print(splits_table("zsre data from d", [("edit", r)]))
    zsre data from d
      split      read     kept  file
      edit         10        9  d/edit.jsonl
                  dropped 1: zsRE record without exactly one answer
  """
  lines = [title, f"  {'split':<6} {'read':>8} {'kept':>8}  file"]
  for split, r in rows:
    lines.append(f"  {split:<6} {r.read:>8} {r.kept:>8}  {r.source}")
    lines += [f"{'':14}dropped {n}: {why}"
              for why, n in sorted(r.dropped.items()) if n]
    lines += [f"{'':14}note: {why}: {n}"
              for why, n in sorted(r.notes.items()) if n]
  lines += [f"  warning: {w}" for w in warnings]
  return "\n".join(lines)


def base_mistakes_line(metrics: Optional[Mapping], num_edits: Optional[int]
                       = None) -> str:
  """One line on the base model's mistakes in the edit split: the records
  the stream can edit (from the base cache's info.json `metrics`).

  Example:
    >>> base_mistakes_line({"edit_mistakes": 30, "num_edit": 200}, 50)
    'base model: wrong on 30 of 200 edit records (what the stream can edit); fewer than --num_edits=50: the stream will run out'
  """
  if not metrics or "edit_mistakes" not in metrics:
    return ("base model: mistakes in the edit split unknown (not in the base "
            "cache's metrics)")
  wrong = int(metrics["edit_mistakes"])
  total = metrics.get("num_edit")
  of = f" of {int(total)}" if total is not None else ""
  line = f"base model: wrong on {wrong}{of} edit records (what the stream can edit)"
  if num_edits is not None and wrong < num_edits:
    line += (f"; fewer than --num_edits={num_edits}: the stream will run out")
  return line
