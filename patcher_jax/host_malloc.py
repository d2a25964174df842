"""Run with glibc's malloc keeping freed memory for reuse.

glibc hands large blocks (above its mmap threshold: 128 KiB, rising with use
to at most 32 MiB) straight to the kernel and back on free, and it trims the
heap's free top. XLA's CPU runtime allocates and frees its buffers on every
call, and a stream makes ~100k small calls, so each call paid page faults
zeroing fresh pages: 96 s of kernel time in a 300 s zsRE run, 27 s in a 72 s
FEVER run. With both thresholds at 4 GiB the blocks are reused instead:
zsRE 306 -> 250 s, FEVER 72 -> 57 s, the same decisions (2026-11-30).

`mallopt` caps the mmap threshold at 32 MiB, which is not enough (FEVER
stayed at 69 s), while the `GLIBC_TUNABLES` variable is read only when a
process starts: so `run.py` starts itself again with it (`reexec`).
Outside glibc, when the variable already sets malloc, or with
`PATCHER_JAX_MALLOC=default`, nothing changes.

Example:
  >>> env = tuned_env({"PATH": "/bin"}, libc="glibc")
  >>> env["GLIBC_TUNABLES"] == TUNABLES
  True
  >>> tuned_env({"PATCHER_JAX_MALLOC": "default"}, libc="glibc") is None
  True
"""
import os
import platform
import sys
from typing import Dict, Mapping, Optional

TUNABLES = ("glibc.malloc.mmap_threshold=4294967296:"
            "glibc.malloc.trim_threshold=4294967296")


def tuned_env(env: Mapping[str, str], libc: Optional[str] = None
              ) -> Optional[Dict[str, str]]:
  """`env` with the malloc tunables added (None: leave the process as it
  is). `libc` defaults to this interpreter's (`platform.libc_ver`)."""
  libc = platform.libc_ver()[0] if libc is None else libc
  current = env.get("GLIBC_TUNABLES", "")
  if (libc != "glibc" or env.get("PATCHER_JAX_MALLOC") == "default"
      or "glibc.malloc." in current):
    return None
  return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [current,
                                                          TUNABLES]))}


def reexec() -> None:
  """Start this program again, same arguments and interpreter options, with
  the tunables (returns only if nothing is to change). Call it first thing
  in a `__main__` block: nothing done before it is kept."""
  env = tuned_env(os.environ)
  if env is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
