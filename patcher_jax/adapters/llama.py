"""Decoder-only Llama (transformers `FlaxLlamaForCausalLM`, e.g. SmolLM2).

The patch goes into the MLP of one decoder layer (the last by default). A
Llama layer is pre-norm:

  h = x + attn(RMSNorm_a(x));   out = h + down(silu(gate(n)) * up(n)),
  n = RMSNorm_m(h)

and the last layer's `out` goes through the final RMSNorm and the (tied)
head. The patch's neurons are GELU key-value neurons added to the MLP's
output, keyed on the residual stream h entering the MLP block:

  out = h + mlp(n) + sum_i gelu(h . k_i + b_i) v_i.

h is what gets cached: everything after it is position-wise, so the tail
(RMSNorm_m, the MLP, the residual, the final RMSNorm, the head) runs on cached
h at the answer positions only (keying on the MLP input n would need h too,
for the residual). The neurons see h through a fixed affine map, the query
q = (h - center) @ M (`QueryMap`, from the memory's h): the residual
stream of a pretrained LM has a few huge shared dimensions (SmolLM2's last
layer: |h| ~ 700, one dimension ~490 in every token, mean cosine 0.6 between
unrelated tokens), which makes q/|q|^2 keys tiny and every neuron fire
everywhere. gelu((h - c) M . k + b) = gelu(h . Mk + b - c . Mk): the same
neuron class on h, better conditioned for the optimiser. With whitening
(`fit_query_map(whiten=...)`) the map is a full matrix: the same argument. Why GELU and not the MLP's own gated SiLU form:
see BUILD.md ("Decoder-only: SmolLM2"). The patch in another layer
(`layer=`) works for the full-model forward and generation, not for the
cached tail (later layers mix positions).

Every model call runs inside `llama_rope.rope_scope` (the Flax class ignores
`config.rope_theta`).
"""
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from patcher_jax import objectives
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters.intercept import FFNSite, run_with_patch
from patcher_jax.models.llama_rope import rope_scope


class QueryMap(NamedTuple):
  """q = (h - center) @ matrix: how the patch sees the residual h
  (h = q @ inverse + center)."""
  center: jax.Array    # [d]
  matrix: jax.Array    # [d, d]
  inverse: jax.Array   # [d, d]

  def __call__(self, h):
    return (h - self.center) @ self.matrix


def identity_map(dim: int) -> QueryMap:
  eye = jnp.eye(dim, dtype=jnp.float32)
  return QueryMap(jnp.zeros((dim,), jnp.float32), eye, eye)


def fit_query_map(h_rows, whiten: Optional[float] = None) -> QueryMap:
  """The map fitted to rows h [N, d] (e.g. the memory's residuals).

  center = the rows' mean. Without `whiten`, the matrix is I / s, s = the
  median RMS of the centred rows (a typical query has norm ~ sqrt(d)).
  With `whiten` = w, it is the ZCA whitening of the rows' covariance C,
  (C + w * mean_eig(C) I)^(-1/2): a fresh key q / |q|^2 then scores any h by
  (h - c)^T (C + wI)^-1 (h_edit - c), the linear discriminant between the
  edit and the memory's cloud (the C^-1 k direction of ROME's key), which
  ranks an edit's rephrases far above unrelated facts of the same template
  where the plain direction does not (SmolLM2, 60 edits: 63 % of rephrases
  above the memory's highest score at w = 0.01, 13 % unwhitened).

  Example:
    >>> m = fit_query_map(jax.random.normal(jax.random.PRNGKey(0), (64, 4)), 0.1)
    >>> m.matrix.shape
    (4, 4)
  """
  h = jnp.asarray(h_rows, jnp.float32)
  center = jnp.mean(h, axis=0)
  x = h - center
  if whiten is None:
    rms = jnp.sqrt(jnp.mean(jnp.square(x), axis=-1))
    s = jnp.maximum(jnp.median(rms), 1e-6)
    eye = jnp.eye(h.shape[-1], dtype=jnp.float32)
    return QueryMap(center, eye / s, eye * s)
  cov = x.T @ x / x.shape[0]
  evals, evecs = jnp.linalg.eigh(cov)
  evals = jnp.maximum(evals, 0.0) + whiten * jnp.maximum(jnp.mean(evals),
                                                         1e-12)
  root = jnp.sqrt(evals)
  return QueryMap(center, (evecs / root) @ evecs.T, (evecs * root) @ evecs.T)


# The neurons' activation: "gelu" (as BERT/BART patches) or "relu" (exactly
# silent below zero: no leak onto inputs the memory loss pushed negative).
ACTIVATIONS = {"gelu": patch_lib.gelu, "relu": jax.nn.relu}


def layer_index(config, layer: Optional[int] = None) -> int:
  n = config.num_hidden_layers
  layer = n - 1 if layer is None else layer
  if not -n <= layer < n:
    raise ValueError(f"layer {layer} out of range for {n} layers")
  return layer % n


def site(config, layer: Optional[int] = None) -> FFNSite:
  """Query: the input of the MLP block's RMSNorm (the residual h); value
  side: the MLP's down projection."""
  path = ("model", "layers", str(layer_index(config, layer)))
  return FFNSite(key_path=path + ("post_attention_layernorm",),
                 value_path=path + ("mlp", "down_proj"))


def _tied_head(head, hidden, rng, train, rate):
  del rng, train, rate
  return hidden @ head["embedding"].T


def _fused_objective(head, hidden, targets, mask, margin):
  return objectives.fused_seq2seq_objective(head["fused"], hidden, targets,
                                            mask, margin)


