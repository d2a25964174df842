"""tfds builders: they build without TensorFlow and read back what the plain
loader reads."""
import os
import shutil

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from patcher_jax.data import load_benchmark  # noqa: E402
from patcher_jax.data import tfds_builders as tb  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
SPLITS = ("train", "val", "edit", "test")


def _records(source):
  return tuple(tb.example_to_record(source[i]) for i in range(len(source)))


@pytest.mark.parametrize("task", ["zsre", "fever"])
def test_embedded_tiny_round_trip(tmp_path, task):
  ds = tfds.data_source(f"patcher_{task}/tiny", data_dir=str(tmp_path))
  bench = load_benchmark(task, scale="tiny")
  for split in SPLITS:
    assert _records(ds[split]) == getattr(bench, split), split


def test_registered_names_and_configs():
  assert {"patcher_fever", "patcher_zsre"} <= set(tfds.list_builders(with_community_datasets=False))
  builder = tfds.builder("patcher_zsre/small", data_dir="/nonexistent")
  assert builder.builder_config.scale == "small"
  assert set(builder.info.features) == {"id", "input", "answers", "rephrases"}


@pytest.mark.parametrize("task", ["zsre", "fever"])
def test_local_config_reads_a_benchmark_directory(tmp_path, task):
  source = os.path.join(FIXTURES, task)
  ds = tfds.data_source(
      f"patcher_{task}/local", data_dir=str(tmp_path),
      download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
          manual_dir=source)})
  bench = load_benchmark(task, data_dir=source)   # reference filters applied
  for split in SPLITS:
    assert _records(ds[split]) == getattr(bench, split), split


def test_local_config_without_files_says_what_to_do(tmp_path):
  with pytest.raises(AssertionError, match="train.jsonl, val.jsonl"):
    tfds.data_source("patcher_fever/local", data_dir=str(tmp_path))


def test_builder_for_dir_is_named_by_content(tmp_path):
  a = tb.builder_for_dir("zsre", os.path.join(FIXTURES, "zsre"), str(tmp_path))
  shutil.copytree(os.path.join(FIXTURES, "zsre"), tmp_path / "copy")
  b = tb.builder_for_dir("zsre", str(tmp_path / "copy"), str(tmp_path))
  assert a.builder_config.name == b.builder_config.name
  with open(tmp_path / "copy" / "test.jsonl", "a") as f:
    f.write('{"id": "t2", "input": "Q?", "output": ["A"]}\n')
  c = tb.builder_for_dir("zsre", str(tmp_path / "copy"), str(tmp_path))
  assert c.builder_config.name != a.builder_config.name
  c.download_and_prepare()
  ds = c.as_data_source()
  assert _records(ds["test"]) == load_benchmark(
      "zsre", data_dir=str(tmp_path / "copy")).test
