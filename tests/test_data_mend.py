"""MEND-format zsRE json."""
import json
import os

import pytest

from patcher_jax.data import DataError, read_mend_json, write_mend_json

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
GOOD = {"src": "Q?", "answers": ["A"], "rephrase": "Q again?", "alt": "B",
        "loc": "nq question: x", "loc_ans": "y"}


def test_reads_mend_fixture():
  mf = read_mend_json(os.path.join(FIXTURES, "zsre_mend_eval.json"))
  rec = mf.items[0].record
  assert rec.id == "zsre_mend_eval:0"
  assert rec.input == "What university did Watts Humphrey attend?"
  assert rec.answers == ("Illinois Institute of Technology",)
  assert rec.rephrases == ("What university did Watts Humphrey take part in?",)
  assert mf.items[0].loc_ans == "Hugo Weaving"
  assert mf.records("alt")[1].answers == ("Lamiinae",)
  assert mf.records()[1].answers == ("Lecanorales",)


def test_round_trip(tmp_path):
  mf = read_mend_json(os.path.join(FIXTURES, "zsre_mend_eval.json"))
  path = str(tmp_path / "out.json")
  write_mend_json(mf.items, path)
  again = read_mend_json(path)
  assert [i._replace(record=i.record._replace(id="")) for i in again.items] == [
      i._replace(record=i.record._replace(id="")) for i in mf.items]


def _dump(tmp_path, objs):
  path = tmp_path / "m.json"
  path.write_text("[\n" + ",\n".join(json.dumps(o) for o in objs) + "\n]\n")
  return str(path)


@pytest.mark.parametrize("change,words", [
    ({"src": None}, "src must be a string"),
    ({"answers": "A"}, "answers must be a list, got str"),
    ({"answers": []}, "no answer"),
    ({"answers": [""]}, "answers[0] is empty"),
    ({"rephrase": ["x"]}, "rephrase must be a string, got list"),
    ({"loc_ans": 5}, "loc_ans must be a string, got int"),
])
def test_bad_record_names_index(tmp_path, change, words):
  bad = dict(GOOD, **change)
  path = _dump(tmp_path, [GOOD, bad])
  with pytest.raises(DataError) as e:
    read_mend_json(path)
  assert e.value.record == 1 and e.value.line == 3
  assert str(e.value).startswith(f"{path}:3: record 1: ")
  assert words in str(e.value)


def test_missing_field(tmp_path):
  bad = {k: v for k, v in GOOD.items() if k != "answers"}
  with pytest.raises(DataError, match=r"m\.json:2: record 0: missing field 'answers'"):
    read_mend_json(_dump(tmp_path, [bad]))


def test_missing_or_empty_rephrase_is_a_record_without_rephrases(tmp_path):
  no_key = {k: v for k, v in GOOD.items() if k != "rephrase"}
  mf = read_mend_json(_dump(tmp_path, [no_key, dict(GOOD, rephrase=" "), GOOD]))
  assert [i.record.rephrases for i in mf.items] == [(), (), ("Q again?",)]
  assert mf.report.notes["records without a rephrase"] == 2


def test_empty_alt_is_not_an_error(tmp_path):
  # The published zsre_mend_eval.json / train.json hold records with "alt": "".
  mf = read_mend_json(_dump(tmp_path, [GOOD, dict(GOOD, alt="", loc="")]))
  assert mf.items[1].alt is None and mf.items[1].loc is None
  assert mf.items[1].record.answers == ("A",)
  assert mf.report.notes["records without 'alt' (or empty)"] == 1


def test_missing_alt_is_counted_and_alt_target_refused(tmp_path):
  mf = read_mend_json(_dump(tmp_path, [{k: v for k, v in GOOD.items() if k != "alt"}]))
  assert mf.report.notes["records without 'alt' (or empty)"] == 1
  with pytest.raises(DataError, match="record 0: target='alt'"):
    mf.records("alt")


@pytest.mark.parametrize("data,words,line", [
    (b"", "empty file", None),
    (b"[]", "empty file", None),
    (b'{"src": "x"}', "expected a JSON list", None),
    (b'[\n{"src": "x",}\n]', "not JSON", 2),
    (b'[\n{"src": "\xff"}]', "invalid UTF-8", 2),
])
def test_bad_file(tmp_path, data, words, line):
  path = tmp_path / "m.json"
  path.write_bytes(data)
  with pytest.raises(DataError, match=words) as e:
    read_mend_json(str(path))
  assert e.value.line == line
  assert str(path) in str(e.value)
