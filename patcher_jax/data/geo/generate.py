"""Both tasks from the facts table: seeded, split by fact, in a second or two.

- Split by fact: each relation's facts are shuffled (seeded) and cut into
  disjoint edit / val / test / train slices, so no edit fact is ever in train
  under another template. A task's splits draw from the same shuffled order.
- Relation mix: a split's facts are spread over relations in proportion to
  sqrt(#facts of the relation) (cities do not swamp capitals), times the
  relation's `edit_weight` in the edit split; relations that run out are
  capped and the rest share their quota.
- zsRE: one record per fact, answer = the object. FEVER: two records per fact,
  the true claim (SUPPORTS) and the same claim with a hard negative (REFUTES):
  the object of another fact of the same relation and group (same continent,
  same country, ...), drawn in proportion to how often it is an object, never
  the true object, one of its `also` objects, or any object the subject has in
  another relation of the table.
- Record ids: "geo:<task>:<relation>:<row>" (+ ":S" / ":R" for FEVER), where
  row is the fact's index among the relation's rows of the table. Records are
  shuffled within a split (the edit stream mixes relations).
"""
import collections
import functools
import math
import random
from typing import Dict, List, NamedTuple, Sequence, Tuple

from patcher_jax.data.benchmark_dir import BenchmarkReport
from patcher_jax.data.filters import SPLITS
from patcher_jax.data.geo import facts as facts_lib
from patcher_jax.data.geo import templates
from patcher_jax.data.mend import MendItem
from patcher_jax.data.records import Benchmark, Record
from patcher_jax.data.report import LoadReport

# Facts per split. FEVER has two claims per fact. Sized so that the trained
# base models still make >= 1000 mistakes in the "full" edit split: QA gets
# ~40% of unseen facts right (3,000 edit facts), fact checking ~75-80% of
# claims (3,000 facts = 6,000 claims); train stays what trains in the time
# budget; test stays a few thousand records so evaluation is quick.
SIZES: Dict[str, Dict[str, Dict[str, int]]] = {
    "zsre": {
        "full": {"train": 6000, "val": 600, "edit": 3000, "test": 3000},
        "small": {"train": 1500, "val": 150, "edit": 750, "test": 750},
        "tiny": {"train": 100, "val": 20, "edit": 40, "test": 40},
    },
    "fever": {
        "full": {"train": 6000, "val": 500, "edit": 3000, "test": 1500},
        "small": {"train": 1500, "val": 125, "edit": 750, "test": 375},
        "tiny": {"train": 60, "val": 10, "edit": 30, "test": 20},
    },
}
# The order in which splits take their slices of a relation's shuffled facts.
SLICE_ORDER = ("edit", "val", "test", "train")


class GeoFact(NamedTuple):
  """A fact of the table with its row index within its relation."""
  fact: facts_lib.Fact
  row: int


def facts_by_relation(path: str = facts_lib.DEFAULT_PATH
                      ) -> Dict[str, Tuple[GeoFact, ...]]:
  out = collections.defaultdict(list)
  for f in facts_lib.read_facts(path):
    out[f.relation].append(GeoFact(f, len(out[f.relation])))
  unknown = set(out) - set(templates.BY_NAME)
  if unknown:
    raise ValueError(f"relations without templates: {sorted(unknown)}")
  return {r: tuple(v) for r, v in out.items()}


