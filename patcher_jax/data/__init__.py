"""Data: real-format loaders, the embedded geography benchmark, tfds builders.

Public API (see README.md in this folder):
  load_benchmark(task, data_dir=None, scale="full") -> Benchmark
  load_benchmark_and_report(...) -> (Benchmark, BenchmarkReport)
  DataError, check_lengths, read_records (any format, detected), split_file
  (raw file -> benchmark directory; CLI `python -m patcher_jax split`),
  read_kilt_jsonl, write_kilt_jsonl, read_mend_json, export_benchmark,
  trainable_rephrases, held_out_rephrases.
The tfds builders live in patcher_jax.data.tfds_builders (imported on demand,
so that importing this package does not import tensorflow_datasets).
"""
from patcher_jax.data.api import SCALES, load_benchmark, load_benchmark_and_report
from patcher_jax.data.benchmark_dir import (BenchmarkReport, export_benchmark,
                                            load_benchmark_dir)
from patcher_jax.data.errors import DataError
from patcher_jax.data.filters import SPLITS, reference_filter
from patcher_jax.data.formats import SourceFile, read_records
from patcher_jax.data.kilt import KiltFile, read_kilt_jsonl, write_kilt_jsonl
from patcher_jax.data.lengths import LengthReport, check_lengths
from patcher_jax.data.mend import MendFile, MendItem, read_mend_json, write_mend_json
from patcher_jax.data.records import Benchmark, FEVER_LABELS, Record, fever_label
from patcher_jax.data.report import LoadReport
from patcher_jax.data.split import REFERENCE_RATIOS, split_file
from patcher_jax.data.views import (held_out_count, held_out_rephrases,
                                    trainable_rephrases)
