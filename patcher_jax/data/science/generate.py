"""Build a benchmark from a facts table and its templates: seeded, by fact.

The geography generator's method (`patcher_jax/data/geo/generate.py`: split by
fact, sqrt(#facts) relation mix times `edit_weight` in the edit split, FEVER
hard negatives of the same relation and group) for any (facts table,
templates) pair; `science_benchmark` applies it to the science table.

Records ids are "<prefix>:<task>:<relation>:<row>" (+ ":S" / ":R" for claims).
The prefix is not "geo", so the project's readers treat every rephrase as
held-out wording (views.py), as for any benchmark that comes from files: a
base model trains on the inputs only.

Example:
  >>> bench = science_benchmark("zsre", scale="tiny", seed=0)
  >>> len(bench.train), len(bench.edit[0].rephrases)
  (100, 5)
"""
import collections
import os
import random
from typing import Dict, List, Mapping, Sequence, Tuple

from patcher_jax.data.filters import SPLITS
from patcher_jax.data.geo import facts as facts_lib
from patcher_jax.data.geo import generate as geo_generate
from patcher_jax.data.geo.generate import GeoFact, NegativeSampler
from patcher_jax.data.geo.templates import Relation
from patcher_jax.data.records import Benchmark, Record
from patcher_jax.data.science import templates as science_templates

SCIENCE_FACTS = os.path.join(facts_lib.FACTS_DIR, "science.tsv.gz")
# Facts per split. zsRE: 2,400 train questions (the size the other-domain
# check used) and an edit split of unseen facts large enough for >= 1,000
# base-model mistakes. FEVER: two claims a fact.
SIZES: Dict[str, Dict[str, Dict[str, int]]] = {
    "zsre": {
        "full": {"train": 2400, "val": 240, "edit": 1800, "test": 1000},
        "tiny": {"train": 100, "val": 20, "edit": 40, "test": 40},
    },
    "fever": {
        "full": {"train": 1200, "val": 120, "edit": 900, "test": 500},
        "tiny": {"train": 60, "val": 10, "edit": 30, "test": 20},
    },
}


def facts_by_relation(path: str, relations: Mapping[str, Relation]
                      ) -> Dict[str, Tuple[GeoFact, ...]]:
  """The table's facts per relation, each with its row within the relation."""
  out = collections.defaultdict(list)
  for f in facts_lib.read_facts(path):
    out[f.relation].append(GeoFact(f, len(out[f.relation])))
  unknown = set(out) - set(relations)
  if unknown:
    raise ValueError(f"{path}: relations without templates: "
                     f"{sorted(unknown)}")
  return {r: tuple(v) for r, v in out.items()}


def _sentence(text: str) -> str:
  return text[:1].upper() + text[1:]   # "lutetium has ..." -> "Lutetium ..."


def render(gf: GeoFact, relations: Mapping[str, Relation], task: str,
           prefix: str, negative: str = "") -> List[Record]:
  """The record(s) of one fact: a question, or a true and a false claim."""
  rel = relations[gf.fact.relation]
  rid = f"{prefix}:{task}:{gf.fact.relation}:{gf.row}"
  if task == "zsre":
    texts = [_sentence(t.format(s=gf.fact.subject)) for t in rel.questions]
    return [Record(rid, texts[0], (gf.fact.object,), tuple(texts[1:]))]
  out = []
  for obj, label, tag in ((gf.fact.object, "SUPPORTS", "S"),
                          (negative, "REFUTES", "R")):
    texts = [_sentence(t.format(s=gf.fact.subject, o=obj))
             for t in rel.claims]
    out.append(Record(f"{rid}:{tag}", texts[0], (label,), tuple(texts[1:])))
  return out


def facts_benchmark(task: str, path: str, relations: Mapping[str, Relation],
                    sizes: Dict[str, int], seed: int = 0,
                    prefix: str = "facts") -> Benchmark:
  """A benchmark of `task` ("zsre" or "fever") from a facts table.

  Args:
    task: "zsre" (one question a fact) or "fever" (two claims a fact).
    path: a facts table (patcher_jax/data/geo/facts.py format).
    relations: relation name -> Relation (its templates, edit weight).
    sizes: facts per split, {"train": n, "val": n, "edit": n, "test": n}.
    seed: split, negative and record-order seed.
    prefix: the first field of record ids (not "geo").
  Returns:
    A `Benchmark`; records shuffled within each split.
  """
  if task not in ("zsre", "fever"):
    raise ValueError(f"task must be zsre or fever, got {task!r}")
  if prefix == "geo":
    raise ValueError("prefix 'geo' is the geography benchmark's")
  by_rel = facts_by_relation(path, relations)
  split = geo_generate.split_facts(by_rel, sizes, seed, relations)
  sample = NegativeSampler(by_rel) if task == "fever" else None
  splits = {}
  for name in SPLITS:
    records = []
    for gf in split[name]:
      neg = sample(gf, seed) if sample else ""
      records += render(gf, relations, task, prefix, neg)
    random.Random(f"{seed}/{task}/{name}/order").shuffle(records)
    splits[name] = tuple(records)
  return Benchmark(**splits)


def science_benchmark(task: str, scale: str = "full", seed: int = 0
                      ) -> Benchmark:
  """The science benchmark (elements, compounds, languages, web standards)."""
  if task not in SIZES or scale not in SIZES[task]:
    raise ValueError(f"no size for task={task!r} scale={scale!r}")
  return facts_benchmark(task, SCIENCE_FACTS, science_templates.BY_NAME,
                         SIZES[task][scale], seed, prefix="sci")
