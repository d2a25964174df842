"""The committed facts table: one (relation, subject, object) fact a row.

`facts.tsv.gz` is written by experiments/build_facts.py and read at load time.
Columns: relation, subject, object, group (the pool hard negatives of FEVER
claims come from: a continent, a country code, ...), also ("|"-separated
other objects that are also true, which a negative must avoid) and source
(the package the fact comes from; see ATTRIBUTION.md).
"""
import functools
import gzip
import io
import os
from typing import Iterable, NamedTuple, Tuple

FACTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "facts")
DEFAULT_PATH = os.path.join(FACTS_DIR, "facts.tsv.gz")
COLUMNS = ("relation", "subject", "object", "group", "also", "source")


class Fact(NamedTuple):
  relation: str
  subject: str
  object: str
  group: str
  also: str      # "|"-joined; use also_true()
  source: str

  def also_true(self) -> Tuple[str, ...]:
    return tuple(self.also.split("|")) if self.also else ()


def write_facts(facts: Iterable[Fact], path: str = DEFAULT_PATH) -> None:
  """Sorted rows, gzip without name or timestamp: same facts, same bytes."""
  rows = sorted(set(facts))
  buf = io.StringIO()
  buf.write("\t".join(COLUMNS) + "\n")
  for f in rows:
    for value in f:
      if "\t" in value or "\n" in value:
        raise ValueError(f"tab or newline in {f}")
    buf.write("\t".join(f) + "\n")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as raw:
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                       compresslevel=9) as gz:
      gz.write(buf.getvalue().encode("utf-8"))


@functools.lru_cache(maxsize=4)
def read_facts(path: str = DEFAULT_PATH) -> Tuple[Fact, ...]:
  """All facts of the table, in file order (cached per process)."""
  with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
    header = f.readline().rstrip("\n").split("\t")
    if tuple(header) != COLUMNS:
      raise ValueError(f"{path}: unexpected header {header}")
    return tuple(Fact(*line.rstrip("\n").split("\t")) for line in f)
