"""KILT / Transformer-Patcher jsonl: one record a line, for both tasks.

Accepted line shape (the union of what the public files use)::

  {"id": "...", "input": "...",
   "output": [{"answer": "...", "provenance": [...]}, ...] or ["...", ...],
   "rephrases": ["...", ...]}

- `output` items are KILT objects ({"answer": ...}) or plain strings (the
  Transformer-Patcher zsRE preprocessing writes strings). Objects without an
  "answer" key (KILT provenance-only entries) are skipped and counted.
- `id` is optional (the Transformer-Patcher zsRE files have none): a missing id
  becomes "<file stem>:<line>" and is counted.
- `rephrases` may be missing (raw KILT has none). KE-style files name the list
  `filtered_rephrases`; it is used when `rephrases` is absent, and counted.
- FEVER answers must be SUPPORTS or REFUTES; repeated identical labels are
  merged (the reference reads output[0]), conflicting labels are an error.

Every malformed line raises DataError naming the file, the line and the
problem. Nothing is dropped here; the reference's filters live in filters.py.
"""
import collections
import json
import os
from typing import Iterable, List, NamedTuple, Optional, Tuple

from patcher_jax.data.errors import DataError
from patcher_jax.data.records import FEVER_LABELS, Record
from patcher_jax.data.report import LoadReport
from patcher_jax.data.validate import text_field, type_name

TASKS = ("fever", "zsre")
_BOM = b"\xef\xbb\xbf"


class KiltFile(NamedTuple):
  """Records of one file, the 1-based line each came from, and the counts."""
  records: Tuple[Record, ...]
  lines: Tuple[int, ...]
  report: LoadReport


def check_task(task: str) -> str:
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
  return task


def record_id(obj: dict, default_id: str, fail,
              notes: collections.Counter) -> str:
  """A record's `id` as a string (`default_id` when it has none, counted in
  `notes`); `fail(problem)` for an id that is not a non-empty string or int."""
  if "id" not in obj:
    notes["ids synthesized (no 'id' field)"] += 1
    return default_id
  rid = obj["id"]
  # KILT ids are strings; some dumps write integers. Anything else is a bug.
  if isinstance(rid, bool) or not isinstance(rid, (str, int)):
    fail(f"id must be a string or an integer, got {type_name(rid)}")
  rid = str(rid)
  if not rid.strip():
    fail("id is empty")
  return rid


def parse_record(obj, task: str, *, default_id: str, fail,
                 notes: collections.Counter) -> Record:
  """One decoded JSON value -> Record; `fail(problem)` raises a DataError."""
  if not isinstance(obj, dict):
    fail(f"expected a JSON object, got {type_name(obj)}")

  rid = record_id(obj, default_id, fail, notes)

  if "input" not in obj:
    fail("missing field 'input'")
  text = text_field(obj["input"], "input", fail)

  if "output" not in obj:
    fail("missing field 'output'")
  output = obj["output"]
  if not isinstance(output, list):
    fail(f"output must be a list, got {type_name(output)}")
  answers: List[str] = []
  for i, item in enumerate(output):
    if isinstance(item, dict):
      if "answer" not in item:
        notes["output entries without 'answer' skipped"] += 1
        continue
      answers.append(text_field(item["answer"], f"output[{i}].answer", fail))
    elif isinstance(item, str):
      answers.append(text_field(item, f"output[{i}]", fail))
    else:
      fail(f"output[{i}] must be an object or a string, got {type_name(item)}")
  if not answers:
    fail("no answer: output holds no entry with an 'answer'")

  if task == "fever":
    for a in answers:
      if a not in FEVER_LABELS:
        fail(f"unknown label {a!r} (FEVER answers are SUPPORTS or REFUTES)")
    if len(set(answers)) > 1:
      fail(f"conflicting labels {sorted(set(answers))}")
    if len(answers) > 1:
      notes["repeated FEVER labels merged"] += 1
      answers = answers[:1]

  if "rephrases" in obj:
    key = "rephrases"
  elif "filtered_rephrases" in obj:
    key = "filtered_rephrases"
    notes["'filtered_rephrases' used as rephrases"] += 1
  else:
    key = None
    notes["records without a 'rephrases' field"] += 1
  rephrases: Tuple[str, ...] = ()
  if key is not None:
    raw = obj[key]
    if not isinstance(raw, list):
      fail(f"{key} must be a list, got {type_name(raw)}")
    rephrases = tuple(text_field(r, f"{key}[{i}]", fail) for i, r in enumerate(raw))

  return Record(id=rid, input=text, answers=tuple(answers), rephrases=rephrases)


