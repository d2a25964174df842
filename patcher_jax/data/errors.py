"""The one error type every data loader raises for bad input."""
from typing import Optional


class DataError(Exception):
  """A malformed input file or record.

  The message always names the file, the place (line and/or record index) and
  the problem, e.g. ``data/train.jsonl:17: rephrases must be a list, got str``
  or, for a JSON list, ``data/zsre.json:42: record 3: answers is empty``.
  """

  def __init__(self, source: str, problem: str, *,
               line: Optional[int] = None, record: Optional[int] = None):
    self.source = str(source)
    self.problem = problem
    self.line = line
    self.record = record
    if line is not None and record is not None:
      where = f"{self.source}:{line}: record {record}"
    elif line is not None:
      where = f"{self.source}:{line}"
    elif record is not None:
      where = f"{self.source} record {record}"
    else:
      where = self.source
    super().__init__(f"{where}: {problem}")
