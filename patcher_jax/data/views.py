"""Which rephrases of a record a base model may train on.

The reference never trains on rephrases: they measure generality. The embedded
geography benchmark renders every template of a relation for every record, in
template order, and holds out the last templates (2 of the questions, 1 of the
claims): they are never an input and must never be trained on. The other
rephrases use the same wording the inputs of other records use, so a base
model may train on them (more wordings per fact) without seeing held-out
wording. For records from files (ids not "geo:..."), all rephrases count as
held out, as in the reference.
"""
from typing import Optional, Tuple

from patcher_jax.data.geo import templates
from patcher_jax.data.records import Record


def geo_relation(record: Record) -> Optional[Tuple[str, str]]:
  """(task, relation) for an embedded-benchmark record, else None."""
  parts = record.id.split(":")
  if len(parts) >= 4 and parts[0] == "geo" and parts[2] in templates.BY_NAME:
    return parts[1], parts[2]
  return None


def held_out_count(record: Record) -> int:
  """How many of `record.rephrases` (its last ones) are held-out wording."""
  geo = geo_relation(record)
  if geo is None:
    return len(record.rephrases)
  task, relation = geo
  expected = len(templates.templates(relation, task)) - 1
  if len(record.rephrases) != expected:
    # Not rendered by the generator (edited by hand?): be safe, train on none.
    return len(record.rephrases)
  return templates.held_out_count(relation, task)


def held_out_rephrases(record: Record) -> Tuple[str, ...]:
  """Rephrases in wording never used as an input: evaluation only."""
  n = held_out_count(record)
  return record.rephrases[len(record.rephrases) - n:]


def trainable_rephrases(record: Record) -> Tuple[str, ...]:
  """Rephrases a base model may also train on (seen wording)."""
  n = held_out_count(record)
  return record.rephrases[:len(record.rephrases) - n]
