"""Any supported data file in, records out: the format is read off the content.

| format | container | told apart by the first record's keys |
|---|---|---|
| `kilt`: KILT / Transformer-Patcher | JSON lines | `input` and `output` |
| `fever1`: FEVER 1.0 | JSON lines | `claim` |
| `mend`: MEND zsRE | one JSON list | `src` and `answers` |
| `easyedit`: EasyEdit / KnowEdit zsRE | one JSON list | `prompt` (or `src`) with `ground_truth` or `target_new` |

(A format in the other container is accepted too.) Every later record is
parsed as the first one's format, so a stray record fails naming its line.
When nothing fits, the DataError names the file, the line of the first record,
its keys and what each format needs.
"""
import collections
import os
from typing import NamedTuple, Optional, Tuple

from patcher_jax.data import easyedit, fever1, jsonfile, kilt, mend
from patcher_jax.data.errors import DataError
from patcher_jax.data.records import Record
from patcher_jax.data.report import LoadReport

NAMES = {
    "kilt": "KILT / Transformer-Patcher jsonl",
    "fever1": "FEVER 1.0 jsonl",
    "mend": "MEND zsRE json",
    "easyedit": "EasyEdit zsRE json",
}
TASK_OF = {"fever1": "fever", "mend": "zsre", "easyedit": "zsre"}
EXPECTED = ("KILT jsonl (input, output), FEVER 1.0 jsonl (id, label, claim, "
            "evidence), MEND zsRE json list (src, answers, rephrase) or "
            "EasyEdit zsRE json list (prompt, ground_truth or target_new, "
            "rephrase_prompt)")


class SourceFile(NamedTuple):
  """The records of one file, where each came from, and what each is about.

  `lines[i]` is the 1-based line record i starts on; `subjects[i]` its
  subject (a Wikipedia page, a zsRE subject) or None when the file does not
  say; `report` counts what was read, dropped and noted.
  """
  records: Tuple[Record, ...]
  lines: Tuple[int, ...]
  report: LoadReport
  subjects: Tuple[Optional[str], ...] = ()
  format: str = "kilt"


def format_of(obj) -> Optional[str]:
  """The format a decoded record is in, None if none fits."""
  if not isinstance(obj, dict):
    return None
  if "input" in obj and "output" in obj:
    return "kilt"
  if "claim" in obj:
    return "fever1"
  if "src" in obj and "answers" in obj:
    return "mend"
  if ("prompt" in obj or "src" in obj) and (
      "ground_truth" in obj or "target_new" in obj):
    return "easyedit"
  return None


def _items(text: str, source: str, blank: list):
  if jsonfile.first_char(text) == "[":
    return list(jsonfile.list_items(text, source)), True
  if jsonfile.first_char(text) != "{":
    raise DataError(source, f"not JSON: expected JSON lines or a JSON list, "
                    f"starts with {jsonfile.first_char(text)!r}", line=1)
  items = []
  try:
    for it in jsonfile.jsonl_items(text, source, blank):
      items.append(it)
  except DataError as e:
    if not items and jsonfile.whole_value_kind(text) == "object":
      raise DataError(source, "one JSON object; expected one record per line "
                      "or a JSON list of records") from None
    raise
  return items, False


def _detect(first, source: str, in_list: bool) -> str:
  fmt = format_of(first.value)
  if fmt is None:
    keys = (", ".join(sorted(first.value)) if isinstance(first.value, dict)
            else f"not an object but {type(first.value).__name__}")
    raise DataError(source, f"no known format fits this record (keys: "
                    f"{keys}); expected {EXPECTED}", line=first.line,
                    record=first.index if in_list else None)
  return fmt


def _check_task(fmt: str, task: str, source: str) -> None:
  want = TASK_OF.get(fmt)
  if want is not None and want != task:
    raise DataError(source, f"this is a {NAMES[fmt]} file, a {want} format; "
                    f"use --task={want}")


def _parse_one(fmt: str, item, task: str, target: str, fail, default_id: str,
               notes) -> Tuple[Optional[Record], Optional[str]]:
  """(record or None when dropped, subject) of one decoded record."""
  obj = item.value
  if fmt == "kilt":
    rec = kilt.parse_record(obj, task, default_id=default_id, fail=fail,
                            notes=notes)
    return rec, kilt.subject_of(obj)
  if fmt == "fever1":
    rec = fever1.parse_fever1_record(obj, default_id=default_id, fail=fail,
                                     notes=notes)
    return rec, fever1.evidence_page(obj.get("evidence"))
  if fmt == "mend":
    it = mend.parse_mend_record(obj, default_id=default_id, fail=fail,
                                notes=notes)
    rec = it.record
    if target == "new":
      if it.alt is None:
        fail("target 'new' but 'alt' is missing or empty")
      rec = rec._replace(answers=(it.alt,))
    return rec, it.subject
  rec = easyedit.parse_easyedit_record(obj, default_id=default_id, fail=fail,
                                       notes=notes, target=target)
  subject = obj.get("subject")
  return rec, subject if isinstance(subject, str) and subject.strip() else None


def parse_records(data: bytes, task: str, source: str, *,
                  target: str = "gold") -> SourceFile:
  """Decodes, detects and validates one file's bytes (see module doc).

  Args:
    data: the file's bytes.
    task: "fever" or "zsre"; a FEVER 1.0 file must be fever, MEND / EasyEdit
      files zsre.
    source: the file name used in errors and ids ("<stem>:<index>").
    target: for MEND / EasyEdit, "gold" (the true answers: T-Patcher fixes
      mistakes) or "new" (`alt` / `target_new`, counterfactual editing).

  Raises:
    DataError: naming the file, the line (and record index for a JSON list)
      and the problem.
  """
  kilt.check_task(task)
  text = jsonfile.decode_text(data, source)
  if not text.strip():
    raise DataError(source, "empty file: no records")
  blank = []
  items, in_list = _items(text, source, blank)
  if not items:
    raise DataError(source, "empty file: no records")
  fmt = _detect(items[0], source, in_list)
  _check_task(fmt, task, source)
  stem = os.path.splitext(os.path.basename(source))[0] or "record"
  notes, dropped = collections.Counter(), collections.Counter()
  if blank:
    notes["blank lines skipped"] = len(blank)
  records, lines, subjects, first_line = [], [], [], {}
  for it in items:
    def fail(problem, it=it):
      raise DataError(source, problem, line=it.line,
                      record=it.index if in_list else None)
    default_id = f"{stem}:{it.index if in_list else it.line}"
    rec, subject = _parse_one(fmt, it, task, target, fail, default_id, notes)
    if rec is None:
      dropped[fever1.DROPPED_NEI] += 1
      continue
    if rec.id in first_line:
      if fmt == "kilt":
        fail(f"duplicate id {rec.id!r} (first on line {first_line[rec.id]})")
      notes["duplicate ids made unique"] += 1
      rec = rec._replace(id=f"{rec.id}#{it.line}")
    first_line[rec.id] = it.line
    records.append(rec)
    lines.append(it.line)
    subjects.append(subject)
  report = LoadReport(source=source, read=len(items), kept=len(records),
                      dropped=dict(dropped), notes=dict(notes))
  return SourceFile(tuple(records), tuple(lines), report, tuple(subjects), fmt)


def read_records(path: str, task: str, *, target: str = "gold") -> SourceFile:
  """Reads any supported file (see `parse_records`)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(path, "file not found") from None
  except IsADirectoryError:
    raise DataError(path, "is a directory, not a data file") from None
  return parse_records(data, task, path, target=target)
