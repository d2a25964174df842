"""Train-once base models, cached as Orbax checkpoints.

``load_or_train_base(task, benchmark, ...)`` returns a ``BaseModel``: on first
use it trains (FEVER: the MiniLM classifier; zsRE: the MiniLM-initialised
BART), evaluates and saves it; afterwards it restores the saved copy.

Cache layout (``<cache_dir>/base_models/<task>-<data_key>-<fingerprint16>/``):
  params/          Orbax ``StandardCheckpointer`` pytree (never pickle)
  config.json      the transformers config (BertConfig / BartConfig)
  tokenizer files  ``tokenizer.save_pretrained``
  info.json        fingerprint inputs, settings, training info, metrics
The folder is written under a temporary name and renamed into place, so a
crash never leaves a half-written cache entry and concurrent writers are safe.

The fingerprint hashes: the task, the recipe version, the training settings,
the source weights (file hashes) and every train record. Metrics on the other
splits carry their own fingerprint and are recomputed when those splits
change, without retraining.

``model_dir`` replaces MiniLM by any local HF folder (safetensors or Flax
msgpack, loaded without torch or hub). A folder that already holds a task
model (a BERT classifier with one label / a BART for conditional generation)
is used as is; a plain encoder (BERT) or a pretrained BART is fine-tuned with
the same recipe. ``finetune`` overrides that choice.
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, NamedTuple, Optional

import jax
import numpy as np
from absl import logging

from patcher_jax.models import base_eval
from patcher_jax.models import bart_from_minilm
from patcher_jax.models import minilm
from patcher_jax.models import qa_format
from patcher_jax.models import train_classifier as tc
from patcher_jax.models import train_seq2seq as ts

RECIPE_VERSION = 2  # bump when training code changes results
TASKS = ("fever", "zsre")
_QA_MAX_SRC = 64


class BaseModel(NamedTuple):
  """A trained base model and everything needed to use it."""
  task: str
  model: Any  # transformers Flax model object (``_do_init=False``)
  params: Dict[str, Any]
  tokenizer: Any
  config: Any  # transformers config
  info: Dict[str, Any]  # settings, training info, metrics, fingerprint
  path: Optional[str] = None  # cache folder


def default_cache_dir() -> str:
  """``$PATCHER_JAX_CACHE``, else ``~/.cache/patcher_jax``."""
  return os.environ.get("PATCHER_JAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "patcher_jax")


def default_settings(task: str):
  return tc.ClassifierSettings() if task == "fever" else (
      ts.Seq2SeqSettings())


# --------------------------------------------------------------------------
# Fingerprints.


def _sha(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str)
                        .encode()).hexdigest()


def records_hash(records) -> str:
  """Order-sensitive hash of records (id, input, answers, rephrases)."""
  h = hashlib.sha256()
  for r in records:
    h.update(json.dumps([r.id, r.input, list(r.answers), list(r.rephrases)])
             .encode())
    h.update(b"\n")
  return h.hexdigest()


def _file_hash(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def source_fingerprint(model_dir: Optional[str]) -> Dict[str, str]:
  """Identity of the starting weights: hashes of config and weight files."""
  path = model_dir or minilm.minilm_path()
  out = {"source": "minilm" if model_dir is None else "model_dir"}
  for name in sorted(os.listdir(path)):
    if name in ("config.json", "model.safetensors", "flax_model.msgpack"):
      out[name] = _file_hash(os.path.join(path, name))
  return out


def _settings_dict(settings) -> Dict[str, Any]:
  d = settings._asdict()
  return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def train_fingerprint(task: str, benchmark, settings, source: Dict) -> str:
  return _sha({"task": task, "recipe": RECIPE_VERSION,
               "settings": _settings_dict(settings), "source": source,
               "train": records_hash(benchmark.train)})


def eval_fingerprint(benchmark) -> str:
  return _sha({"val": records_hash(benchmark.val),
               "edit": records_hash(benchmark.edit),
               "test": records_hash(benchmark.test),
               "heldout_records": base_eval.HELDOUT_RECORDS,
               "recipe": RECIPE_VERSION})


# --------------------------------------------------------------------------
# Save / load.


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=str)
  os.replace(tmp, path)  # atomic


def save_base(base: BaseModel, path: str) -> str:
  """Writes ``base`` to ``path`` atomically (temp folder + rename)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path), dir=parent)
  try:
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(tmp, "params"),
               jax.tree.map(np.asarray, base.params))
    ckptr.wait_until_finished()
    base.config.save_pretrained(tmp)
    base.tokenizer.save_pretrained(tmp)
    _write_json(os.path.join(tmp, "info.json"), base.info)
    try:
      os.rename(tmp, path)
    except OSError:
      if not os.path.isdir(os.path.join(path, "params")):
        raise
      logging.info("base model already cached by another process: %s", path)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return path


def _model_class(task: str):
  from transformers import (FlaxBartForConditionalGeneration,  # pylint: disable=g-import-not-at-top
                            FlaxBertForSequenceClassification)
  return (FlaxBertForSequenceClassification if task == "fever"
          else FlaxBartForConditionalGeneration)


