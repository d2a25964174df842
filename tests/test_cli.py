"""The command line on a tiny random FEVER model: edit, predict, revert,
export; user mistakes print one line and exit 2."""
import json
import os
import subprocess
import sys

import pytest

from patcher_jax import cli
from patcher_jax.data import load_benchmark
from helpers import tiny


def _lines(capsys):
  return [json.loads(l) for l in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("cli")
  ed = tiny.tiny_editor("fever", str(d / "model"))
  claims = [r.input for r in load_benchmark("fever", scale="tiny").edit[:3]]
  flip = {"SUPPORTS": "REFUTES", "REFUTES": "SUPPORTS"}
  reqs = [{"prompt": c, "target_new": flip[p], "rephrase_prompt": c + "!",
           "locality_prompt": "Paris is in France."}
          for c, p in zip(claims, ed.predict(claims))]
  (d / "requests.json").write_text(json.dumps(reqs, indent=1))
  (d / "inputs.jsonl").write_text("".join(json.dumps({"input": c}) + "\n"
                                          for c in claims))
  return d, claims


def test_edit_predict_revert_export(setup, capsys):
  d, claims = setup
  bank = str(d / "bank")
  common = [f"--bank_dir={bank}"]
  # --set: a tiny random BERT's queries all look alike, so fast mode's
  # memory bound (-5) cannot hold beside a firing neuron; the reference's
  assert cli.main(["edit", "--task=fever", f"--requests={d}/requests.json",
                   f"--model_dir={d}/model", f"--memory={d}/model/memory.jsonl",
                   "--set=beta=-3"] + common) == 0
  results = _lines(capsys)
  assert [r["edit_id"] for r in results] == [0, 1, 2]
  assert results[0]["pre"]["reliability"] == 0.0
  assert cli.main(["predict", f"--inputs={d}/inputs.jsonl"] + common) == 0
  preds = _lines(capsys)
  assert [p["input"] for p in preds] == claims
  assert all(p["prediction"] in ("SUPPORTS", "REFUTES") for p in preds)
  edited = [r["edit_id"] for r in results if r["edited"]]
  assert edited
  assert cli.main(["revert", f"--edit_id={edited[0]}"] + common) == 0
  (rev,) = _lines(capsys)
  assert edited[0] not in rev["live_edits"]
  assert cli.main(["revert", f"--edit_id={edited[0]}"] + common) == 2
  assert "error: --edit_id:" in capsys.readouterr().err
  assert cli.main(["export", f"--out={d}/export"] + common) == 0
  assert "model.safetensors" in os.listdir(d / "export")


@pytest.mark.parametrize("content, where", [
    ('[\n {"prompt": "a", "target_new": "SUPPORTS"},\n {"prompt": "b"}\n]',
     "requests.json:3: missing or empty \"target_new\""),
    ('[\n {"prompt": "a", "target_new": "MAYBE"}\n]',
     "requests.json:2: target_new 'MAYBE'"),
    ('[\n {"prompt": "a",, }\n]', "requests.json:2: "),
    ('{"prompt": "a"}', "requests.json:1: expected a JSON list"),
])
def test_bad_request_files_name_file_and_line(tmp_path, capsys, content,
                                              where):
  path = tmp_path / "requests.json"
  path.write_text(content)
  assert cli.main(["edit", "--task=fever", f"--requests={path}",
                   f"--bank_dir={tmp_path}/bank"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ") and where in err


def test_bad_kilt_line(tmp_path, capsys):
  path = tmp_path / "requests.jsonl"
  path.write_text('{"id": "1", "input": "x", "output": [{"answer": '
                  '"SUPPORTS"}]}\n{"id": 2\n')
  assert cli.main(["edit", "--task=fever", f"--requests={path}",
                   f"--bank_dir={tmp_path}/bank"]) == 2
  assert capsys.readouterr().err.startswith(f"error: {path}:2: ")


@pytest.mark.parametrize("argv, where", [
    ([], "command"), (["edit"], "--task: required"),
    (["predict", "--bank_dir=/nonexistent", "--inputs=/nonexistent"],
     "--inputs: /nonexistent: no such file"),
    (["revert", "--bank_dir=/b", "--edit_id=x"], "--edit_id: invalid int"),
])
def test_flag_mistakes(argv, where, capsys):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and f"error: {where}" in err


@pytest.mark.parametrize("setting, where", [
    ("betta=1", "--set: 'betta=1': expected name=value"),
    ("beta=low", "--set: 'beta=low': beta takes a float"),
    ("pool_stop=maybe", "--set: 'pool_stop=maybe': pool_stop is true or"),
])
def test_bad_settings_are_flag_mistakes(setup, setting, where, tmp_path,
                                        capsys):
  d, _ = setup
  assert cli.main(["edit", "--task=fever", f"--requests={d}/requests.json",
                   f"--bank_dir={tmp_path}/bank", f"--set={setting}"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and f"error: {where}" in err
  assert not os.path.exists(tmp_path / "bank")     # nothing was written


def test_module_entry_point_help():
  out = subprocess.run([sys.executable, "-m", "patcher_jax", "--help"],
                       capture_output=True, text=True, check=True)
  assert "edit" in out.stdout and "export" in out.stdout


@pytest.mark.parametrize("flag, problem", [
    ("--output_dir=x", "Unknown command line flag 'output_dir'"),
    ("--num_edits=abc", "--num_edits=abc"),
    ("--task=foo", "--task=foo"),
    ("--pool=-1", "--pool: a sample count"),
    ("--task=fever --learned_negatives", "--learned_negatives: zsRE only"),
])
def test_run_py_flag_mistakes_are_one_line_and_status_2(flag, problem):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, os.path.join(root, "run.py"),
                        *flag.split()],
                       capture_output=True, text=True, cwd=root)
  assert out.returncode == 2, out.stderr
  assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: flags: ")
  assert problem in out.stderr