def allocate(sizes: Dict[str, int], available: Dict[str, int],
             weights: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, int]]:
  """Facts per split and relation: by weight, capped by availability.

  Each split spreads its size over relations by `weights[split]`. A relation
  asked for more than it has in total is scaled down in every split alike
  (so a scarce relation is still in train), and the others share the rest.
  Largest remainders round. Returns {split: {relation: count}}.
  """
  fixed: Dict[str, Dict[str, float]] = {}           # relation -> split -> n
  while True:
    want = {}
    for split, size in sizes.items():
      free = [r for r in available if r not in fixed and weights[split][r] > 0]
      left = size - sum(fixed[r][split] for r in fixed)
      wsum = sum(weights[split][r] for r in free)
      want[split] = {r: left * weights[split][r] / wsum if wsum else 0.0
                     for r in free}
    over = [r for r in available if r not in fixed and
            sum(want[s].get(r, 0.0) for s in sizes) > available[r]]
    if not over:
      break
    for r in over:
      total = sum(want[s].get(r, 0.0) for s in sizes)
      fixed[r] = {s: want[s].get(r, 0.0) * available[r] / total for s in sizes}
  counts = {}
  used = collections.Counter()
  for split, size in sizes.items():
    exact = {r: fixed[r][split] for r in fixed}
    exact.update(want[split])
    floor = {r: int(x) for r, x in exact.items()}
    used.update(floor)
    counts[split] = floor
  for split, size in sizes.items():
    floor, exact = counts[split], {**{r: fixed[r][split] for r in fixed},
                                   **want[split]}
    extra = size - sum(floor.values())
    for r in sorted(exact, key=lambda r: (-(exact[r] - floor[r]), r)):
      if extra <= 0:
        break
      if used[r] < available[r]:
        floor[r] += 1
        used[r] += 1
        extra -= 1
    if extra:
      raise ValueError(f"not enough facts for {size} in {split}")
    counts[split] = {r: n for r, n in floor.items() if n}
  return counts


def split_facts(by_rel: Dict[str, Sequence[GeoFact]], sizes: Dict[str, int],
                seed: int, relations=None) -> Dict[str, List[GeoFact]]:
  """Disjoint fact sets per split (see the module docstring); `relations`
  (name -> Relation, default: the geography templates) give the edit
  weights."""
  relations = templates.BY_NAME if relations is None else relations
  order = {}
  for rel in sorted(by_rel):
    facts = list(by_rel[rel])
    random.Random(f"{seed}/facts/{rel}").shuffle(facts)
    order[rel] = facts
  weights = {split: {rel: math.sqrt(len(order[rel])) * (
      relations[rel].edit_weight if split == "edit" else 1.0)
                     for rel in order} for split in sizes}
  counts = allocate(sizes, {r: len(v) for r, v in order.items()}, weights)
  taken = collections.Counter()
  out = {}
  for split in SLICE_ORDER:
    chosen = []
    for rel in sorted(counts[split]):
      n = counts[split][rel]
      chosen += order[rel][taken[rel]:taken[rel] + n]
      taken[rel] += n
    out[split] = chosen
  return out


class NegativeSampler:
  """Hard negatives: another object of the same relation and group."""

  def __init__(self, by_rel: Dict[str, Sequence[GeoFact]]):
    self._pool = collections.defaultdict(list)      # (rel, group) -> objects
    self._relation_pool = collections.defaultdict(list)
    self._true = collections.defaultdict(set)       # subject -> all objects
    for rel, facts in by_rel.items():
      for gf in facts:
        f = gf.fact
        self._pool[(rel, f.group)].append(f.object)
        self._relation_pool[rel].append(f.object)
        self._true[f.subject.lower()].add(f.object)

  def excluded(self, f: facts_lib.Fact) -> set:
    return {f.object, *f.also_true(), *self._true[f.subject.lower()]}

  def __call__(self, gf: GeoFact, seed: int) -> str:
    f = gf.fact
    bad = self.excluded(f)
    rng = random.Random(f"{seed}/negative/{f.relation}/{gf.row}")
    for pool in (self._pool[(f.relation, f.group)],
                 self._relation_pool[f.relation]):
      # Frequency-weighted draw, so true and false claims share one object
      # distribution; fall back to the distinct candidates if draws keep
      # hitting true objects.
      for _ in range(20):
        o = pool[rng.randrange(len(pool))]
        if o not in bad:
          return o
      candidates = sorted(set(pool) - bad)
      if candidates:
        return candidates[rng.randrange(len(candidates))]
    raise ValueError(f"no negative object for {f}")


def record_id(task: str, gf: GeoFact) -> str:
  return f"geo:{task}:{gf.fact.relation}:{gf.row}"


def zsre_record(gf: GeoFact) -> Record:
  qs = templates.templates(gf.fact.relation, "zsre")
  texts = [t.format(s=gf.fact.subject) for t in qs]
  return Record(record_id("zsre", gf), texts[0], (gf.fact.object,),
                tuple(texts[1:]))


