"""Both tasks as tensorflow_datasets builders (TensorFlow not needed).

Import this module to register `patcher_fever` and `patcher_zsre`; then, for
the embedded geography benchmark::

  import tensorflow_datasets as tfds
  from patcher_jax.data import tfds_builders  # registers the builders
  ds = tfds.data_source("patcher_zsre/full", data_dir="~/tensorflow_datasets")
  ds["edit"][0]   # {"id": b"...", "input": b"...", "answers": [b"..."], ...}

(`tfds.load(...)` works the same where TensorFlow is installed.) Configs
"full", "small" and "tiny" are the embedded benchmark at that scale, seed 0.
The "local" config reads a benchmark directory (train/val/edit/test.jsonl, the
format `run.py --data_dir` reads) given as tfds' manual_dir::

  tfds.data_source("patcher_fever/local", data_dir=TFDS_DIR,
                   download_and_prepare_kwargs={"download_config":
                       tfds.download.DownloadConfig(manual_dir=BENCH_DIR)})

tfds caches a build by name, config and version, so one TFDS_DIR serves one
BENCH_DIR under "local"; `builder_for_dir` names the config after the files'
content instead, so changed or other files get their own build.

Splits: train, val, edit, test, in the plain loader's record order (shuffling
is disabled). Features: id, input (text), answers, rephrases (sequences of
text). Records pass the same validation and reference filters as
`load_benchmark`.
"""
import hashlib
import inspect
import os
from typing import Optional

from etils import epath
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from patcher_jax.data import api
from patcher_jax.data.benchmark_dir import split_path
from patcher_jax.data.filters import SPLITS
from patcher_jax.data.records import Record

_DESCRIPTION = """
Sequential model-editing benchmark in the Transformer-Patcher layout: {task}.
Each example is one record: an input, its gold answers and its rephrases.
The default configs are generated from real geography facts shipped in Python
packages (see patcher_jax/data/facts/ATTRIBUTION.md).
"""
_LOCAL = "local"


class PatcherConfig(tfds.core.BuilderConfig):
  """An embedded scale and seed, or a benchmark directory."""

  def __init__(self, *, scale: str = "full", seed: int = 0,
               source_dir: Optional[str] = None, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale
    self.seed = seed
    self.source_dir = source_dir


def geo_config(scale: str, seed: int = 0) -> PatcherConfig:
  """The embedded benchmark at `scale` with another `seed`."""
  name = scale if seed == 0 else f"{scale}_seed{seed}"
  return PatcherConfig(name=name, scale=scale, seed=seed,
                       description=f"embedded geography, {scale}, seed {seed}")


def _content_hash(task: str, source_dir: str) -> str:
  h = hashlib.sha256()
  for split in SPLITS:
    with open(split_path(source_dir, task, split), "rb") as f:
      h.update(f.read())
  return h.hexdigest()[:12]


class _PatcherBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared by both tasks; subclasses set TASK."""
  TASK = ""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      geo_config("full"), geo_config("small"), geo_config("tiny"),
      PatcherConfig(name=_LOCAL, description="a benchmark directory given "
                    "as manual_dir"),
  ]
  DEFAULT_CONFIG_NAME = "full"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  For the "local" config only: put train.jsonl, val.jsonl, edit.jsonl and
  test.jsonl (KILT / Transformer-Patcher format) in the manual_dir, e.g. the
  output of `python -m patcher_jax split`.
  """

  def __init__(self, *, file_format=None, **kwargs):
    # array_record: written and read without TensorFlow, random access for
    # tfds.data_source. (tfrecord, tfds' default, needs TensorFlow to write.)
    super().__init__(file_format=file_format or "array_record", **kwargs)

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # tfds 4.9.10's default looks up `importlib_resources.abc` for builders in
    # packages, a backport it only installs on Python < 3.9.
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=_DESCRIPTION.format(task=self.TASK),
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "input": tfds.features.Text(),
            "answers": tfds.features.Sequence(tfds.features.Text()),
            "rephrases": tfds.features.Sequence(tfds.features.Text()),
        }),
        supervised_keys=None,
        disable_shuffling=True,   # keep the edit stream's order
        homepage="https://github.com/ZeroYuHuang/Transformer-Patcher",
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    if cfg.source_dir is not None:
      source = cfg.source_dir
    elif cfg.name == _LOCAL:
      source = os.fspath(dl_manager.manual_dir)
    else:
      source = None
    if source is None:
      bench = api.load_benchmark(self.TASK, scale=cfg.scale, seed=cfg.seed)
    else:
      bench = api.load_benchmark(self.TASK, data_dir=source)
    return {split: self._generate_examples(getattr(bench, split))
            for split in SPLITS}

  def _generate_examples(self, records):
    for i, r in enumerate(records):
      yield i, {"id": r.id, "input": r.input, "answers": list(r.answers),
                "rephrases": list(r.rephrases)}


class PatcherFever(_PatcherBuilder):
  """FEVER-style fact checking: answers are SUPPORTS or REFUTES."""
  TASK = "fever"


class PatcherZsre(_PatcherBuilder):
  """zsRE-style closed-book QA: one answer per question."""
  TASK = "zsre"


BUILDERS = {"fever": PatcherFever, "zsre": PatcherZsre}


def builder_for_dir(task: str, source_dir: str, data_dir: str,
                    **kwargs) -> _PatcherBuilder:
  """A builder over a benchmark directory, its config named by content."""
  config = PatcherConfig(
      name=f"dir_{_content_hash(task, source_dir)}", source_dir=source_dir,
      description=f"benchmark directory {os.path.abspath(source_dir)}")
  return BUILDERS[task](config=config, data_dir=data_dir, **kwargs)


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def example_to_record(example) -> Record:
  """A tfds example (data_source dict of bytes, or numpy) back to a Record."""
  seq = lambda v: tuple(_text(x) for x in list(v))
  return Record(id=_text(example["id"]), input=_text(example["input"]),
                answers=seq(example["answers"]),
                rephrases=seq(example["rephrases"]))
