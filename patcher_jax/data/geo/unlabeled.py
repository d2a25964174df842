"""Unlabeled questions from the facts table: memory text the project ships.

The embedded zsRE benchmark uses ~12,600 of the table's ~84,000 facts. The
rest can be asked about without answers, as memory rows that protect
locality (patcher_jax.memory_text) when labeled train records are few.

What the text is, exactly: the input template (a relation's first question
template, the one every benchmark input uses; never a rephrase template,
so the held-out templates stay held out) filled with the subject of a fact
that no split of the benchmark uses, and whose subject no record of any
split (train, val, edit, test) mentions in any relation. So no edit record,
rephrase, test or TrainR input, and no subject the metrics ask about, is in
the text. Relations are mixed as the benchmark's splits are (in proportion
to the square root of their candidate facts).

  texts = unlabeled.unlabeled_questions(n=4000)
"""
import math
import random
from typing import List

from patcher_jax.data.filters import SPLITS
from patcher_jax.data.geo import generate
from patcher_jax.data.geo import templates


def unused_facts(scale: str = "full", seed: int = 0):
  """{relation: [GeoFact]} of the facts the zsRE benchmark (`scale`,
  `seed`) leaves out, without any subject its splits mention."""
  used = generate.geo_facts("zsre", scale, seed)
  used_ids = {(gf.fact.relation, gf.row) for s in SPLITS for gf in used[s]}
  used_subjects = {gf.fact.subject.lower() for s in SPLITS for gf in used[s]}
  out = {}
  for rel, facts in generate.facts_by_relation().items():
    free = [gf for gf in facts if (rel, gf.row) not in used_ids
            and gf.fact.subject.lower() not in used_subjects]
    if free:
      out[rel] = free
  return out


def unlabeled_questions(n: int = 4000, scale: str = "full",
                        seed: int = 0) -> List[str]:
  """`n` questions (fewer if the table runs out) about facts the benchmark
  does not use (module docstring), seeded, distinct.

  Example:
    >>> qs = unlabeled_questions(20, scale="tiny")
    >>> len(qs), qs[0].endswith("?")
    (20, True)
  """
  free = unused_facts(scale, seed)
  sizes = {"text": min(n, sum(len(v) for v in free.values()))}
  weights = {"text": {r: math.sqrt(len(v)) for r, v in free.items()}}
  counts = generate.allocate(sizes, {r: len(v) for r, v in free.items()},
                             weights)["text"]
  out, seen = [], set()
  for rel in sorted(counts):
    facts = list(free[rel])
    random.Random(f"{seed}/unlabeled/{rel}").shuffle(facts)
    template = templates.templates(rel, "zsre")[0]
    taken = 0
    for gf in facts:
      if taken == counts[rel]:
        break
      text = template.format(s=gf.fact.subject)
      if text.lower() in seen:        # two facts of one subject
        continue
      seen.add(text.lower())
      out.append(text)
      taken += 1
  random.Random(f"{seed}/unlabeled/order").shuffle(out)
  return out