def make_tail(config, params, query_map: Optional[QueryMap] = None,
              layer: Optional[int] = None, act: str = "gelu") -> tail_lib.Tail:
  """The frozen top of a Llama from the patched layer's MLP block input (the
  query: `query_map` of the residual h; default identity)."""
  if config.hidden_act != "silu":
    raise ValueError(f"expected a SiLU (SwiGLU) Llama, got {config.hidden_act}")
  idx = layer_index(config, layer)
  if idx != config.num_hidden_layers - 1:
    raise ValueError("the cached tail needs the patch in the last layer "
                     f"({config.num_hidden_layers - 1}), got layer {idx}")
  lp = params["model"]["layers"][str(idx)]
  ffn = {"norm_in": {"scale": lp["post_attention_layernorm"]["weight"]},
         "gate": lp["mlp"]["gate_proj"]["kernel"],
         "up": lp["mlp"]["up_proj"]["kernel"],
         "down": lp["mlp"]["down_proj"]["kernel"],
         "norm": {"scale": params["model"]["norm"]["weight"]}}
  qm = query_map or identity_map(config.hidden_size)
  ffn.update(center=qm.center, unmap=qm.inverse)
  emb = params["model"]["embed_tokens"]["embedding"]
  kernel = params["lm_head"]["kernel"] if "lm_head" in params else emb.T
  head = {"embedding": kernel.T,
          "fused": objectives.chunk_linear_head(
              kernel, jnp.zeros((kernel.shape[1],), kernel.dtype))}
  # device arrays: the tail is an argument of every jitted check and step
  ffn, head = jax.tree.map(jnp.asarray, (ffn, head))
  return tail_lib.Tail(
      ffn=ffn, head=head, head_fn=_tied_head,
      loss_fn=objectives.seq2seq_loss, wrong_fn=objectives.argmax_wrong,
      norm_eps=config.rms_norm_eps, act=ACTIVATIONS[act],
      objective_fn=_fused_objective, layout="pre_rms")


def head_norm(tail: tail_lib.Tail) -> float:
  """The largest norm of a head row (see drafts.py's cheap certificate)."""
  return float(jnp.max(jnp.linalg.norm(tail.head["embedding"], axis=-1)))


def forward(model, params, input_ids, attention_mask, *, bank=None,
            query_map: Optional[QueryMap] = None,
            layer: Optional[int] = None, act: str = "gelu"):
  """Full forward: (logits [B, T, V], residuals h [B, T, d]); right padding.
  The bank sees `query_map(h)` (identity if None); its neurons use `act`."""
  delta_fn = None
  if bank is not None:
    qm = query_map or identity_map(model.config.hidden_size)
    delta_fn = lambda h: patch_lib.bank_output(bank, qm(h), ACTIVATIONS[act])
  with rope_scope(model.config):
    out, captured = run_with_patch(
        lambda: model(input_ids, attention_mask, params=params),
        site(model.config, layer), delta_fn)
  return out.logits, captured[0]


def residuals(model, params, input_ids, attention_mask):
  """The last layer's MLP-block inputs h at every position: [B, T, d]
  (the queries are `QueryMap(h)`)."""
  return forward(model, params, input_ids, attention_mask)[1]


def hidden_word_residuals(model, params, input_ids, attention_mask,
                          prompt_len, rng, num: int, word_drop: float):
  """`num` variants of one prompt's residuals h: [num, T, d].

  Each variant hides every prompt token but the first and the last with
  probability `word_drop` (masked out of attention: a paraphrase-like
  deletion made from the input alone); the answer tokens that follow the
  prompt (teacher forcing) stay. Inputs are [1, T] arrays, right padded.
  """
  t = input_ids.shape[-1]
  pos = jnp.arange(t)[None, :]
  keep = jax.random.bernoulli(rng, 1.0 - word_drop, (num, t))
  keep = keep | (pos == 0) | (pos >= prompt_len - 1)
  mask = jnp.repeat(attention_mask[:1], num, axis=0) * keep.astype(
      attention_mask.dtype)
  return residuals(model, params, jnp.repeat(input_ids[:1], num, axis=0),
                   mask)


@functools.lru_cache(maxsize=8)
def greedy_fn(model, max_new_tokens: int, layer: Optional[int] = None,
              act: str = "gelu"):
  """jit(fn(params, bank, query_map, ids [B, W], lengths [B])
  -> [B, max_new_tokens]):
  greedy continuation of right-padded prompts by the patched model.

  Each step runs the whole model on the fixed-width buffer (prompt + tokens
  so far; the causal mask hides what lies after each position), so there is
  no KV cache: simple and exact, meant for the few answers drafts do not
  settle (see tasks/lm_facts.py).
  """
  def fn(params, bank, query_map, ids, lengths):
    b, w = ids.shape
    buf = jnp.concatenate([ids, jnp.zeros((b, max_new_tokens), ids.dtype)], 1)
    buf = jnp.where(jnp.arange(w + max_new_tokens)[None] < lengths[:, None],
                    buf, 0)
    mask = jnp.ones_like(buf)
    rows = jnp.arange(b)

    def step(t, buf):
      logits, _ = forward(model, params, buf, mask, bank=bank,
                          query_map=query_map, layer=layer, act=act)
      nxt = jnp.argmax(logits[rows, lengths - 1 + t], axis=-1)
      return buf.at[rows, lengths + t].set(nxt.astype(buf.dtype))

    buf = jax.lax.fori_loop(0, max_new_tokens, step, buf)
    take = lengths[:, None] + jnp.arange(max_new_tokens)[None]
    return jnp.take_along_axis(buf, take, axis=1)

  return jax.jit(fn)
