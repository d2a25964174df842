"""MEND-format zsRE (`zsre_mend_eval.json`): one JSON list of objects.

Each object has `src` (the question), `answers` (gold answers), `rephrase`
(one equivalent question) and usually `subject`, `alt` (a counterfactual
target), `loc` / `loc_ans` (an unrelated NQ question and its answer), plus
fields nobody here reads (`pred`, `cond`, `portability`, ...). Records have no
id: the id is "<file stem>:<index>".

Only the fields T-Patcher uses are validated as text: `src`, `answers` (a
non-empty list of non-empty strings). `rephrase` may be missing or empty: the
record is then one without rephrases (counted; it is still edited, GR skips
it). `subject`, `alt`, `loc`, `loc_ans` are only type-checked (string or
null); an empty one is not an error (the public files hold `"alt": ""`). Bad
records raise DataError naming the file, the line and the record index.
"""
import collections
import json
import os
from typing import Iterable, NamedTuple, Optional, Tuple

from patcher_jax.data import jsonfile
from patcher_jax.data.errors import DataError
from patcher_jax.data.records import Record
from patcher_jax.data.report import LoadReport
from patcher_jax.data.validate import optional_text, text_field, type_name

UNUSED_TEXT = ("subject", "alt", "loc", "loc_ans")


class MendItem(NamedTuple):
  """A MEND record: the Record plus the fields T-Patcher does not use
  (None when missing or empty)."""
  record: Record
  alt: Optional[str]
  loc: Optional[str]
  loc_ans: Optional[str]
  subject: Optional[str] = None


class MendFile(NamedTuple):
  items: Tuple[MendItem, ...]
  report: LoadReport
  lines: Tuple[int, ...] = ()   # the line each record starts on

  def records(self, target: str = "answers") -> Tuple[Record, ...]:
    """Records answering with the gold `answers`, or with `alt` (counterfactual
    editing, as MEND/ROME evaluate)."""
    if target == "answers":
      return tuple(i.record for i in self.items)
    if target == "alt":
      missing = [k for k, i in enumerate(self.items) if i.alt is None]
      if missing:
        k = missing[0]
        raise DataError(self.report.source,
                        "target='alt' but 'alt' is missing or empty", record=k,
                        line=self.lines[k] if self.lines else None)
      return tuple(i.record._replace(answers=(i.alt,)) for i in self.items)
    raise ValueError(f"target must be 'answers' or 'alt', got {target!r}")


def parse_mend_record(obj, *, default_id: str, fail,
                      notes: collections.Counter) -> MendItem:
  """One decoded list element -> MendItem; `fail(problem)` raises."""
  if not isinstance(obj, dict):
    fail(f"expected a JSON object, got {type_name(obj)}")
  for key in ("src", "answers"):
    if key not in obj:
      fail(f"missing field {key!r}")
  src = text_field(obj["src"], "src", fail)
  answers = obj["answers"]
  if not isinstance(answers, list):
    fail(f"answers must be a list, got {type_name(answers)}")
  if not answers:
    fail("no answer: answers is an empty list")
  answers = tuple(text_field(a, f"answers[{k}]", fail)
                  for k, a in enumerate(answers))
  rephrase = optional_text(obj.get("rephrase"), "rephrase", fail)
  if rephrase is None:
    notes["records without a rephrase"] += 1
  extras = {}
  for key in UNUSED_TEXT:
    extras[key] = optional_text(obj.get(key), key, fail)
    if extras[key] is None and key != "subject":
      notes[f"records without '{key}' (or empty)"] += 1
  rec = Record(id=default_id, input=src, answers=answers,
               rephrases=(rephrase,) if rephrase is not None else ())
  return MendItem(rec, **extras)


def parse_mend(data: bytes, source: str) -> MendFile:
  """Parses the bytes of a MEND zsRE json file."""
  text = jsonfile.decode_text(data, source)
  if not text.strip():
    raise DataError(source, "empty file: no records")
  if jsonfile.first_char(text) != "[":
    kind = jsonfile.whole_value_kind(text) or "not one JSON value"
    raise DataError(source, f"expected a JSON list of records, got {kind}")
  stem = os.path.splitext(os.path.basename(source))[0] or "record"
  items, lines = [], []
  notes = collections.Counter()
  for it in jsonfile.list_items(text, source):
    def fail(problem, it=it):
      raise DataError(source, problem, line=it.line, record=it.index)
    items.append(parse_mend_record(it.value, default_id=f"{stem}:{it.index}",
                                   fail=fail, notes=notes))
    lines.append(it.line)
  if not items:
    raise DataError(source, "empty file: the list holds no records")
  report = LoadReport(source=source, read=len(items), kept=len(items),
                      dropped={}, notes=dict(notes))
  return MendFile(tuple(items), report, tuple(lines))


def read_mend_json(path: str) -> MendFile:
  """Reads and validates a MEND-format zsRE json file."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(path, "file not found") from None
  return parse_mend(data, path)


def write_mend_json(items: Iterable[MendItem], path: str) -> int:
  """Writes MEND-format json (the fields MEND's loader reads)."""
  out = []
  for it in items:
    r = it.record
    obj = {"src": r.input, "answers": list(r.answers),
           "rephrase": r.rephrases[0] if r.rephrases else ""}
    for key in UNUSED_TEXT:
      if getattr(it, key) is not None:
        obj[key] = getattr(it, key)
    out.append(obj)
  with open(path, "w", encoding="utf-8", newline="\n") as f:
    json.dump(out, f, ensure_ascii=False, indent=0, sort_keys=True)
    f.write("\n")
  return len(out)
