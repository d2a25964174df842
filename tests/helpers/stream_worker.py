"""One stream process for the SIGKILL test (see tests/test_resume_sigkill.py).

  python stream_worker.py OUT_DIR CKPT_DIR [--resume] [--slow]

Runs 6 edits of the tiny classification stream, checkpointing every edit, and
writes the final bank (npz) and records (json) to OUT_DIR.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
  out_dir, ckpt_dir = sys.argv[1], sys.argv[2]
  resume, slow = "--resume" in sys.argv, "--slow" in sys.argv
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
  sys.path.insert(0, os.path.dirname(__file__))
  import numpy as np  # pylint: disable=g-import-not-at-top
  import patcher_jax as pj  # pylint: disable=g-import-not-at-top
  from patcher_jax import stream  # pylint: disable=g-import-not-at-top
  import tiny  # pylint: disable=g-import-not-at-top
  runtime = tiny.classification_runtime()
  cfg = stream.StreamConfig(num_edits=6, seed=0, checkpoint_every=1)
  on_edit = (lambda rec: time.sleep(0.4)) if slow else None
  result = stream.run(runtime, pj.fast_config(max_steps=300), cfg,
                      checkpoint_dir=ckpt_dir or None, resume=resume,
                      on_edit=on_edit, log=lambda *_: None)
  os.makedirs(out_dir, exist_ok=True)
  bank = result.pop("state").bank
  np.savez(os.path.join(out_dir, "bank.npz"),
           **{k: np.asarray(v) for k, v in bank._asdict().items()})
  result["summary"] = stream.summarize(result)["summary"]
  with open(os.path.join(out_dir, "result.json"), "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main()
