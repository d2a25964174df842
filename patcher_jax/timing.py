"""Wall-time split of a run: named phases, summed (a hook, not a profiler).

The stream and the runtimes time their phases through a `Timings` they are
given, so a benchmark reads where a run's time went without patching any
module; `Timings()` costs one `perf_counter` pair per phase.

Example:
  >>> from patcher_jax.timing import Timings
  >>> t = Timings()
  >>> with t.phase("checks"):
  ...   _ = sum(range(10))
  >>> sorted(t.seconds) == ["checks"] and t.counts["checks"] == 1
  True
"""
import contextlib
import time
from typing import Dict


class Timings:
  """Seconds and call counts per phase name (phases may nest: the outer
  phase includes the inner ones)."""

  def __init__(self):
    self.seconds: Dict[str, float] = {}
    self.counts: Dict[str, int] = {}

  @contextlib.contextmanager
  def phase(self, name: str):
    t0 = time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - t0)

  def add(self, name: str, seconds: float, count: int = 1) -> None:
    self.seconds[name] = self.seconds.get(name, 0.0) + seconds
    self.counts[name] = self.counts.get(name, 0) + count

  def count_compiles(self) -> None:
    """Also sum XLA compile time, as phase "compile" (it lies within the
    other phases). Registers a jax.monitoring listener: call once."""
    import jax  # pylint: disable=g-import-not-at-top

    def on_event(name, seconds, **kwargs):
      del kwargs
      if name == "/jax/core/compile/backend_compile_duration":
        self.add("compile (within phases)", seconds)

    jax.monitoring.register_event_duration_secs_listener(on_event)

  def as_dict(self) -> Dict[str, Dict[str, float]]:
    """{phase: {"s": seconds, "calls": n}}, largest first (JSON-able)."""
    order = sorted(self.seconds, key=self.seconds.get, reverse=True)
    return {k: {"s": round(self.seconds[k], 3), "calls": self.counts[k]}
            for k in order}
