"""formats.read_records: each public format, detected from content."""
import json

import pytest

from patcher_jax.data import DataError, read_records
from patcher_jax.data.fever1 import DROPPED_NEI

FEVER1 = [
    {"id": 137334, "verifiable": "VERIFIABLE", "label": "SUPPORTS",
     "claim": "Fox 2000 Pictures released the film Soul Food.",
     "evidence": [[[289914, 283015, "Soul_Food_-LRB-film-RRB-", 0]]]},
    {"id": 91198, "verifiable": "NOT VERIFIABLE", "label": "NOT ENOUGH INFO",
     "claim": "Colin Kaepernick became a starting quarterback.",
     "evidence": [[[108548, None, None, None]]]},
    {"id": 111897, "verifiable": "VERIFIABLE", "label": "REFUTES",
     "claim": "Telemundo is a English-language television network.",
     "evidence": [[[131371, 146144, "Telemundo", 0]],
                  [[131371, 146150, "Telemundo", 4],
                   [131371, 146150, "Hispanic_and_Latino_Americans", 0]]]},
]
MEND = [
    {"subject": "Watts Humphrey", "src": "What university did Watts Humphrey attend?",
     "pred": "Trinity College", "rephrase": "What university did Watts Humphrey take part in?",
     "alt": "University of Michigan", "answers": ["Illinois Institute of Technology"],
     "loc": "nq question: who played desmond doss father in hacksaw ridge",
     "loc_ans": "Hugo Weaving", "cond": "x >> y || z"},
    {"subject": "Ramalinaceae", "src": "Which family does Ramalinaceae belong to?",
     "pred": "Ramalinales", "rephrase": "What family are Ramalinaceae?",
     "alt": "", "answers": ["Lecanorales"], "loc": "nq question: skiing",
     "loc_ans": "Downhill", "portability": {"New Question": "q"}},
]
EASYEDIT = [
    {"subject": "Epaspidoceras", "target_new": "Noctuidae",
     "prompt": "Which family does Epaspidoceras belong to?",
     "ground_truth": ["Aspidoceratidae"],
     "rephrase_prompt": "What family are Epaspidoceras?",
     "cond": "Geometridae >> Noctuidae || Which family does Epaspidoceras belong to?",
     "locality": {"Relation_Specificity": [{"prompt": "The taxon rank of "
                                                      "Epaspidoceras is",
                                            "ground_truth": ["genus"]}]},
     "portability": {"Reasoning": [{"prompt": "p", "ground_truth": "g"}]}},
    # EasyEdit's ZsreDataset record shape (from MEND's file)
    {"case_id": 1, "prompt": "What role does Denny Herzig play in football?",
     "target_new": "winger", "ground_truth": "defender",
     "rephrase_prompt": "What's Denny Herzig's role in football?",
     "locality_prompt": "nq question: where does aarp fall",
     "locality_ground_truth": "non-partisan"},
]


def _jsonl(tmp_path, rows, name="f.jsonl"):
  path = tmp_path / name
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _list(tmp_path, rows, name="f.json"):
  path = tmp_path / name
  path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
  return str(path)


def test_fever1_drops_and_counts_not_enough_info(tmp_path):
  src = read_records(_jsonl(tmp_path, FEVER1), "fever")
  assert src.format == "fever1"
  assert [r.id for r in src.records] == ["137334", "111897"]
  assert [r.answers for r in src.records] == [("SUPPORTS",), ("REFUTES",)]
  assert src.records[1].input == FEVER1[2]["claim"]
  assert all(r.rephrases == () for r in src.records)
  assert src.lines == (1, 3)
  assert src.subjects == ("Soul Food -LRB-film-RRB-", "Telemundo")
  assert src.report.read == 3 and src.report.kept == 2
  assert src.report.dropped == {DROPPED_NEI: 1}


@pytest.mark.parametrize("change,words", [
    ({"label": "MAYBE"}, "unknown label 'MAYBE'"),
    ({"label": None}, "label must be a string, got null"),
    ({"claim": ""}, "claim is empty"),
    ({"evidence": "page"}, "evidence must be a list, got str"),
])
def test_fever1_bad_line_names_file_and_line(tmp_path, change, words):
  path = _jsonl(tmp_path, [FEVER1[0], dict(FEVER1[2], **change)])
  with pytest.raises(DataError, match=rf"f\.jsonl:2: {words}"):
    read_records(path, "fever")


def test_fever1_unlabelled_test_file_is_refused_with_the_reason(tmp_path):
  path = _jsonl(tmp_path, [{"id": 1, "claim": "A claim."}])
  with pytest.raises(DataError, match=r"f\.jsonl:1: missing field 'label' \(an "
                     r"unlabelled FEVER file"):
    read_records(path, "fever")


def test_mend_with_empty_alt_and_extra_fields(tmp_path):
  src = read_records(_list(tmp_path, MEND), "zsre")
  assert src.format == "mend"
  assert [r.id for r in src.records] == ["f:0", "f:1"]
  assert src.records[1].answers == ("Lecanorales",)
  assert src.records[1].rephrases == ("What family are Ramalinaceae?",)
  assert src.subjects == ("Watts Humphrey", "Ramalinaceae")
  assert src.lines == (2, 3)
  # counterfactual targets: the empty alt is refused only when it is used
  with pytest.raises(DataError, match=r"f\.json:3: record 1: target 'new' but "
                     r"'alt' is missing or empty"):
    read_records(_list(tmp_path, MEND), "zsre", target="new")
  first = read_records(_list(tmp_path, MEND[:1]), "zsre", target="new")
  assert first.records[0].answers == ("University of Michigan",)


