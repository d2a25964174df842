"""Multi-process runs: folds are split over processes and merged at the end.

Every process runs `stream.run` on its own folds (`stream.local_folds`),
sharded over its local devices; folds are independent streams, so nothing is
exchanged while editing. At the end each process writes its raw result
atomically, all meet at a barrier, and process 0 merges them.
"""
import json
import os
from typing import Any, Dict, Optional

from patcher_jax import stream


def gather_results(out_dir: str, result: Dict[str, Any], rank: int,
                   nproc: int) -> Optional[Dict[str, Any]]:
  """The merged result on process 0; None on the others."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  part_dir = os.path.join(out_dir, "partial")
  os.makedirs(part_dir, exist_ok=True)
  result = {k: v for k, v in result.items() if k != "state"}
  tmp = os.path.join(part_dir, f".process_{rank}.json.tmp")
  with open(tmp, "w") as f:
    json.dump(result, f)
  os.replace(tmp, os.path.join(part_dir, f"process_{rank}.json"))
  multihost_utils.sync_global_devices("patcher_jax: streams done")
  if rank != 0:
    return None
  parts = []
  for p in range(nproc):
    with open(os.path.join(part_dir, f"process_{p}.json")) as f:
      parts.append(json.load(f))
  return stream.merge(parts)
