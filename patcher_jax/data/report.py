"""Counts of what a loader read, kept, dropped or repaired: nothing goes unseen."""
from typing import Mapping, NamedTuple


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