def fever_records(gf: GeoFact, negative: str) -> Tuple[Record, Record]:
  cs = templates.templates(gf.fact.relation, "fever")
  out = []
  for obj, label, tag in ((gf.fact.object, "SUPPORTS", "S"),
                          (negative, "REFUTES", "R")):
    texts = [t.format(s=gf.fact.subject, o=obj) for t in cs]
    out.append(Record(f"{record_id('fever', gf)}:{tag}", texts[0], (label,),
                      tuple(texts[1:])))
  return out[0], out[1]


class GeoSplits(NamedTuple):
  facts: Dict[str, List[GeoFact]]
  negatives: Dict[str, str]          # "<relation>:<row>" -> hard negative


@functools.lru_cache(maxsize=8)
def _geo(task: str, scale: str, seed: int,
         path: str = facts_lib.DEFAULT_PATH) -> Tuple[Benchmark, GeoSplits]:
  if task not in SIZES:
    raise ValueError(f"task must be one of {tuple(SIZES)}, got {task!r}")
  if scale not in SIZES[task]:
    raise ValueError(f"scale must be one of {tuple(SIZES[task])}, got {scale!r}")
  by_rel = facts_by_relation(path)
  split = split_facts(by_rel, SIZES[task][scale], seed)
  sample = NegativeSampler(by_rel)
  negatives = {}
  splits = {}
  for name in SPLITS:
    records = []
    for gf in split[name]:
      neg = sample(gf, seed)
      negatives[f"{gf.fact.relation}:{gf.row}"] = neg
      if task == "zsre":
        records.append(zsre_record(gf))
      else:
        records.extend(fever_records(gf, neg))
    random.Random(f"{seed}/{task}/{name}/order").shuffle(records)
    splits[name] = tuple(records)
  return Benchmark(**splits), GeoSplits(split, negatives)


def geo_benchmark(task: str, scale: str = "full", seed: int = 0) -> Benchmark:
  """The embedded benchmark of `task` at `scale` (cached per process)."""
  return _geo(task, scale, seed)[0]


def geo_facts(task: str, scale: str = "full", seed: int = 0
              ) -> Dict[str, List[GeoFact]]:
  """The facts behind each split (for tests and statistics)."""
  return _geo(task, scale, seed)[1].facts


def split_stats(task: str, scale: str = "full", seed: int = 0
                ) -> Dict[str, Dict[str, int]]:
  """Facts, records and relations per split."""
  bench, geo = _geo(task, scale, seed)
  return {s: {"facts": len(geo.facts[s]), "records": len(getattr(bench, s)),
              "relations": len({gf.fact.relation for gf in geo.facts[s]})}
          for s in SPLITS}


def geo_benchmark_and_report(task: str, scale: str = "full", seed: int = 0
                             ) -> Tuple[Benchmark, BenchmarkReport]:
  bench = geo_benchmark(task, scale, seed)
  stats = split_stats(task, scale, seed)
  reports = {
      s: LoadReport(source=f"geo/{task}/{scale}/{s}", read=n["records"],
                    kept=n["records"], dropped={},
                    notes={"facts": n["facts"], "relations": n["relations"]})
      for s, n in stats.items()}
  return bench, BenchmarkReport(task=task, source=f"embedded geography "
                                f"(scale={scale}, seed={seed})", splits=reports)


def geo_mend_items(scale: str = "full", seed: int = 0, split: str = "edit"
                   ) -> Tuple[MendItem, ...]:
  """A zsRE split in MEND's shape: `alt` is the fact's hard negative (a
  counterfactual target), `rephrase` the first held-out wording, `loc` /
  `loc_ans` an unrelated train question and its answer."""
  from patcher_jax.data.views import held_out_rephrases
  bench, geo = _geo("zsre", scale, seed)
  rng = random.Random(f"{seed}/mend/{split}")
  by_id = {record_id("zsre", gf): gf for gf in geo.facts[split]}
  items = []
  for rec in getattr(bench, split):
    gf = by_id[rec.id]
    loc = bench.train[rng.randrange(len(bench.train))]
    rec = rec._replace(rephrases=held_out_rephrases(rec))
    items.append(MendItem(rec, geo.negatives[f"{gf.fact.relation}:{gf.row}"],
                          loc.input, loc.answers[0]))
  return tuple(items)
