"""A 2-process jax.distributed run on 127.0.0.1 (2 forced host devices each)
gives the same edits and metrics as one process with the same 4 folds."""
import json
import os
import socket
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "helpers",
                      "distributed_worker.py")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def test_two_processes_equal_one(tmp_path):
  single = tmp_path / "single" / "out.json"
  single.parent.mkdir()
  subprocess.run([sys.executable, WORKER, str(single), "0", "1"], check=True,
                 env=_env(), timeout=600)
  multi = tmp_path / "multi" / "out.json"
  multi.parent.mkdir()
  coord = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen([sys.executable, WORKER, str(multi), str(p), "2",
                             coord], env=_env()) for p in range(2)]
  for p in procs:
    assert p.wait(timeout=600) == 0
  a, b = json.loads(single.read_text()), json.loads(multi.read_text())
  assert a["devices_per_process"] == b["devices_per_process"] == 2
  assert a["bank_devices"] == 2 and b["bank_devices"] == 2  # folds sharded
  assert len(a["records"]) == len(b["records"]) == 8
  assert {r["fold"] for r in b["records"]} == {0, 1, 2, 3}
  for ra, rb in zip(a["records"], b["records"]):
    for k in ra:
      if k == "edit_time_s":
        continue
      if isinstance(ra[k], float):
        assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), k
      else:
        assert ra[k] == rb[k], (k, ra, rb)
  assert a["summary"] == b["summary"]
  assert a["folds"] == b["folds"]
