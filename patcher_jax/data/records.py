"""The record every loader yields and every consumer reads.

One record is one edit-able example in the KILT / Transformer-Patcher shape:
an input text, its gold answers and its equivalent inputs (rephrases).
For fact checking the single answer is "SUPPORTS" or "REFUTES".
"""
from typing import NamedTuple, Tuple

FEVER_LABELS = ("REFUTES", "SUPPORTS")  # index == binary label (1 = SUPPORTS)


class Record(NamedTuple):
  id: str
  input: str
  answers: Tuple[str, ...]
  rephrases: Tuple[str, ...] = ()


class Benchmark(NamedTuple):
  """The four splits of the reference protocol."""
  train: Tuple[Record, ...]
  val: Tuple[Record, ...]
  edit: Tuple[Record, ...]
  test: Tuple[Record, ...]


def fever_label(record: Record) -> int:
  """1 for SUPPORTS, 0 for REFUTES (the reference's binary label)."""
  return FEVER_LABELS.index(record.answers[0])
