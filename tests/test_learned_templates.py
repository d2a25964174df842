"""Templates learned from a benchmark's questions: subjects, related
templates, negative questions; the seq2seq runtime's fallback to them."""
import pytest

from patcher_jax.data import learned_templates as lt
from patcher_jax.data.records import Record

FORMULA = "What is the molecular formula of {}?"
CAS = "What is the CAS registry number of {}?"
ISO = "What is the ISO code of the {} language?"


def _questions(n_shared=30, n_iso=30):
  qs = [FORMULA.format(f"c{i}") for i in range(n_shared)]
  qs += [CAS.format(f"c{i}") for i in range(n_shared)]
  qs += [ISO.format(f"lang{i}") for i in range(n_iso)]
  return qs


@pytest.mark.parametrize("question,subject,negatives", [
    # the most specific template wins over "What is the {s}?"
    (FORMULA.format("bisacodyl"), "bisacodyl", [CAS.format("bisacodyl")]),
    (CAS.format("iso butyl amine"), "iso butyl amine",
     [FORMULA.format("iso butyl amine")]),
    # a template with no related one: a subject, no negatives
    (ISO.format("Pitta Pitta"), "Pitta Pitta", []),
    # no template
    ("Who wrote Hamlet?", None, []),
    # spaces are normalised; other end punctuation is another template
    ("What is the  molecular formula of  c3?", "c3", [CAS.format("c3")]),
    ("What is the molecular formula of c3.", None, []),
])
def test_subjects_and_negatives(question, subject, negatives):
  index = lt.learn(_questions())
  found = lt.subject_of(index, question)
  assert (found[1] if found else None) == subject
  assert lt.negative_questions(index, question) == negatives


@pytest.mark.parametrize("n_shared,min_shared,related", [
    (30, 3, True), (2, 3, False), (2, 2, True)])
def test_relatedness_needs_shared_subjects(n_shared, min_shared, related):
  # the CAS template asked of 30 subjects, only n_shared of them also the
  # formula way
  qs = [CAS.format(f"c{i}") for i in range(30)]
  qs += [FORMULA.format(f"c{i}") for i in range(n_shared)]
  qs += [FORMULA.format(f"d{i}") for i in range(30)]
  index = lt.learn(qs, min_support=10, min_shared=min_shared)
  assert bool(lt.negative_questions(index, CAS.format("x"))) == related


def test_no_questions_no_templates():
  index = lt.learn([])
  assert index.templates == () and lt.negative_questions(index, "Hi?") == []


def test_rare_wordings_are_no_templates():
  # 5 questions a wording: only "What is the {s}?" (15) has the support
  index = lt.learn(_questions(n_shared=5, n_iso=5), min_support=10)
  assert lt.subject_of(index, FORMULA.format("x")) == (
      ("What is the ", "?"), "molecular formula of x")


@pytest.fixture(scope="module")
def runtime():
  from helpers import tiny
  return tiny.seq2seq_runtime(num_stream=4)


def test_runtime_falls_back_to_learned_templates(runtime):
  from patcher_jax.data.geo import negatives as geo
  geo_record = runtime.stream[0]
  assert runtime._negative_questions(0, 1) == geo.negative_questions(
      geo_record, 1)
  saved = runtime.stream[1], runtime._templates
  try:
    runtime.stream[1] = Record("q1", FORMULA.format("c7"), ("C2H6O",))
    runtime._templates = lt.learn(_questions())
    assert runtime._negative_questions(1, 1) == []     # off by default
    runtime.learned_negatives = True
    assert runtime._negative_questions(1, 1) == [CAS.format("c7")]
    rows, questions = runtime.negative_rows(1, 1)
    assert len(rows) == len(questions) > 0
    assert set(questions) == {CAS.format("c7")}
    assert runtime._negative_questions(1, 0) == []
    # never an evaluation question, the input or its rephrases
    runtime._evaluated.add(CAS.format("c7"))
    assert runtime._negative_questions(1, 1) == []
    runtime._evaluated.discard(CAS.format("c7"))
    runtime.stream[1] = Record("q1", FORMULA.format("c7"), ("C2H6O",),
                               (CAS.format("c7"),))
    assert runtime._negative_questions(1, 1) == []
  finally:
    runtime.stream[1], runtime._templates = saved
    runtime.learned_negatives = False
