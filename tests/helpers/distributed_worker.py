"""One process of the distributed test (see tests/test_distributed.py).

  python distributed_worker.py OUT_JSON PROCESS_ID NUM_PROCESSES [COORDINATOR]

Runs a 4-fold stream on a tiny random classifier; with several processes the
folds are split over them and process 0 writes the merged result.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
  out, pid, nproc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
  import jax  # pylint: disable=g-import-not-at-top
  if nproc > 1:
    jax.distributed.initialize(sys.argv[4], nproc, pid)
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
  import patcher_jax as pj  # pylint: disable=g-import-not-at-top
  from patcher_jax import distributed, stream  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(__file__))
  import tiny  # pylint: disable=g-import-not-at-top
  runtime = tiny.classification_runtime(num_stream=80)
  cfg = stream.StreamConfig(num_edits=2, num_folds=4, seed=0,
                            checkpoint_every=0, curve_every=1)
  folds = stream.local_folds(4, jax.process_index(), jax.process_count())
  result = stream.run(runtime, pj.fast_config(max_steps=200), cfg,
                      folds=folds, log=lambda *_: None)
  sharded = len(result["state"].bank.keys.sharding.device_set)
  if nproc > 1:
    result = distributed.gather_results(os.path.dirname(out), result, pid,
                                        nproc)
    if result is None:
      return
  else:
    result = stream.merge([{k: v for k, v in result.items() if k != "state"}])
  result["summary"] = stream.summarize(result)["summary"]
  result["devices_per_process"] = jax.local_device_count()
  result["bank_devices"] = sharded
  with open(out, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main()
