"""FEVER 1.0 jsonl, as distributed (`train.jsonl`, `paper_dev.jsonl`, ...).

One claim a line::

  {"id": 137334, "verifiable": "VERIFIABLE", "label": "SUPPORTS",
   "claim": "Fox 2000 Pictures released the film Soul Food.",
   "evidence": [[[289914, 283015, "Soul_Food_-LRB-film-RRB-", 0]], ...]}

The claim is the record's input and the label its answer. Claims labelled
NOT ENOUGH INFO have no place in a two-label fact checker: they are dropped
and counted. FEVER has no rephrases. The Wikipedia page of the first
evidence sentence is the claim's subject (claims about one page are kept in
one split); `evidence` and `verifiable` are otherwise unused and only
type-checked.
"""
import collections
from typing import Optional

from patcher_jax.data import kilt
from patcher_jax.data.records import FEVER_LABELS, Record
from patcher_jax.data.validate import text_field, type_name

NOT_ENOUGH_INFO = "NOT ENOUGH INFO"
DROPPED_NEI = "NOT ENOUGH INFO claims"


def evidence_page(evidence) -> Optional[str]:
  """The page of the first evidence sentence (None if there is none).

  Evidence is a list of evidence sets, each a list of
  [annotation_id, evidence_id, page, sentence_id]; NOT ENOUGH INFO claims
  have null pages. Anything else is ignored (the field is not used otherwise).
  """
  if not isinstance(evidence, list):
    return None
  for group in evidence:
    if not isinstance(group, list):
      continue
    for sentence in group:
      if (isinstance(sentence, list) and len(sentence) > 2
          and isinstance(sentence[2], str) and sentence[2].strip()):
        return sentence[2].replace("_", " ")
  return None


def parse_fever1_record(obj, *, default_id: str, fail,
                        notes: collections.Counter) -> Optional[Record]:
  """One decoded line -> Record, or None for a NOT ENOUGH INFO claim."""
  if not isinstance(obj, dict):
    fail(f"expected a JSON object, got {type_name(obj)}")
  rid = kilt.record_id(obj, default_id, fail, notes)
  if "claim" not in obj:
    fail("missing field 'claim'")
  claim = text_field(obj["claim"], "claim", fail)
  if "label" not in obj:
    fail("missing field 'label' (an unlabelled FEVER file, such as the "
         "shared-task test set, cannot be edited)")
  label = obj["label"]
  if not isinstance(label, str):
    fail(f"label must be a string, got {type_name(label)}")
  if label == NOT_ENOUGH_INFO:
    return None
  if label not in FEVER_LABELS:
    fail(f"unknown label {label!r} (FEVER 1.0 labels are SUPPORTS, REFUTES "
         f"and {NOT_ENOUGH_INFO})")
  for key in ("evidence", "verifiable"):
    value = obj.get(key)
    kind = list if key == "evidence" else str
    if value is not None and not isinstance(value, kind):
      fail(f"{key} must be a {type_name(kind())}, got {type_name(value)}")
  return Record(id=rid, input=claim, answers=(label,), rephrases=())
