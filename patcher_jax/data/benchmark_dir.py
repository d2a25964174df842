"""A benchmark directory: train.jsonl, val.jsonl, edit.jsonl, test.jsonl.

This is what `run.py --data_dir=DIR` reads; `python -m patcher_jax split`
writes one from a raw file. Each split file may be in any format `formats.py`
reads (KILT / Transformer-Patcher jsonl, FEVER 1.0 jsonl, MEND or EasyEdit
zsRE json; the gold answers are the targets), detected from its content. The
reference's own file names are accepted too: `<task>-train.jsonl`, ..., and
`<task>-dev-kilt.jsonl` for the test split, and `<split>.json`.
"""
import os
from typing import Dict, NamedTuple, Optional, Tuple

from patcher_jax.data import filters, formats, kilt, report as report_lib
from patcher_jax.data.errors import DataError
from patcher_jax.data.lengths import check_lengths
from patcher_jax.data.records import Benchmark
from patcher_jax.data.report import LoadReport

SPLITS = filters.SPLITS


class BenchmarkReport(NamedTuple):
  """Per split: the file read and what was kept, dropped and noted."""
  task: str
  source: str
  splits: Dict[str, LoadReport]
  warnings: Tuple[str, ...] = ()

  def summary(self) -> str:
    lines = [f"{self.task} benchmark from {self.source}"]
    lines += ["  " + self.splits[s].summary() for s in SPLITS if s in self.splits]
    lines += ["  warning: " + w for w in self.warnings]
    return "\n".join(lines)

  def table(self) -> str:
    """Per split: file, records read / kept, dropped per reason (see
    report.splits_table); what run.py prints before editing."""
    return report_lib.splits_table(
        f"{self.task} data from {self.source}",
        [(s, self.splits[s]) for s in SPLITS if s in self.splits],
        self.warnings)


def split_path(data_dir: str, task: str, split: str) -> str:
  """The file for `split`: `<split>.jsonl`, else the reference's name, else
  `<split>.json`."""
  names = [f"{split}.jsonl", f"{task}-{split}.jsonl"]
  if split == "test":
    names.append(f"{task}-dev-kilt.jsonl")
  names.append(f"{split}.json")
  for name in names:
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      return path
  raise DataError(os.path.join(data_dir, names[0]),
                  f"file not found; a benchmark directory holds "
                  f"{', '.join(s + '.jsonl' for s in SPLITS)} (also accepted: "
                  f"{' or '.join(names[1:])})")


def load_benchmark_dir(task: str, data_dir: str, *, tokenizer=None,
                       max_len: Optional[int] = None, truncate: bool = False,
                       ) -> Tuple[Benchmark, BenchmarkReport]:
  """Reads and validates a benchmark directory, applying the reference filters.

  With a tokenizer and `max_len`, every input and rephrase is also checked to
  fit the model (DataError naming file and line otherwise, unless `truncate`).
  """
  kilt.check_task(task)
  if not os.path.isdir(data_dir):
    raise DataError(data_dir, "benchmark directory not found")
  splits, reports, ids = {}, {}, {}
  for split in SPLITS:
    path = split_path(data_dir, task, split)
    kf = filters.reference_filter(formats.read_records(path, task), task,
                                  split)
    if not kf.records:
      raise DataError(path, f"no records left after the reference filters "
                      f"({kf.report.summary()})")
    if tokenizer is not None and max_len is not None:
      check_lengths(kf.records, tokenizer, max_len, truncate=truncate,
                    source=path, lines=kf.lines)
    splits[split] = kf.records
    reports[split] = kf.report
    ids[split] = {r.id for r in kf.records}
  # Shared ids across splits are legal (separate raw files) but worth a word.
  warnings = []
  for i, a in enumerate(SPLITS):
    for b in SPLITS[i + 1:]:
      shared = len(ids[a] & ids[b])
      if shared:
        warnings.append(f"{shared} ids appear in both {a} and {b}")
  report = BenchmarkReport(task=task, source=data_dir, splits=reports,
                           warnings=tuple(warnings))
  return Benchmark(**splits), report


def export_benchmark(benchmark: Benchmark, out_dir: str) -> Dict[str, int]:
  """Writes a benchmark as a directory `load_benchmark_dir` reads back."""
  os.makedirs(out_dir, exist_ok=True)
  return {s: kilt.write_kilt_jsonl(getattr(benchmark, s),
                                   os.path.join(out_dir, f"{s}.jsonl"))
          for s in SPLITS}
