"""The tail: everything from the patched FFN's input to the model's logits.

BERT's last encoder layer and BART's last decoder layer end the same way
(layout "post_ln"):  y = LayerNorm(q + dropout(fc2(dropout_a(act(fc1(q)))) + delta))
where q is the FFN input (also the residual) and delta is what the patch adds.
A Llama's last layer (layout "pre_rms") is pre-norm, then the model's final
RMSNorm:  y = RMSNorm_f(h + down(silu(gate(n)) * up(n)) + delta), n = RMSNorm(h)
where h is the residual stream entering the MLP block and the query is
q = (h - center) @ M (see adapters/llama.py).
The tail is position-wise, so an edit step runs it on the few cached queries that
matter (BERT: [CLS]; BART: the answer positions), never the layers below.

A `Tail` holds the frozen parameters plus the model-specific head and the
task-specific loss; the editor calls `tail_logits` and knows nothing else of
the model. Adapters (`patcher_jax.adapters`) build Tails.
"""
from typing import Any, Callable, Optional

import chex
from flax import struct
import jax
import jax.numpy as jnp

from patcher_jax import patch as patch_lib

# head(head_params, hidden [..., d], rng, train, dropout_rate) -> logits [..., C]
HeadFn = Callable[[Any, chex.Array, chex.PRNGKey, bool, float], chex.Array]
# loss(logits [P, C], targets [P], mask [P]) -> scalar
LossFn = Callable[[chex.Array, chex.Array, chex.Array], chex.Array]
# wrong(logits [P, C], targets [P], mask [P], margin) -> [P] bool; masked
# positions are never wrong; margin > 0 also flags right-but-unsure positions.
WrongFn = Callable[[chex.Array, chex.Array, chex.Array, float], chex.Array]
# objective(head_params, hidden [P, d], targets [P], mask [P], margin) ->
#   (loss, wrong [P], unsure [P]): loss_fn, wrong_fn(0) and wrong_fn(margin)
#   of the eval-mode head's logits, fused (e.g. one pass over a big LM head).
ObjectiveFn = Callable[..., Any]


@struct.dataclass
class Tail:
  """Frozen top of the network on cached FFN inputs.

  Attributes:
    ffn: {"fc1": {"kernel", "bias"}, "fc2": {...}, "norm": {"scale", "bias"}}.
    head: parameters of the head (pooler + classifier, or the LM head).
    head_fn, loss_fn, wrong_fn: see the type aliases above (static).
    norm_eps: LayerNorm epsilon of the patched layer.
    hidden_dropout: dropout on the FFN output (train mode only).
    activation_dropout: dropout on the FFN activations, patch included.
    head_dropout: dropout inside the head (BERT's classifier dropout).
    act: the patch neurons' activation (post_ln: also the FFN's).
    objective_fn: optional fused head + loss + wrong (see ObjectiveFn); used
      by `tail_objective` when the head has no dropout to apply.
    layout: "post_ln" (ffn: fc1, fc2, norm {scale, bias}) or "pre_rms"
      (ffn: norm_in {scale}, gate, up, down kernels, norm {scale}: the final
      RMSNorm, center [d] and unmap [d, d]: h = q @ unmap + center; no
      dropout).
  """
  ffn: Any
  head: Any
  head_fn: HeadFn = struct.field(pytree_node=False)
  loss_fn: LossFn = struct.field(pytree_node=False)
  wrong_fn: WrongFn = struct.field(pytree_node=False)
  norm_eps: float = struct.field(pytree_node=False, default=1e-12)
  hidden_dropout: float = struct.field(pytree_node=False, default=0.0)
  activation_dropout: float = struct.field(pytree_node=False, default=0.0)
  head_dropout: float = struct.field(pytree_node=False, default=0.0)
  act: Callable = struct.field(pytree_node=False, default=patch_lib.gelu)
  objective_fn: Optional[ObjectiveFn] = struct.field(pytree_node=False,
                                                     default=None)
  layout: str = struct.field(pytree_node=False, default="post_ln")


