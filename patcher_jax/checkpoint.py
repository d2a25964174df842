"""Orbax checkpoints of a sequential-editing stream (atomic; never pickle).

A checkpoint holds the arrays (patch banks, memories, RNG key) as a pytree and
the bookkeeping (stream cursors, per-edit records) as JSON, under one step
number: the count of edit rounds done. Orbax writes to a temporary directory
and renames it when complete, so a process killed at any point leaves either
the previous checkpoint or the new one, never a torn one. Saves are
asynchronous: `save` returns once the arrays are on the host, the write
overlaps the next edits, and `finish` waits for it (a save waits for the one
before it).
"""
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import orbax.checkpoint as ocp


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, enable_async_checkpointing=True,
      create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("arrays", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, arrays: Dict[str, Any],
         meta: Dict[str, Any]) -> None:
  """Save arrays (a pytree of arrays) and meta (JSON-able) as `step`, in
  the background: the caller may change neither afterwards (pass copies;
  `finish` waits for the write)."""
  mngr.save(step, args=ocp.args.Composite(
      arrays=ocp.args.StandardSave(_to_numpy(arrays)),
      meta=ocp.args.JsonSave(meta)), force=True)


def finish(mngr: ocp.CheckpointManager) -> None:
  """Wait until the last `save` is on disk."""
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager
                   ) -> Optional[Tuple[int, Dict[str, Any], Dict[str, Any]]]:
  """(step, arrays as numpy, meta) of the newest checkpoint, or None.

  Restores without a target: the banks' shapes depend on the run.
  """
  step = mngr.latest_step()
  if step is None:
    return None
  out = mngr.restore(step, args=ocp.args.Composite(
      arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
  arrays = _to_numpy(out["arrays"])
  return step, arrays, out["meta"]


def _to_numpy(tree):
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)
