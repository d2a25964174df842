"""Subject negatives: the edit's subject in other relations' templates."""
import pytest

from patcher_jax.data.geo import negatives
from patcher_jax.data.geo import templates
from patcher_jax.data.records import Record


def _record(relation, subject, template=0, prefix="geo:zsre:"):
  text = templates.BY_NAME[relation].questions[template].format(s=subject)
  return Record(f"{prefix}{relation}:3", text, ("x",))


@pytest.mark.parametrize("relation", [r.name for r in templates.RELATIONS])
def test_subject_read_back_from_every_template(relation):
  n = len(templates.BY_NAME[relation].questions)
  for t in range(n):
    got = negatives.subject_of(_record(relation, "Santa Cruz de la Sierra", t))
    assert got == (relation, "Santa Cruz de la Sierra")


def test_no_subject_without_a_geo_id_or_a_matching_input():
  assert negatives.subject_of(
      _record("country_capital", "Peru", prefix="user:")) is None
  assert negatives.subject_of(
      _record("country_capital", "Peru", prefix="geo:fever:")) is None
  # the id names a relation whose templates the input does not follow
  assert negatives.subject_of(Record("geo:zsre:country_capital:1",
                                     "Who wrote Hamlet?", ("x",))) is None
  assert negatives.subject_of(Record("geo:zsre:no_such:1",
                                     "What is the capital of Peru?",
                                     ("x",))) is None
  assert negatives.negative_questions(
      _record("country_capital", "Peru", prefix="user:")) == []


def test_other_relations_of_the_same_kind_only():
  qs = negatives.negative_questions(_record("country_capital", "Peru"))
  others = [r for r in templates.RELATIONS
            if r.name.startswith("country_") and r.name != "country_capital"]
  assert qs == [r.questions[0].format(s="Peru") for r in others]
  city = negatives.negative_questions(_record("city_admin1", "Lyon"))
  assert city == ["Which country is the city of Lyon in?"]


def test_per_relation_counts_and_never_a_held_out_template():
  rec = _record("state_capital", "Ohio", template=2)
  assert negatives.negative_questions(rec, per_relation=0) == []
  two = negatives.negative_questions(rec, per_relation=2)
  assert len(two) == 2 * 2          # state_abbreviation, state_statehood_year
  many = negatives.negative_questions(rec, per_relation=99)
  for rel in ("state_abbreviation", "state_statehood_year"):
    qs = templates.BY_NAME[rel].questions
    held = {t.format(s="Ohio") for t in qs[-2:]}
    assert not held & set(many)
    assert qs[0].format(s="Ohio") in many
  assert len(many) == 2 * 4
