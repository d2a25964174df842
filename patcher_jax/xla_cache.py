"""XLA's persistent compilation cache, kept next to the base models.

An edit compiles once per task shape (a few seconds each on a CPU); with the
cache a second run on the same machine loads the executables from disk
instead. Entries are keyed by XLA on the program, the devices and the jax
version, so a stale entry is never used.

Example:
  >>> import tempfile
  >>> enable(tempfile.mkdtemp()).endswith("xla")
  True
"""
import os
from typing import Optional

# Every program is kept: reading one takes milliseconds, while the small
# ones (draft checks, task building: 0.1-0.5 s each, ~100 a zsRE run) cost
# a run ~6 s if compiled again (12.1 -> 6.2 s of compiles, 2026-11-30).
MIN_COMPILE_SECONDS = 0.0


def enable(cache_dir: Optional[str] = None) -> str:
  """Turn the cache on in `<cache_dir>/xla` (default: the base-model cache
  root); returns that directory. Call before the first compile."""
  import jax  # pylint: disable=g-import-not-at-top
  if cache_dir is None:
    from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
    cache_dir = base_cache.default_cache_dir()
  path = os.path.join(cache_dir, "xla")
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    MIN_COMPILE_SECONDS)
  return path