def load_base(path: str) -> BaseModel:
  """Restores a cached base model (params, config, tokenizer, info)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from transformers import AutoConfig, AutoTokenizer  # pylint: disable=g-import-not-at-top
  with open(os.path.join(path, "info.json")) as f:
    info = json.load(f)
  task = info["task"]
  config = AutoConfig.from_pretrained(path)
  tokenizer = AutoTokenizer.from_pretrained(path)
  params = ocp.StandardCheckpointer().restore(
      os.path.abspath(os.path.join(path, "params")))
  # on the device once: numpy leaves would be copied in at every jitted call
  params = jax.device_put(params)
  model = _model_class(task)(config, _do_init=False)
  return BaseModel(task, model, params, tokenizer, config, info, path)


# --------------------------------------------------------------------------
# Building the starting point.


def _views():
  """The data engineer's rephrase views (trainable / held-out)."""
  from patcher_jax.data import views  # pylint: disable=g-import-not-at-top
  return views.trainable_rephrases, views.held_out_rephrases


def _is_task_model(task: str, config) -> bool:
  archs = " ".join(config.architectures or [])
  if task == "fever":
    return (config.model_type == "bert" and config.num_labels == 1
            and "ForSequenceClassification" in archs)
  return config.model_type == "bart" and "ForConditionalGeneration" in archs


def _pin_bart_generation(config) -> None:
  # Hub BART configs carry beam search, n-gram blocking and forced tokens;
  # decoding here is plain greedy (qa_format.generation_config).
  for name, value in (("forced_bos_token_id", None),
                      ("forced_eos_token_id", None),
                      ("no_repeat_ngram_size", 0), ("num_beams", 1),
                      ("task_specific_params", None)):
    setattr(config, name, value)


def _untie(config, params: Dict) -> Dict:
  """An LM head of its own (a copy of the shared embedding), trainable while
  the shared table (the frozen encoder's input) stays fixed."""
  if not config.tie_word_embeddings:
    return params
  config.tie_word_embeddings = False
  params = dict(params)
  params["lm_head"] = {"kernel": np.asarray(
      params["model"]["shared"]["embedding"]).T.copy()}
  return params


def starting_point(task: str, model_dir: Optional[str], settings,
                   finetune: Optional[bool] = None):
  """(model, params, tokenizer, config, needs_training) before training."""
  from transformers import AutoConfig  # pylint: disable=g-import-not-at-top
  tokenizer = minilm.load_tokenizer(model_dir)
  if model_dir is None:
    bert_cfg = minilm.load_bert_config()
    bert = minilm.load_bert_params(config=bert_cfg)
    needs = True
  else:
    src_cfg = AutoConfig.from_pretrained(model_dir)
    needs = (not _is_task_model(task, src_cfg)) if finetune is None else (
        finetune)
    if not needs or src_cfg.model_type == "bart":
      if task == "fever" and src_cfg.model_type != "bert":
        raise ValueError(f"fever needs a BERT model, got {src_cfg.model_type}")
      cls = _model_class(task)
      loaded = cls.from_pretrained(model_dir, num_labels=1) if (
          task == "fever") else cls.from_pretrained(model_dir)
      config, params = loaded.config, jax.tree.map(np.asarray, loaded.params)
      if task == "zsre":
        _pin_bart_generation(config)
        if needs:
          params = _untie(config, params)
      return cls(config, _do_init=False), params, tokenizer, config, needs
    if src_cfg.model_type != "bert":
      raise ValueError(f"unsupported model_type {src_cfg.model_type!r} in "
                       f"{model_dir} (expected bert or bart)")
    from transformers import FlaxBertModel  # pylint: disable=g-import-not-at-top
    loaded = FlaxBertModel.from_pretrained(model_dir)
    bert_cfg = loaded.config
    bert = jax.tree.map(np.asarray, loaded.params)
  if task == "fever":
    config, params = tc.init_classifier(bert, bert_cfg, seed=settings.seed)
    return tc.classifier_model(config), params, tokenizer, config, needs
  config, params = bart_from_minilm.bart_from_bert(
      bert, bert_cfg, jax.random.PRNGKey(settings.seed),
      decoder_layers=settings.decoder_layers,
      bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
      tie_word_embeddings=settings.tie_word_embeddings)
  return ts.seq2seq_model(config), params, tokenizer, config, needs


# --------------------------------------------------------------------------
# Training.


