"""KILT / Transformer-Patcher jsonl: good files load, every bad input is named."""
import json
import os

import pytest

from patcher_jax.data import DataError, Record, read_kilt_jsonl, write_kilt_jsonl
from patcher_jax.data.kilt import parse_lines

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")


def _line(**fields):
  obj = {"id": "1", "input": "Paris is in France.",
         "output": [{"answer": "SUPPORTS"}], "rephrases": ["France has Paris."]}
  obj.update(fields)
  return {k: v for k, v in obj.items() if v is not _DROP}


_DROP = object()


def _write(tmp_path, lines, name="bad.jsonl"):
  path = tmp_path / name
  data = b"".join((l if isinstance(l, bytes) else json.dumps(l).encode()) + b"\n"
                  for l in lines)
  path.write_bytes(data)
  return str(path)


def test_reads_fever_fixture():
  kf = read_kilt_jsonl(os.path.join(FIXTURES, "fever", "train.jsonl"), "fever")
  assert [r.id for r in kf.records] == ["75397", "150448", "214861", "156709"]
  assert kf.records[0] == Record(
      "75397", "Nikolaj Coster-Waldau worked with the Fox Broadcasting Company.",
      ("SUPPORTS",),
      ("Nikolaj Coster-Waldau collaborated with the Fox Broadcasting Company.",))
  assert kf.records[2].answers == ("SUPPORTS",)   # repeated label merged
  assert kf.records[2].rephrases == ()            # no rephrases field
  assert kf.lines == (1, 2, 3, 4)
  assert kf.report.notes["repeated FEVER labels merged"] == 1
  assert kf.report.notes["records without a 'rephrases' field"] == 1


def test_reads_transformer_patcher_zsre_strings_without_ids():
  kf = read_kilt_jsonl(os.path.join(FIXTURES, "zsre", "train.jsonl"), "zsre")
  assert kf.records[0].id == "train:1"
  assert kf.records[0].answers == ("Albrecht Dürer",)
  assert kf.records[1].answers == ("Czech Republic", "Czechia")
  assert kf.report.notes["ids synthesized (no 'id' field)"] == 3


def test_provenance_only_entries_are_skipped_and_counted():
  kf = read_kilt_jsonl(os.path.join(FIXTURES, "zsre", "test.jsonl"), "zsre")
  assert kf.records[0].answers == ("ABA League",)
  assert kf.report.notes["output entries without 'answer' skipped"] == 1


def test_filtered_rephrases_are_used_when_rephrases_are_absent():
  kf = read_kilt_jsonl(os.path.join(FIXTURES, "fever", "edit.jsonl"), "fever")
  assert kf.records[2].rephrases == (
      "TD Garden is where the Boston Celtics play at home.",)


def test_blank_lines_bom_and_crlf_are_tolerated_and_counted(tmp_path):
  path = tmp_path / "ok.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_line()).encode() + b"\r\n\n"
                   + json.dumps(_line(id="2")).encode() + b"\r\n")
  kf = read_kilt_jsonl(str(path), "fever")
  assert [r.id for r in kf.records] == ["1", "2"]
  assert kf.lines == (1, 3)
  assert kf.report.notes == {"blank lines skipped": 1}


def test_integer_ids_become_strings(tmp_path):
  kf = read_kilt_jsonl(_write(tmp_path, [_line(id=7)]), "fever")
  assert kf.records[0].id == "7"


def test_write_then_read_round_trips(tmp_path):
  recs = (Record("a", "Q1?", ("x",), ("R1?", "R2?")),
          Record("b", "Q2 ü?", ("y",), ()))
  path = str(tmp_path / "out.jsonl")
  assert write_kilt_jsonl(recs, path) == 2
  assert read_kilt_jsonl(path, "zsre").records == recs


BAD = [
    # (lines, task, line number, words the message must contain)
    ([b"{not json"], "fever", 1, "not JSON"),
    ([_line(), b"\xff\xfe{}"], "fever", 2, "invalid UTF-8"),
    ([_line(), _line(id="2"), b"[1, 2]"], "fever", 3, "expected a JSON object, got list"),
    ([_line(input=_DROP)], "fever", 1, "missing field 'input'"),
    ([_line(output=_DROP)], "fever", 1, "missing field 'output'"),
    ([_line(input=3)], "fever", 1, "input must be a string, got int"),
    ([_line(input="  ")], "fever", 1, "input is empty"),
    ([_line(id=None)], "fever", 1, "id must be a string or an integer, got null"),
    ([_line(output={"answer": "SUPPORTS"})], "fever", 1, "output must be a list, got object"),
    ([_line(output=[])], "fever", 1, "no answer"),
    ([_line(output=[{"provenance": []}])], "fever", 1, "no answer"),
    ([_line(output=[{"answer": ""}])], "zsre", 1, "output[0].answer is empty"),
    ([_line(output=[""])], "zsre", 1, "output[0] is empty"),
    ([_line(output=[{"answer": ["x"]}])], "zsre", 1, "output[0].answer must be a string, got list"),
    ([_line(output=[3])], "zsre", 1, "output[0] must be an object or a string, got int"),
    ([_line(output=[{"answer": "NOT ENOUGH INFO"}])], "fever", 1, "unknown label 'NOT ENOUGH INFO'"),
    ([_line(output=[{"answer": "supports"}])], "fever", 1, "unknown label 'supports'"),
    ([_line(output=[{"answer": "SUPPORTS"}, {"answer": "REFUTES"}])], "fever", 1, "conflicting labels"),
    ([_line(rephrases="France has Paris.")], "fever", 1, "rephrases must be a list, got str"),
    ([_line(rephrases=["ok", ""])], "fever", 1, "rephrases[1] is empty"),
    ([_line(rephrases=["ok", None])], "fever", 1, "rephrases[1] must be a string, got null"),
    ([_line(filtered_rephrases=3, rephrases=_DROP)], "fever", 1, "filtered_rephrases must be a list"),
    ([_line(), _line(id="x"), _line()], "fever", 3, "duplicate id '1' (first on line 1)"),
]


@pytest.mark.parametrize("lines,task,line,words", BAD,
                         ids=[b[3].split("(")[0].strip() for b in BAD])
def test_bad_input_names_file_line_and_problem(tmp_path, lines, task, line, words):
  path = _write(tmp_path, lines)
  with pytest.raises(DataError) as e:
    read_kilt_jsonl(path, task)
  assert e.value.line == line
  assert str(e.value).startswith(f"{path}:{line}: ")
  assert words in str(e.value)


@pytest.mark.parametrize("data", [b"", b"\n", b"  \n\n"])
def test_empty_file_is_an_error(tmp_path, data):
  path = tmp_path / "empty.jsonl"
  path.write_bytes(data)
  with pytest.raises(DataError, match=r"empty\.jsonl: empty file"):
    read_kilt_jsonl(str(path), "zsre")


def test_missing_file_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match="file not found"):
    read_kilt_jsonl(str(tmp_path / "nope.jsonl"), "zsre")


def test_unknown_task_is_rejected():
  with pytest.raises(ValueError, match="task"):
    parse_lines(b"{}", "squad", "x")
