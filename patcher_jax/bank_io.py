"""Patch banks as artifacts: save an Editor's bank, load it back exactly.

A bank directory holds
  bank.safetensors  the PatchBank arrays (keys, biases, values, live,
                    edit_ids, size) and the memory rows the edits added
  bank.json         format, task, mode, EditConfig, stream settings, the base
                    model's fingerprint and source, and every edit's id and
                    request
It is written to a temporary directory beside the target and renamed into
place, so a crash never leaves a half-written bank. No pickle anywhere.
"""
import contextlib
import json
import os
import shutil
import tempfile

import jax.numpy as jnp
import numpy as np

from patcher_jax import editor as editor_lib
from patcher_jax import patch as patch_lib

FORMAT = "patcher_jax.bank/1"
ARRAYS = "bank.safetensors"
META = "bank.json"


class BankError(ValueError):
  """A bank directory that cannot be read."""


def metadata(ed) -> dict:
  """The JSON side of a bank."""
  return {"format": FORMAT, "task": ed.task, "mode": ed.mode,
          "config": ed.config._asdict(), "stream_settings": ed.settings,
          "seed": ed.seed, "next_id": ed.next_id,
          "base": {"fingerprint": ed.fingerprint, "source": ed.source},
          "edits": ed.edits}


def save(ed, directory: str) -> str:
  """Write `ed`'s bank to `directory` atomically (replacing an old bank).

  Returns:
    The directory.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  with atomic_dir(directory) as tmp:
    arrays = {k: np.ascontiguousarray(np.asarray(v))
              for k, v in ed.bank._asdict().items()}
    arrays["size"] = arrays["size"].reshape(1)
    arrays["memory_rows"] = np.ascontiguousarray(ed.added_rows, np.float32)
    save_file(arrays, os.path.join(tmp, ARRAYS))
    with open(os.path.join(tmp, META), "w") as f:
      json.dump(metadata(ed), f, indent=1)
  return os.path.abspath(directory)


@contextlib.contextmanager
def atomic_dir(directory: str):
  """Yields an empty temporary folder beside `directory`; on success it
  replaces `directory` by renames only (a crash leaves the old folder or the
  new one, whole), on error it is removed and `directory` is untouched."""
  directory = os.path.abspath(directory)
  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(directory),
                         dir=parent)
  try:
    yield tmp
    old = None
    if os.path.exists(directory):
      old = tempfile.mkdtemp(prefix=".old-", dir=parent)
      os.rename(directory, os.path.join(old, "previous"))
    os.rename(tmp, directory)
    if old:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def read(directory: str):
  """(metadata dict, arrays dict) of a bank directory; BankError if it is
  not one."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  meta_path = os.path.join(directory, META)
  if not os.path.isfile(meta_path):
    raise BankError(f"{directory}: not a patch bank (no {META})")
  try:
    with open(meta_path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise BankError(f"{meta_path}:{e.lineno}: {e.msg}") from None
  if meta.get("format") != FORMAT:
    raise BankError(f"{meta_path}: format {meta.get('format')!r}, expected "
                    f"{FORMAT!r}")
  return meta, load_file(os.path.join(directory, ARRAYS))


def load(cls, directory: str, base=None, cache_dir=None):
  """Restore a bank onto `base` (a fresh Editor, a model folder, or None:
  rebuilt from the saved source). Raises api.BaseMismatchError when the base
  model is not the one the bank was made on."""
  from patcher_jax import api  # pylint: disable=g-import-not-at-top
  meta, arrays = read(directory)
  ed = _base_editor(cls, meta, base, cache_dir)
  want = meta["base"]["fingerprint"]
  if ed.fingerprint != want:
    raise api.BaseMismatchError(
        f"{directory}: the bank was made on base model {want}, this base "
        f"model is {ed.fingerprint}")
  if ed.edits:
    raise ValueError("load onto a fresh Editor (this one has edits)")
  size = arrays.pop("size").reshape(())
  rows = arrays.pop("memory_rows")
  ed.bank = patch_lib.PatchBank(**{k: jnp.asarray(v)
                                   for k, v in arrays.items()},
                                size=jnp.asarray(size, jnp.int32))
  ed.mode, ed.seed, ed.next_id = meta["mode"], meta["seed"], meta["next_id"]
  ed.config = editor_lib.EditConfig(**meta["config"])
  ed.settings = dict(meta["stream_settings"])
  ed.edits = list(meta["edits"])
  ed.source = meta["base"]["source"]
  ed.added_rows = rows
  ed.memory = api.append_rows(ed.memory, rows)
  ed.val_memory = api.append_rows(ed.val_memory, rows)
  return ed


def _base_editor(cls, meta, base, cache_dir):
  if base is not None and not isinstance(base, str):
    return base
  src = meta["base"]["source"]
  if isinstance(base, str):
    return cls.from_pretrained(base, meta["task"], mode=meta["mode"])
  if src.get("memory_text_given"):
    raise ValueError("this bank's memory text was given in Python: pass "
                     "base=Editor.from_...(..., memory_text=...) to load it")
  text = {"memory_text_file": src["memory_text_file"]} if src.get(
      "memory_text_file") else {}
  if src.get("kind") == "task":
    return cls.from_task(meta["task"], cache_dir or src.get("cache_dir"),
                         mode=meta["mode"], scale=src.get("scale", "full"),
                         **text)
  if src.get("memory_given"):
    raise ValueError("this bank's memory records were given in Python: pass "
                     "base=Editor.from_pretrained(..., memory=...) to load it")
  return cls.from_pretrained(src["model_dir"], meta["task"], mode=meta["mode"],
                             memory_file=src.get("memory_file"), **text)
