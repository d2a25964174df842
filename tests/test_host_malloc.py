"""The malloc tunables run.py starts itself with (host_malloc.py)."""
import os
import subprocess
import sys

import pytest

from patcher_jax import host_malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("env, libc, want", [
    ({}, "glibc", host_malloc.TUNABLES),
    ({"GLIBC_TUNABLES": "glibc.cpu.x=1"}, "glibc",
     "glibc.cpu.x=1:" + host_malloc.TUNABLES),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc", None),
    ({"PATCHER_JAX_MALLOC": "default"}, "glibc", None),
    ({}, "", None),                 # not glibc (musl, macOS)
])
def test_tuned_env(env, libc, want):
  got = host_malloc.tuned_env(env, libc=libc)
  if want is None:
    assert got is None
  else:
    assert got["GLIBC_TUNABLES"] == want
    assert {k: v for k, v in got.items() if k != "GLIBC_TUNABLES"} == {
        k: v for k, v in env.items() if k != "GLIBC_TUNABLES"}


def test_run_py_starts_itself_with_the_tunables():
  code = ("import os, sys; sys.argv = ['x']; "
          "from patcher_jax import host_malloc; host_malloc.reexec(); "
          "print(os.environ.get('GLIBC_TUNABLES'))")
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "PATCHER_JAX_MALLOC")}
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                       capture_output=True, text=True, check=True).stdout
  want = (host_malloc.TUNABLES if host_malloc.tuned_env({}) is not None
          else "None")
  assert out.strip() == want