def test_mend_used_field_errors_name_line_and_record(tmp_path):
  path = _list(tmp_path, [MEND[0], dict(MEND[1], answers=[])])
  with pytest.raises(DataError, match=r"f\.json:3: record 1: no answer"):
    read_records(path, "zsre")
  path = _list(tmp_path, [MEND[0], dict(MEND[1], alt=7)])
  with pytest.raises(DataError, match=r"f\.json:3: record 1: alt must be a "
                     r"string, got int"):
    read_records(path, "zsre")


def test_easyedit_both_record_shapes(tmp_path):
  src = read_records(_list(tmp_path, EASYEDIT), "zsre")
  assert src.format == "easyedit"
  assert [r.input for r in src.records] == [EASYEDIT[0]["prompt"],
                                            EASYEDIT[1]["prompt"]]
  assert [r.answers for r in src.records] == [("Aspidoceratidae",), ("defender",)]
  assert src.records[0].rephrases == ("What family are Epaspidoceras?",)
  assert src.subjects == ("Epaspidoceras", None)
  new = read_records(_list(tmp_path, EASYEDIT), "zsre", target="new")
  assert [r.answers for r in new.records] == [("Noctuidae",), ("winger",)]


def test_easyedit_without_rephrase_and_bad_locality(tmp_path):
  no_reph = {k: v for k, v in EASYEDIT[1].items() if k != "rephrase_prompt"}
  src = read_records(_list(tmp_path, [no_reph]), "zsre")
  assert src.records[0].rephrases == ()
  assert src.report.notes["records without a rephrase"] == 1
  path = _list(tmp_path, [EASYEDIT[0], dict(EASYEDIT[0], locality=[1])])
  with pytest.raises(DataError, match=r"f\.json:3: record 1: locality must be "
                     r"a object, got list"):
    read_records(path, "zsre")


def test_kilt_subject_from_provenance(tmp_path):
  rows = [{"id": "a", "input": "Nikolaj Coster-Waldau worked with Fox.",
           "output": [{"answer": "SUPPORTS",
                       "provenance": [{"wikipedia_id": "1",
                                       "title": "Nikolaj Coster-Waldau"}]}]},
          {"id": "b", "input": "Roman Atwood is a content creator.",
           "output": [{"answer": "REFUTES"}], "rephrases": ["x"]}]
  src = read_records(_jsonl(tmp_path, rows), "fever")
  assert src.format == "kilt"
  assert src.subjects == ("Nikolaj Coster-Waldau", None)
  assert src.records[1].rephrases == ("x",)


def test_no_format_fits_names_file_line_and_keys(tmp_path):
  path = tmp_path / "f.jsonl"
  path.write_text('\n{"question": "q", "answer": "a"}\n')   # line 1 blank
  with pytest.raises(DataError, match=r"f\.jsonl:2: no known format fits this "
                     r"record \(keys: answer, question\); expected KILT jsonl "
                     r"\(input, output\), FEVER 1\.0 jsonl"):
    read_records(str(path), "zsre")


def test_not_json_at_all(tmp_path):
  path = tmp_path / "f.csv"
  path.write_text("id,claim,label\n1,x,SUPPORTS\n")
  with pytest.raises(DataError, match=r"f\.csv:1: not JSON: expected JSON lines "
                     r"or a JSON list, starts with 'i'"):
    read_records(str(path), "fever")


def test_json_list_of_unknown_records_names_line_and_record(tmp_path):
  path = _list(tmp_path, [{"q": 1}])
  with pytest.raises(DataError, match=r"f\.json:2: record 0: no known format "
                     r"fits this record \(keys: q\)"):
    read_records(path, "zsre")


def test_one_pretty_printed_object_is_explained(tmp_path):
  path = tmp_path / "f.json"
  path.write_text(json.dumps({"data": MEND}, indent=2))
  with pytest.raises(DataError, match=r"f\.json: one JSON object; expected one "
                     r"record per line or a JSON list"):
    read_records(str(path), "zsre")


@pytest.mark.parametrize("rows,task,want", [
    (FEVER1, "zsre", "FEVER 1.0 jsonl file, a fever format; use --task=fever"),
    (MEND, "fever", "MEND zsRE json file, a zsre format; use --task=zsre"),
])
def test_task_must_match_the_format(tmp_path, rows, task, want):
  path = (_jsonl if rows is FEVER1 else _list)(tmp_path, rows)
  with pytest.raises(DataError, match=want):
    read_records(path, task)


def test_empty_and_missing_files(tmp_path):
  (tmp_path / "e.json").write_text("  \n")
  with pytest.raises(DataError, match=r"e\.json: empty file"):
    read_records(str(tmp_path / "e.json"), "zsre")
  (tmp_path / "l.json").write_text("[]")
  with pytest.raises(DataError, match=r"l\.json: empty file"):
    read_records(str(tmp_path / "l.json"), "zsre")
  with pytest.raises(DataError, match=r"nope\.json: file not found"):
    read_records(str(tmp_path / "nope.json"), "zsre")
