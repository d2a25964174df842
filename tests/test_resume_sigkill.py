"""A stream killed with SIGKILL mid-run and resumed from its Orbax checkpoint
ends with the same bank, records and metrics as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "helpers", "stream_worker.py")


def _steps(ckpt_dir):
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())


def _load(out_dir):
  with open(os.path.join(out_dir, "result.json")) as f:
    result = json.load(f)
  bank = dict(np.load(os.path.join(out_dir, "bank.npz")))
  for r in result["records"]:
    r.pop("edit_time_s")
  return result, bank


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
  ref_out = tmp_path / "ref"
  subprocess.run([sys.executable, WORKER, str(ref_out), ""], check=True,
                 timeout=600)
  ckpt = str(tmp_path / "ckpt")
  proc = subprocess.Popen([sys.executable, WORKER, str(tmp_path / "killed"),
                           ckpt, "--slow"])
  deadline = time.time() + 600
  while len(_steps(ckpt)) < 2 or max(_steps(ckpt)) < 3:
    assert proc.poll() is None, "worker ended before it could be killed"
    assert time.time() < deadline
    time.sleep(0.05)
  time.sleep(0.2)                     # land anywhere in the next edit/save
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(_steps(ckpt))
  assert killed_at < 6, "the run finished before the kill"
  out = tmp_path / "resumed"
  subprocess.run([sys.executable, WORKER, str(out), ckpt, "--resume"],
                 check=True, timeout=600)
  (ref, ref_bank), (res, res_bank) = _load(ref_out), _load(out)
  assert res["records"] == ref["records"]
  assert res["summary"] == ref["summary"]
  assert res["folds"] == ref["folds"]
  assert ref_bank.keys() == res_bank.keys()
  for k in ref_bank:
    np.testing.assert_array_equal(res_bank[k], ref_bank[k])
