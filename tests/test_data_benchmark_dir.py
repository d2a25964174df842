"""Benchmark directories: reference filters counted, files located, overlaps."""
import os
import shutil

import pytest

from patcher_jax.data import (DataError, export_benchmark, load_benchmark,
                              load_benchmark_and_report)
from patcher_jax.data.filters import MULTI_ANSWER, NO_REPHRASE

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")


def test_fever_dir_keeps_and_counts_edit_records_without_rephrases():
  bench, report = load_benchmark_and_report(
      "fever", data_dir=os.path.join(FIXTURES, "fever"))
  assert [len(s) for s in bench] == [4, 1, 3, 2]
  assert [r.id for r in bench.edit] == ["129629", "149579", "33078"]
  assert bench.edit[1].rephrases == ()
  assert report.splits["edit"].dropped == {}
  assert report.splits["edit"].notes[NO_REPHRASE] == 1
  assert report.splits["edit"].read == 3 and report.splits["edit"].kept == 3
  assert "150448" in {r.id for r in bench.train}
  assert f"note: {NO_REPHRASE}: 1" in report.table()


def test_zsre_dir_keeps_single_answer_records_only():
  bench, report = load_benchmark_and_report(
      "zsre", data_dir=os.path.join(FIXTURES, "zsre"))
  assert [len(s) for s in bench] == [2, 1, 2, 1]
  assert report.splits["train"].dropped == {MULTI_ANSWER: 1}
  assert report.splits["edit"].dropped == {MULTI_ANSWER: 1}
  assert report.splits["edit"].notes[NO_REPHRASE] == 1
  assert f"dropped 1: {MULTI_ANSWER}" in report.table()
  assert bench.edit[0].answers == ("Illinois Institute of Technology",)
  assert all(len(r.answers) == 1 for split in bench for r in split)


def test_reference_file_names_are_accepted(tmp_path):
  for split in ("train", "val", "edit"):
    shutil.copy(os.path.join(FIXTURES, "fever", f"{split}.jsonl"),
                tmp_path / f"fever-{split}.jsonl")
  shutil.copy(os.path.join(FIXTURES, "fever", "test.jsonl"),
              tmp_path / "fever-dev-kilt.jsonl")
  bench = load_benchmark("fever", data_dir=str(tmp_path))
  assert len(bench.test) == 2


def test_missing_split_file_is_named(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "zsre"), tmp_path / "z")
  os.remove(tmp_path / "z" / "val.jsonl")
  with pytest.raises(DataError, match=r"val\.jsonl: file not found"):
    load_benchmark("zsre", data_dir=str(tmp_path / "z"))


def test_missing_directory(tmp_path):
  with pytest.raises(DataError, match="benchmark directory not found"):
    load_benchmark("zsre", data_dir=str(tmp_path / "nope"))


def test_split_emptied_by_filters_is_an_error(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "zsre"), tmp_path / "z")
  (tmp_path / "z" / "edit.jsonl").write_text(
      '{"id": "1", "input": "x", "output": ["a", "b"], "rephrases": ["y"]}\n')
  with pytest.raises(DataError, match=r"edit\.jsonl: no records left"):
    load_benchmark("zsre", data_dir=str(tmp_path / "z"))


def test_bad_line_in_a_split_names_that_file(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "fever"), tmp_path / "f")
  with open(tmp_path / "f" / "test.jsonl", "a") as f:
    f.write('{"id": "9", "input": "x", "output": [{"answer": "MAYBE"}]}\n')
  with pytest.raises(DataError, match=r"test\.jsonl:3: unknown label 'MAYBE'"):
    load_benchmark("fever", data_dir=str(tmp_path / "f"))


def test_shared_ids_across_splits_are_warned(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "fever"), tmp_path / "f")
  shutil.copy(tmp_path / "f" / "val.jsonl", tmp_path / "f" / "test.jsonl")
  _, report = load_benchmark_and_report("fever", data_dir=str(tmp_path / "f"))
  assert report.warnings == ("1 ids appear in both val and test",)


def test_export_then_load_round_trips(tmp_path):
  bench = load_benchmark("zsre", data_dir=os.path.join(FIXTURES, "zsre"))
  export_benchmark(bench, str(tmp_path / "out"))
  assert load_benchmark("zsre", data_dir=str(tmp_path / "out")) == bench


def test_zsre_split_may_be_mend_json(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "zsre"), tmp_path / "z")
  os.remove(tmp_path / "z" / "edit.jsonl")
  shutil.copy(os.path.join(FIXTURES, "zsre_mend_eval.json"),
              tmp_path / "z" / "edit.json")
  bench, report = load_benchmark_and_report("zsre", data_dir=str(tmp_path / "z"))
  assert [r.id for r in bench.edit] == ["edit:0", "edit:1"]
  assert bench.edit[1].rephrases == ("What family are Ramalinaceae?",)
  assert report.splits["edit"].kept == 2
  # Too long: named by the line the record starts on.
  with pytest.raises(DataError, match=r"edit\.json:3: input of record 'edit:1'"):
    load_benchmark("zsre", data_dir=str(tmp_path / "z"), max_len=32,
                   tokenizer=lambda ts: [99 if "Ramalinaceae belong" in t else 9
                                         for t in ts])
