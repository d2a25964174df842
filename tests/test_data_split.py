"""split_raw_file: seeded reference split, indices recorded, nothing lost."""
import json
import os
import subprocess
import sys

import pytest

from patcher_jax.data import DataError, load_benchmark, read_kilt_jsonl, split_raw_file
from patcher_jax.data.split import split_sizes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")


def _raw(tmp_path, n=200, task="fever"):
  path = tmp_path / "raw.jsonl"
  with open(path, "w") as f:
    for i in range(n):
      out = "SUPPORTS" if i % 2 else "REFUTES"
      if task == "zsre":
        out = f"answer {i}"
      f.write(json.dumps({"id": f"r{i}", "input": f"claim {i}",
                          "output": [{"answer": out}],
                          "rephrases": [f"rephrase {i}"]}) + "\n")
  return str(path)


def test_sizes_follow_the_reference_rounding_and_keep_the_remainder():
  assert split_sizes(104966, {"train": .8, "val": .1, "edit": .1}) == {
      "train": 83974, "val": 10496, "edit": 10496}
  assert split_sizes(1000, {"train": .9, "val": .075, "edit": .025}) == {
      "train": 900, "val": 75, "edit": 25}
  with pytest.raises(ValueError):
    split_sizes(10, {"train": .9, "val": .2, "edit": .1})


def test_split_is_seeded_complete_and_recorded(tmp_path):
  raw = _raw(tmp_path)
  res = split_raw_file(raw, str(tmp_path / "a"), "fever", seed=3)
  split_raw_file(raw, str(tmp_path / "b"), "fever", seed=3)
  split_raw_file(raw, str(tmp_path / "c"), "fever", seed=4)
  assert res.counts == {"train": 160, "val": 20, "edit": 20}
  for name in ("train.jsonl", "val.jsonl", "edit.jsonl", "split_indices.json"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
  assert (tmp_path / "a" / "edit.jsonl").read_bytes() != (
      tmp_path / "c" / "edit.jsonl").read_bytes()
  index = json.loads((tmp_path / "a" / "split_indices.json").read_text())
  assert index["seed"] == 3 and index["records"] == 200
  lines = index["lines"]
  assert sorted(lines["train"] + lines["val"] + lines["edit"]) == list(range(1, 201))
  # The indices say exactly which raw line went where, in the written order.
  edit_ids = [r.id for r in read_kilt_jsonl(str(tmp_path / "a" / "edit.jsonl"),
                                            "fever").records]
  assert edit_ids == [f"r{n - 1}" for n in lines["edit"]]


def test_zsre_ratios_and_test_copy_make_a_loadable_directory(tmp_path):
  raw = _raw(tmp_path, n=400, task="zsre")
  test = os.path.join(FIXTURES, "zsre", "test.jsonl")
  res = split_raw_file(raw, str(tmp_path / "z"), "zsre", seed=0, test_path=test)
  assert res.counts == {"train": 360, "val": 30, "edit": 10, "test": 1}
  bench = load_benchmark("zsre", data_dir=str(tmp_path / "z"))
  assert [len(s) for s in bench] == [360, 30, 10, 1]


def test_bad_raw_line_stops_the_split(tmp_path):
  raw = _raw(tmp_path, n=5)
  with open(raw, "a") as f:
    f.write('{"id": "x", "input": "y", "output": [{"answer": "TRUE"}]}\n')
  with pytest.raises(DataError, match=r"raw\.jsonl:6: unknown label"):
    split_raw_file(raw, str(tmp_path / "o"), "fever")
  assert not (tmp_path / "o").exists()


def test_cli(tmp_path):
  raw = _raw(tmp_path, n=50)
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "split_raw.py"),
       "--task=fever", f"--raw={raw}", f"--out={tmp_path / 'cli'}", "--seed=1",
       f"--test={os.path.join(FIXTURES, 'fever', 'test.jsonl')}"],
      capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
  assert out.returncode == 0, out.stderr
  assert "'train': 40" in out.stdout and "kept 5" in out.stdout