def subject_of(obj) -> Optional[str]:
  """Who or what a KILT record is about, for grouping (None if unknown): a
  `subject` field, else the title of the first provenance page (KILT FEVER
  and zsRE carry one), else the part of a KILT zsRE input before `[SEP]`."""
  if not isinstance(obj, dict):
    return None
  subject = obj.get("subject")
  if isinstance(subject, str) and subject.strip():
    return subject
  output = obj.get("output")
  for item in output if isinstance(output, list) else ():
    provenance = item.get("provenance") if isinstance(item, dict) else None
    for p in provenance if isinstance(provenance, list) else ():
      title = p.get("title") if isinstance(p, dict) else None
      if isinstance(title, str) and title.strip():
        return title
  text = obj.get("input")
  if isinstance(text, str) and "[SEP]" in text:
    head = text.split("[SEP]", 1)[0].strip()
    return head or None
  return None


def parse_lines(data: bytes, task: str, source: str) -> KiltFile:
  """Parses the bytes of a jsonl file (see the module docstring)."""
  check_task(task)
  stem = os.path.splitext(os.path.basename(source))[0] or "record"
  if data.startswith(_BOM):
    data = data[len(_BOM):]
  records, lines, first_line = [], [], {}
  notes = collections.Counter()
  pieces = data.split(b"\n")
  if pieces[-1] == b"":
    pieces.pop()  # the final newline is a terminator, not a blank line
  for line_no, raw in enumerate(pieces, start=1):
    def fail(problem, line_no=line_no):
      raise DataError(source, problem, line=line_no)
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      fail(f"invalid UTF-8 at byte {e.start} of the line")
    if not line.strip():
      notes["blank lines skipped"] += 1
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      fail(f"not JSON: {e.msg} (column {e.colno})")
    rec = parse_record(obj, task, default_id=f"{stem}:{line_no}", fail=fail,
                       notes=notes)
    if rec.id in first_line:
      fail(f"duplicate id {rec.id!r} (first on line {first_line[rec.id]})")
    first_line[rec.id] = line_no
    records.append(rec)
    lines.append(line_no)
  if not records:
    raise DataError(source, "empty file: no records")
  report = LoadReport(source=source, read=len(records), kept=len(records),
                      dropped={}, notes=dict(notes))
  return KiltFile(tuple(records), tuple(lines), report)


def read_kilt_jsonl(path: str, task: str) -> KiltFile:
  """Reads and validates a KILT / Transformer-Patcher jsonl file."""
  check_task(task)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(path, "file not found") from None
  return parse_lines(data, task, path)


def record_to_json(record: Record) -> dict:
  """The KILT shape of a record (answers as [{"answer": ...}])."""
  return {"id": record.id, "input": record.input,
          "output": [{"answer": a} for a in record.answers],
          "rephrases": list(record.rephrases)}


def write_kilt_jsonl(records: Iterable[Record], path: str) -> int:
  """Writes records as KILT jsonl (UTF-8, sorted keys); returns the count."""
  n = 0
  with open(path, "w", encoding="utf-8", newline="\n") as f:
    for r in records:
      f.write(json.dumps(record_to_json(r), ensure_ascii=False, sort_keys=True))
      f.write("\n")
      n += 1
  return n
