"""EasyEdit's zsRE json (KnowEdit `ZsRE-test-all.json` and the records
EasyEdit's `ZsreDataset` builds from MEND's file): one JSON list of objects::

  {"subject": "Epaspidoceras",
   "prompt": "Which family does Epaspidoceras belong to?",
   "target_new": "Noctuidae", "ground_truth": ["Aspidoceratidae"],
   "rephrase_prompt": "What family are Epaspidoceras?",
   "locality": {...}, "portability": {...}}

Field names (either spelling is accepted): the question `prompt` or `src`;
the gold answer(s) `ground_truth` or `answers` (a string or a list of
strings); the counterfactual target `target_new` or `alt`; the rephrase
`rephrase_prompt` or `rephrase` (a string or a list). The gold answer is the
edit target (T-Patcher fixes mistakes), unless the caller asks for the new
target. `locality_prompt` / `loc`, `locality_ground_truth` / `loc_ans`,
`locality`, `portability`, `cond`, `case_id` are not used: type-checked only,
empty is fine. Records have no id: "<file stem>:<index>".
"""
import collections
from typing import Optional, Tuple

from patcher_jax.data.records import Record
from patcher_jax.data.validate import optional_text, text_field, type_name

QUESTION = ("prompt", "src")
GOLD = ("ground_truth", "answers")
NEW = ("target_new", "alt")
REPHRASE = ("rephrase_prompt", "rephrase")
UNUSED = {"locality_prompt": str, "loc": str, "locality_ground_truth": str,
          "loc_ans": str, "cond": str, "locality": dict, "portability": dict}
TARGETS = ("gold", "new")


def _first_key(obj: dict, names: Tuple[str, ...]) -> Optional[str]:
  return next((k for k in names if k in obj), None)


def _texts(value, what: str, fail, *, required: bool) -> Tuple[str, ...]:
  """A string or a list of strings (empty ones fail if `required`)."""
  if value is None:
    return ()
  items = [value] if isinstance(value, str) else value
  if not isinstance(items, list):
    fail(f"{what} must be a string or a list of strings, got "
         f"{type_name(value)}")
  out = []
  for k, item in enumerate(items):
    name = what if isinstance(value, str) else f"{what}[{k}]"
    if required:
      out.append(text_field(item, name, fail))
    else:
      text = optional_text(item, name, fail)
      if text is not None:
        out.append(text)
  return tuple(out)


def parse_easyedit_record(obj, *, default_id: str, fail,
                          notes: collections.Counter,
                          target: str = "gold") -> Record:
  """One decoded list element -> Record; `fail(problem)` raises."""
  if target not in TARGETS:
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
  if not isinstance(obj, dict):
    fail(f"expected a JSON object, got {type_name(obj)}")
  q = _first_key(obj, QUESTION)
  if q is None:
    fail("missing field 'prompt' (or 'src')")
  question = text_field(obj[q], q, fail)
  names = GOLD if target == "gold" else NEW
  key = _first_key(obj, names)
  if key is None:
    fail(f"missing field {names[0]!r} (or {names[1]!r})")
  answers = _texts(obj[key], key, fail, required=True)
  if not answers:
    fail(f"no answer: {key} is an empty list")
  other = _first_key(obj, NEW if target == "gold" else GOLD)
  if other is not None:
    _texts(obj[other], other, fail, required=False)   # type only
  r = _first_key(obj, REPHRASE)
  rephrases = _texts(obj[r], r, fail, required=False) if r else ()
  if not rephrases:
    notes["records without a rephrase"] += 1
  optional_text(obj.get("subject"), "subject", fail)
  for name, kind in UNUSED.items():
    value = obj.get(name)
    if value is not None and not isinstance(value, kind):
      fail(f"{name} must be a {type_name(kind())}, got {type_name(value)}")
  return Record(id=default_id, input=question, answers=answers,
                rephrases=rephrases)
