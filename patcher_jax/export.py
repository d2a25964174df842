"""Export a patched model as a standard transformers checkpoint.

A patch neuron is an FFN neuron (key = a column of the first FFN matrix, its
bias, value = a row of the second; the FFN's own GELU), so the live neurons
join the last FFN: BERT's last `intermediate.dense` / `output.dense`, BART's
last decoder `fc1` / `fc2` grow by n. A transformers config has ONE width for
all those layers (`intermediate_size` / `decoder_ffn_dim`), so the other
layers are zero-padded to the same width: a zero key, bias and value add
exactly nothing (gelu(0) * 0). The result loads with
`FlaxBertForSequenceClassification` / `FlaxBartForConditionalGeneration
.from_pretrained(dir)` and nothing of patcher_jax.
"""
import copy
import json
import os
from typing import Any, Dict, Tuple

import numpy as np

from patcher_jax import bank_io
from patcher_jax import patch as patch_lib

INFO = "patcher_jax_export.json"


def _layers(task: str, params) -> Dict[str, Any]:
  """{layer name: (key Dense params, value Dense params)} of the FFNs that
  share the config's width."""
  if task == "fever":
    layers = params["bert"]["encoder"]["layer"]
    return {k: (v["intermediate"]["dense"], v["output"]["dense"])
            for k, v in layers.items()}
  layers = params["model"]["decoder"]["layers"]
  return {k: (v["fc1"], v["fc2"]) for k, v in layers.items()}


def _grow(key_dense, value_dense, keys, biases, values):
  """The Dense pair widened by neurons: kernel [d, F] -> [d, F+n], bias
  [F] -> [F+n], value kernel [F, d] -> [F+n, d]."""
  dt = np.asarray(key_dense["kernel"]).dtype
  key_dense["kernel"] = np.concatenate(
      [np.asarray(key_dense["kernel"]), np.asarray(keys, dt).T], axis=1)
  key_dense["bias"] = np.concatenate(
      [np.asarray(key_dense["bias"]), np.asarray(biases, dt)])
  value_dense["kernel"] = np.concatenate(
      [np.asarray(value_dense["kernel"]), np.asarray(values, dt)], axis=0)


def merged_params(task: str, config, params, bank) -> Tuple[Any, Any]:
  """(config, params) of the model with the bank's live neurons in its last
  FFN and every other FFN of that stack zero-padded to the same width.

  Args:
    task: "fever" (a BERT classifier) or "zsre" (a BART).
    config: the transformers config (not modified: a copy is returned).
    params: the model's parameters (not modified).
    bank: a PatchBank on the last FFN.

  Example:
    >>> # config, params = merged_params("fever", model.config, params, bank)
    >>> # FlaxBertForSequenceClassification(config).save_pretrained(
    >>> #     out, params=params)
  """
  live = patch_lib.live_neurons(bank)
  n, d = live["keys"].shape
  params = _copy_tree(params)
  config = copy.deepcopy(config)
  layers = _layers(task, params)
  last = str(len(layers) - 1)
  for name, (key_dense, value_dense) in layers.items():
    if name == last:
      _grow(key_dense, value_dense, live["keys"], live["biases"],
            live["values"])
    else:
      _grow(key_dense, value_dense, np.zeros((n, d)), np.zeros((n,)),
            np.zeros((n, d)))
  if task == "fever":
    config.intermediate_size += n
  else:
    config.decoder_ffn_dim += n
  return config, params


def _copy_tree(tree):
  if isinstance(tree, dict):
    return {k: _copy_tree(v) for k, v in tree.items()}
  return np.asarray(tree)


def export(ed, out_dir: str) -> str:
  """Write the Editor's patched model to `out_dir` (atomically): the
  transformers config, model.safetensors, the tokenizer, for zsRE the pinned
  greedy generation config, and patcher_jax_export.json (which edits, which
  base).

  Returns:
    out_dir.
  """
  config, params = merged_params(ed.task, ed.base.config, ed.base.params,
                                 ed.bank)
  model = type(ed.base.model)(config, _do_init=False)
  out_dir = os.path.abspath(out_dir)
  with bank_io.atomic_dir(out_dir) as tmp:
    model.save_pretrained(tmp, params=params, safe_serialization=True)
    ed.base.tokenizer.save_pretrained(tmp)
    if ed.task == "zsre":
      from patcher_jax.models import qa_format  # pylint: disable=g-import-not-at-top
      qa_format.generation_config(
          config, ed.runtime.max_new_tokens).save_pretrained(tmp)
    with open(os.path.join(tmp, INFO), "w") as f:
      json.dump({"task": ed.task, "base_fingerprint": ed.fingerprint,
                 "neurons": int(np.asarray(ed.bank.live).sum()),
                 "edits": ed.live_edits}, f, indent=1)
  return out_dir
