"""`python -m patcher_jax split` (split_cli.main): exit status and messages."""
import json
import os
import subprocess
import sys

import pytest

from patcher_jax.data import split_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fever1(tmp_path, n=90):
  path = tmp_path / "fever.jsonl"
  with open(path, "w") as f:
    for i in range(n):
      f.write(json.dumps({"id": i, "label": ("SUPPORTS", "REFUTES")[i % 2],
                          "claim": f"Claim {i}.",
                          "evidence": [[[i, i, f"P{i // 3}", 0]]]}) + "\n")
  return str(path)


def _run(argv, capsys):
  status = split_cli.main(argv)
  out, err = capsys.readouterr()
  return status, out, err


def test_success_writes_the_directory_and_prints_the_table(tmp_path, capsys):
  status, out, err = _run(["split", "--task=fever", f"--input={_fever1(tmp_path)}",
                           f"--out={tmp_path / 'b'}", "--seed=2",
                           "--max_len=0"], capsys)
  assert status == 0, err
  assert "split   records" in out and "run.py --task=fever" in out
  for name in ("train", "val", "edit", "test"):
    assert (tmp_path / "b" / f"{name}.jsonl").exists()
  assert json.loads((tmp_path / "b" / "split_indices.json").read_text())["seed"] == 2


@pytest.mark.parametrize("extra,start", [
    (["--task=zsre"], "error: {input}: this is a FEVER 1.0 jsonl file"),
    (["--task=fever", "--ratios=0.5,0.5"],
     "error: --ratios: expected 4 numbers (train,val,edit,test), got 2"),
    (["--task=fever", "--edit_size=0"], "error: --edit_size: must be >= 1"),
    (["--task=fever", "--edit_size=95"],
     "error: {input}: sizes {{"),
    (["--task=nope"], "error: command line: argument --task: invalid choice"),
])
def test_user_mistakes_print_one_line_and_return_2(tmp_path, capsys, extra, start):
  raw = _fever1(tmp_path)
  status, out, err = _run([f"--input={raw}", f"--out={tmp_path / 'o'}",
                           "--max_len=0"] + extra, capsys)
  assert status == 2
  assert err.startswith(start.format(input=raw)), err
  assert err.count("\n") == 1 and "Traceback" not in err
  assert out == ""


def test_bad_file_names_file_and_line(tmp_path, capsys):
  raw = tmp_path / "raw.jsonl"
  raw.write_text('{"id": 1, "claim": "A.", "label": "SUPPORTS"}\n'
                 '{"id": 2, "claim": "B.", "label": "TRUE"}\n')
  status, _, err = _run(["--task=fever", f"--input={raw}",
                         f"--out={tmp_path / 'o'}", "--max_len=0"], capsys)
  assert status == 2
  assert err == f"error: {raw}:2: unknown label 'TRUE' (FEVER 1.0 labels are " \
                f"SUPPORTS, REFUTES and NOT ENOUGH INFO)\n"


def test_missing_flags_and_files(tmp_path, capsys):
  status, _, err = _run(["--task=zsre"], capsys)
  assert status == 2 and err.startswith("error: command line: the following "
                                        "arguments are required: --input/--raw, --out")
  status, _, err = _run(["--task=zsre", f"--input={tmp_path / 'no.json'}",
                         f"--out={tmp_path / 'o'}"], capsys)
  assert (status, err) == (2, f"error: {tmp_path / 'no.json'}: file not found\n")


def test_module_entry_point_exits_2_without_traceback(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text('[{"question": "q"}]')
  out = subprocess.run(
      [sys.executable, "-m", "patcher_jax.data.split_cli", "--task=zsre",
       f"--input={bad}", f"--out={tmp_path / 'o'}", "--max_len=0"],
      capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"error: {bad}:1: record 0: no known format fits this record (keys: "
      f"question)")
  assert "Traceback" not in out.stderr


def test_old_split_raw_flag_names_still_work(tmp_path, capsys):
  status, out, err = _run(["--task=fever", f"--raw={_fever1(tmp_path)}",
                           f"--out={tmp_path / 'b'}", "--max_len=0"], capsys)
  assert status == 0, err