def train_base(task: str, benchmark, model_dir: Optional[str] = None,
               settings=None, finetune: Optional[bool] = None,
               show_progress: bool = True) -> BaseModel:
  """Builds and (unless ``model_dir`` holds a task model) trains a base model."""
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
  settings = settings or default_settings(task)
  trainable, _ = _views()
  clock = time.perf_counter()
  model, params, tokenizer, config, needs = starting_point(
      task, model_dir, settings, finetune)
  load_s = time.perf_counter() - clock
  train_info: Dict[str, Any] = {"trained": needs}
  if needs:
    if task == "fever":
      texts, labels, groups = tc.training_texts(
          benchmark.train, settings.train_on_rephrases, trainable,
          settings.max_rephrases)
      params, train_info = tc.train_classifier(
          config, params, tokenizer, texts, labels, groups, settings,
          show_progress)
    else:
      qs, ans, groups = ts.training_pairs(
          benchmark.train, settings.train_on_rephrases, trainable,
          settings.max_rephrases)
      params, train_info = ts.train_seq2seq(
          model, params, tokenizer, qs, ans, groups, settings, show_progress)
    train_info["trained"] = True
  train_info["setup_seconds"] = round(load_s, 2)
  info = {"task": task, "settings": _settings_dict(settings),
          "train": train_info, "model_dir": model_dir,
          "created": time.strftime("%Y-%m-%d %H:%M:%S"),
          "load_average": list(os.getloadavg()),
          "versions": _versions()}
  return BaseModel(task, model, params, tokenizer, config, info)


def _versions() -> Dict[str, str]:
  import flax  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  return {"jax": jax.__version__, "flax": flax.__version__,
          "transformers": transformers.__version__}


def evaluate(base: BaseModel, benchmark) -> Dict[str, Any]:
  """Metrics (``base_eval.evaluate_base``) plus the trainer's train score."""
  _, held_out = _views()
  trained = base.info.get("train", {}).get("trained", False)
  clock = time.perf_counter()
  metrics = base_eval.evaluate_base(
      base.task, base.model, base.params, base.tokenizer, benchmark, held_out,
      max_src_len=_QA_MAX_SRC,
      max_new_tokens=qa_format.DEFAULT_MAX_NEW_TOKENS,
      with_train=not trained)
  if trained:
    key = "train_acc" if base.task == "fever" else "train_em"
    src = "train_acc" if base.task == "fever" else "train_inputs_em"
    metrics[key] = base.info["train"][src]
    metrics["num_train"] = len(benchmark.train)
  metrics["eval_seconds"] = round(time.perf_counter() - clock, 2)
  return metrics


def _sanitize(key: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "-" for c in key)[:60]


def load_or_train_base(task: str, benchmark, cache_dir: Optional[str] = None,
                       model_dir: Optional[str] = None, settings=None, *,
                       data_key: str = "data", finetune: Optional[bool] = None,
                       retrain: bool = False, evaluate_splits: bool = True,
                       show_progress: bool = True) -> BaseModel:
  """The cached base model for (task, train data, settings, source weights).

  Args:
    task: "fever" or "zsre".
    benchmark: a ``patcher_jax.data.Benchmark``.
    cache_dir: default ``default_cache_dir()``.
    model_dir: a local HF model folder instead of MiniLM (see module doc).
    settings: ``ClassifierSettings`` / ``Seq2SeqSettings`` (default recipe).
    data_key: a readable label for the cache folder name (the fingerprint
      covers the data itself).
    finetune: with ``model_dir``: force (True) or skip (False) training.
    retrain: ignore an existing cache entry (overwrites it).
    evaluate_splits: compute / refresh the metrics in ``info["metrics"]``.
    show_progress: tqdm bars.
  """
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
  settings = settings or default_settings(task)
  source = source_fingerprint(model_dir)
  fp = train_fingerprint(task, benchmark, settings, source)
  root = os.path.join(cache_dir or default_cache_dir(), "base_models")
  path = os.path.join(root, f"{task}-{_sanitize(data_key)}-{fp[:16]}")
  efp = eval_fingerprint(benchmark)
  if not retrain and os.path.isfile(os.path.join(path, "info.json")):
    clock = time.perf_counter()
    base = load_base(path)
    logging.info("base model: restored %s in %.1fs", path,
                 time.perf_counter() - clock)
    if evaluate_splits and base.info.get("eval_fingerprint") != efp:
      info = dict(base.info, metrics=evaluate(base, benchmark),
                  eval_fingerprint=efp)
      _write_json(os.path.join(path, "info.json"), info)
      base = base._replace(info=info)
    return base
  base = train_base(task, benchmark, model_dir, settings, finetune,
                    show_progress)
  info = dict(base.info, fingerprint=fp, source=source, data_key=data_key)
  if evaluate_splits:
    info.update(metrics=evaluate(base._replace(info=info), benchmark),
                eval_fingerprint=efp)
  base = base._replace(info=info)
  if retrain and os.path.isdir(path):
    shutil.rmtree(path)
  save_base(base, path)
  logging.info("base model: trained and cached at %s", path)
  return base._replace(path=path)


def summary(base: BaseModel) -> str:
  """One line: task, training time, metrics."""
  m = base.info.get("metrics", {})
  t = base.info.get("train", {})
  parts = [f"{base.task}", f"train {t.get('train_seconds', 0):.0f}s"]
  parts += [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(m.items()) if not k.startswith("num_")]
  return " ".join(parts)