def dropout(rng: chex.PRNGKey, x: chex.Array, rate: float) -> chex.Array:
  """Inverted dropout, as flax.linen.Dropout computes it."""
  if rate <= 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def layer_norm(x, scale, bias, eps):
  """flax.linen.LayerNorm's arithmetic (its default fast variance), so the
  tail matches the full model to float32 rounding."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  mean2 = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
  var = jnp.maximum(0.0, mean2 - jnp.square(mean))
  return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias


def rms_norm(x, scale, eps):
  """transformers' FlaxLlamaRMSNorm arithmetic."""
  var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
  return scale * (x / jnp.sqrt(var + eps))


def ffn_output(tail: Tail, q: chex.Array, rng: Optional[chex.PRNGKey] = None,
               train: bool = False) -> chex.Array:
  """The frozen FFN's own output at queries q [..., d] (no patch, no output
  dropout): what the patch's delta is added to."""
  p = tail.ffn
  if tail.layout == "pre_rms":
    n = rms_norm(residual(tail, q), p["norm_in"]["scale"], tail.norm_eps)
    return (jax.nn.silu(n @ p["gate"]) * (n @ p["up"])) @ p["down"]
  h = tail.act(q @ p["fc1"]["kernel"] + p["fc1"]["bias"])
  if train:
    h = dropout(rng, h, tail.activation_dropout)
  return h @ p["fc2"]["kernel"] + p["fc2"]["bias"]


def residual(tail: Tail, q: chex.Array) -> chex.Array:
  """The residual stream at the patched FFN, from its query: q itself
  (post_ln), or h = q @ unmap + center (pre_rms: the query is the residual
  centred and mapped, see adapters/llama.py)."""
  if tail.layout == "pre_rms":
    return q @ tail.ffn["unmap"] + tail.ffn["center"]
  return q


def norm(tail: Tail, x: chex.Array) -> chex.Array:
  """The normalisation after the residual add (LayerNorm or RMSNorm)."""
  p = tail.ffn["norm"]
  if tail.layout == "pre_rms":
    return rms_norm(x, p["scale"], tail.norm_eps)
  return layer_norm(x, p["scale"], p["bias"], tail.norm_eps)


def norm_spread(tail: Tail, x: chex.Array) -> chex.Array:
  """What that normalisation divides by (std or root mean square) [...]."""
  if tail.layout == "pre_rms":
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=-1))
  return jnp.std(x, axis=-1)


def ffn_hidden(tail: Tail, q: chex.Array, delta: chex.Array,
               rng: chex.PRNGKey, train: bool) -> chex.Array:
  """Output of the patched layer: norm(q + dropout(ffn(q) + delta))."""
  r_act, r_out = jax.random.split(rng)
  out = ffn_output(tail, q, r_act, train) + delta
  if train:
    out = dropout(r_out, out, tail.hidden_dropout)
  return norm(tail, residual(tail, q) + out)


def tail_logits(tail: Tail, q: chex.Array, delta: chex.Array,
                rng: chex.PRNGKey, train: bool = False) -> chex.Array:
  """Logits of the patched model from cached queries q [..., d]."""
  r_ffn, r_head = jax.random.split(rng)
  hidden = ffn_hidden(tail, q, delta, r_ffn, train)
  return tail.head_fn(tail.head, hidden, r_head, train, tail.head_dropout)


def tail_objective(tail: Tail, q: chex.Array, delta: chex.Array,
                   rng: chex.PRNGKey, train: bool, targets: chex.Array,
                   mask: chex.Array, margin: float = 0.0):
  """(edit loss, wrong [P], unsure [P]) of the patched model at queries q [P, d].

  What `tail.loss_fn` / `tail.wrong_fn` say of `tail_logits`, but through the
  tail's fused objective when it has one (the same noise: rngs split alike).
  """
  r_ffn, r_head = jax.random.split(rng)
  hidden = ffn_hidden(tail, q, delta, r_ffn, train)
  if tail.objective_fn is not None and not (train and tail.head_dropout > 0):
    return tail.objective_fn(tail.head, hidden, targets, mask, margin)
  logits = tail.head_fn(tail.head, hidden, r_head, train, tail.head_dropout)
  return logits_objective(tail, logits, targets, mask, margin)


def logits_objective(tail: Tail, logits, targets, mask, margin: float = 0.0):
  """(loss, wrong, unsure) of given logits [P, C]."""
  return (tail.loss_fn(logits, targets, mask),
          tail.wrong_fn(logits, targets, mask, 0.0),
          tail.wrong_fn(logits, targets, mask, margin))
