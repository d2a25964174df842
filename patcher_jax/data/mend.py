"""MEND-format zsRE (`zsre_mend_eval.json`): one JSON list of objects.

Each object has `src` (the question), `answers` (gold answers), `rephrase`
(one equivalent question) and usually `alt` (a counterfactual target), `loc` /
`loc_ans` (an unrelated NQ question and its answer), plus fields we carry
through untouched (`subject`, `pred`, `cond`, ...). Records have no id: the id
is "<file stem>:<index>". Bad records raise DataError naming the record index.
"""
import collections
import json
import os
from typing import Iterable, NamedTuple, Optional, Tuple

from patcher_jax.data.errors import DataError
from patcher_jax.data.records import Record
from patcher_jax.data.report import LoadReport
from patcher_jax.data.validate import text_field, type_name


class MendItem(NamedTuple):
  """A MEND record: the Record plus the fields T-Patcher does not use."""
  record: Record
  alt: Optional[str]
  loc: Optional[str]
  loc_ans: Optional[str]


class MendFile(NamedTuple):
  items: Tuple[MendItem, ...]
  report: LoadReport

  def records(self, target: str = "answers") -> Tuple[Record, ...]:
    """Records answering with the gold `answers`, or with `alt` (counterfactual
    editing, as MEND/ROME evaluate)."""
    if target == "answers":
      return tuple(i.record for i in self.items)
    if target == "alt":
      missing = [k for k, i in enumerate(self.items) if i.alt is None]
      if missing:
        raise DataError(self.report.source, "target='alt' but 'alt' is missing",
                        record=missing[0])
      return tuple(i.record._replace(answers=(i.alt,)) for i in self.items)
    raise ValueError(f"target must be 'answers' or 'alt', got {target!r}")


def _utf8_error(data: bytes, e: UnicodeDecodeError, source: str) -> DataError:
  line = data[:e.start].count(b"\n") + 1
  col = e.start - (data.rfind(b"\n", 0, e.start) + 1)
  return DataError(source, f"invalid UTF-8 at byte {col} of the line", line=line)


def parse_mend(data: bytes, source: str) -> MendFile:
  """Parses the bytes of a MEND zsRE json file."""
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise _utf8_error(data, e, source) from None
  if not text.strip():
    raise DataError(source, "empty file: no records")
  try:
    objs = json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(source, f"not JSON: {e.msg} (column {e.colno})",
                    line=e.lineno) from None
  if not isinstance(objs, list):
    raise DataError(source, f"expected a JSON list of records, got {type_name(objs)}")
  if not objs:
    raise DataError(source, "empty file: the list holds no records")
  stem = os.path.splitext(os.path.basename(source))[0] or "record"
  items = []
  notes = collections.Counter()
  for i, obj in enumerate(objs):
    def fail(problem, i=i):
      raise DataError(source, problem, record=i)
    if not isinstance(obj, dict):
      fail(f"expected a JSON object, got {type_name(obj)}")
    for key in ("src", "answers", "rephrase"):
      if key not in obj:
        fail(f"missing field {key!r}")
    src = text_field(obj["src"], "src", fail)
    answers = obj["answers"]
    if not isinstance(answers, list):
      fail(f"answers must be a list, got {type_name(answers)}")
    if not answers:
      fail("no answer: answers is an empty list")
    answers = tuple(text_field(a, f"answers[{k}]", fail) for k, a in enumerate(answers))
    rephrase = text_field(obj["rephrase"], "rephrase", fail)
    extras = {}
    for key in ("alt", "loc", "loc_ans"):
      if key in obj:
        extras[key] = text_field(obj[key], key, fail)
      else:
        extras[key] = None
        notes[f"records without '{key}'"] += 1
    rec = Record(id=f"{stem}:{i}", input=src, answers=answers,
                 rephrases=(rephrase,))
    items.append(MendItem(rec, **extras))
  report = LoadReport(source=source, read=len(items), kept=len(items),
                      dropped={}, notes=dict(notes))
  return MendFile(tuple(items), report)


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
           "rephrase": r.rephrases[0] if r.rephrases else r.input}
    for key in ("alt", "loc", "loc_ans"):
      if getattr(it, key) is not None:
        obj[key] = getattr(it, key)
    out.append(obj)
  with open(path, "w", encoding="utf-8", newline="\n") as f:
    json.dump(out, f, ensure_ascii=False, indent=0, sort_keys=True)
    f.write("\n")
  return len(out)
