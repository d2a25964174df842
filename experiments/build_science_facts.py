"""Extract the science benchmark's facts from Python packages into one table.

  .venv/bin/pip install --no-deps --target /tmp/sci \
      mendeleev==1.3.0 chemicals==1.5.2 iso639-lang==2.6.3
  PYTHONPATH=/tmp/sci .venv/bin/python -m experiments.build_science_facts

(--no-deps: only the packages' data files are read, never imported, so their
dependencies (pandas, scipy, sqlalchemy, ...) are not needed.) Writes
patcher_jax/data/facts/science.tsv.gz, in the format of the geography table
(patcher_jax/data/geo/facts.py): relation, subject, object, group, also,
source. Same package versions and Python, same bytes; no randomness.
The benchmark is generated from the table at load time
(patcher_jax/data/science/). Sources and licenses: ATTRIBUTION.md there.

Relations (none of them geography): elements (mendeleev's elements.db):
symbol, atomic number, discoverer, discovery year, block, period, series;
compounds (chemicals' PubChem identifier table): molecular formula, CAS
number; languages (iso639-lang's ISO 639 tables): ISO 639-3 / 639-1 code,
macrolanguage; web standards (the Python standard library): HTTP reason
phrases, MIME types of file extensions.

Filters, as for geography: ASCII-folded names, a subject with exactly one
object per relation, no object inside its subject, objects of at most 8
WordPiece tokens and 6 words, subjects short enough for every template to fit
the models' 32 tokens. Compounds: common names of letters, spaces and hyphens
only (no digits, brackets or commas: the names people use, not systematic
ones), of at most 4 words, at most MAX_COMPOUNDS of them (the shortest
PubChem ids first, i.e. the longest-known compounds).
"""
import collections
import http
import importlib.util
import json
import mimetypes
import os
import re
import sqlite3
import sys
import time
from typing import Iterator, List

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from patcher_jax.data.geo import facts as facts_lib  # noqa: E402
from patcher_jax.data.science import templates  # noqa: E402
from experiments.build_facts import (  # noqa: E402
    ascii_name, clean, minilm_token_counter, write_and_report)

SCIENCE_PATH = os.path.join(facts_lib.FACTS_DIR, "science.tsv.gz")
_FACTS_OUT = flags.DEFINE_string("facts_out", SCIENCE_PATH, "Where to write.")

MAX_COMPOUNDS = 6000
Raw = facts_lib.Fact


def package_file(package: str, *parts: str) -> str:
  """A data file inside an installed package, without importing it."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise SystemExit(f"error: package {package} not installed (see the "
                     f"module docstring)")
  return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def element_facts() -> Iterator[Raw]:
  db = sqlite3.connect(package_file("mendeleev", "elements.db"))
  series = dict(db.execute("select id, name from series"))
  rows = db.execute("select name, symbol, atomic_number, discoverers, "
                    "discovery_year, block, period, series_id from elements "
                    "order by atomic_number")
  for name, symbol, number, who, year, block, period, sid in rows:
    name = ascii_name(name)
    if not name:
      continue
    src = "mendeleev"
    yield Raw("element_symbol", name, symbol, "element", "", src)
    yield Raw("element_atomic_number", name, str(number), "element", "", src)
    who = ascii_name(who)
    if who and "ancient" not in who.lower():
      yield Raw("element_discoverer", name, who.replace(", ", " and ")
                if who.count(",") == 1 else who, "element", "", src)
    if year:
      yield Raw("element_discovery_year", name, str(year), "element", "", src)
    if block:
      yield Raw("element_block", name, f"{block}-block", "element", "", src)
    if period:
      yield Raw("element_period", name, str(period), "element", "", src)
    if sid in series:
      yield Raw("element_series", name, series[sid].lower(), "element", "",
                src)


_COMPOUND_NAME = re.compile(r"^[a-z][a-z -]*[a-z]$")
_CAS = re.compile(r"^\d{2,7}-\d\d-\d$")


def compound_facts(elements=()) -> Iterator[Raw]:
  """PubChem compounds; none named like an element (`elements`, lower case:
  "lutetium" as a compound would repeat an element fact)."""
  path = package_file("chemicals", "Identifiers",
                      "chemical identifiers pubchem large.tsv")
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      v = line.rstrip("\n").split("\t")
      if len(v) < 9:
        continue
      pubchem, cas, formula, name = v[0], v[1], v[2], v[8]
      if (_COMPOUND_NAME.match(name) and len(name.split()) <= 4
          and name not in elements
          and _CAS.match(cas) and re.fullmatch(r"[A-Za-z0-9]+", formula)):
        rows.append((int(pubchem), name, cas, formula))
  seen = collections.Counter(r[1] for r in rows)
  rows = sorted(r for r in rows if seen[r[1]] == 1)[:MAX_COMPOUNDS]
  for _, name, cas, formula in rows:
    yield Raw("compound_formula", name, formula, "compound", "", "chemicals")
    yield Raw("compound_cas", name, cas, "compound", "", "chemicals")


def language_facts() -> Iterator[Raw]:
  with open(package_file("iso639", "data", "iso-639.json")) as f:
    iso = json.load(f)
  with open(package_file("iso639", "data", "iso-639_macro.json")) as f:
    macro = json.load(f)["individual"]
  src = "iso639-lang"
  for name, codes in sorted(iso["name"].items()):
    n = ascii_name(name)
    if not n or not codes["pt3"]:
      continue
    yield Raw("language_iso639_3", n, codes["pt3"], "language", "", src)
    if codes["pt1"]:
      yield Raw("language_iso639_1", n, codes["pt1"], "language", "", src)
    m = macro.get(codes["pt3"])
    mname = ascii_name(iso["pt3"].get(m, {}).get("name")) if m else None
    if mname:
      yield Raw("language_macrolanguage", n, mname, "language", "", src)


def web_facts() -> Iterator[Raw]:
  src = f"python{sys.version_info.major}.{sys.version_info.minor} stdlib"
  for status in http.HTTPStatus:
    yield Raw("http_status_phrase", str(status.value), status.phrase,
              f"{status.value // 100}xx", "", src)
  # The interpreter's built-in table only (not the machine's mime.types).
  table = mimetypes._types_map_default  # pylint: disable=protected-access
  for ext, mime in sorted(table.items()):
    yield Raw("file_mime_type", ext, mime, mime.split("/")[0], "", src)


def main(argv):
  del argv
  start = time.time()
  token_count = minilm_token_counter()
  raw: List[Raw] = list(element_facts())
  raw += compound_facts({f.subject.lower() for f in raw})
  raw += language_facts()
  raw += web_facts()
  unknown = {f.relation for f in raw} - set(templates.BY_NAME)
  assert not unknown, unknown
  kept, drops = clean(raw, token_count, templates.BY_NAME)
  write_and_report(kept, drops, len(raw), _FACTS_OUT.value, start)


if __name__ == "__main__":
  app.run(main)
