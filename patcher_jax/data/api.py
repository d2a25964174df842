"""`load_benchmark`: the one entry point the rest of the project calls."""
from typing import Optional, Tuple

from absl import logging

from patcher_jax.data import benchmark_dir, kilt
from patcher_jax.data.lengths import check_lengths
from patcher_jax.data.records import Benchmark

SCALES = ("tiny", "small", "full")


def load_benchmark_and_report(
    task: str, data_dir: Optional[str] = None, scale: str = "full", *,
    seed: int = 0, tokenizer=None, max_len: Optional[int] = None,
    truncate: bool = False) -> Tuple[Benchmark, benchmark_dir.BenchmarkReport]:
  """Like `load_benchmark`, also returning what was read, kept and dropped."""
  kilt.check_task(task)
  if data_dir is not None:
    return benchmark_dir.load_benchmark_dir(
        task, data_dir, tokenizer=tokenizer, max_len=max_len, truncate=truncate)
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  from patcher_jax.data.geo import generate  # only needed for the default
  bench, report = generate.geo_benchmark_and_report(task, scale, seed)
  if tokenizer is not None and max_len is not None:
    for split in benchmark_dir.SPLITS:
      check_lengths(getattr(bench, split), tokenizer, max_len,
                    truncate=truncate, source=f"geo/{task}/{scale}/{split}")
  return bench, report


def load_benchmark(task: str, data_dir: Optional[str] = None,
                   scale: str = "full", **kwargs) -> Benchmark:
  """The four splits of a task.

  Args:
    task: "fever" or "zsre".
    data_dir: a benchmark directory (train/val/edit/test.jsonl, KILT format,
      fully validated, reference filters applied and counted); None for the
      embedded geography benchmark, generated from the committed facts table.
    scale: for the embedded benchmark only: "tiny" (a test fixture of a few
      hundred records), "small" (about a quarter) or "full".
    **kwargs: `seed` (embedded benchmark), `tokenizer` + `max_len` to check
      that every input fits the model, `truncate` to allow cutting instead.

  Raises:
    DataError: on any malformed file or record (names file, line, problem).
  """
  bench, report = load_benchmark_and_report(task, data_dir, scale, **kwargs)
  logging.info("data: %s", report.summary())
  return bench
