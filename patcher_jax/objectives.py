"""Per-task edit objectives: the edit loss and which positions are wrong.

Each pair works on the tail's logits at the cached positions: logits [P, C],
targets [P], mask [P]. They are model-agnostic; adapters pick one.
"""
import jax
import jax.numpy as jnp

from patcher_jax import losses


def binary_loss(logits, targets, mask):
  """Reference FEVER loss: BCE - 0.1 * entropy on a single logit (C == 1)."""
  return losses.binary_entropy_loss(logits[..., 0], targets, mask=mask)


def binary_wrong(logits, targets, mask, margin=0.0):
  """Wrong when (logit > 0) disagrees with the 0/1 label, or when the logit is
  on the right side by less than `margin` (a confidence requirement)."""
  logit = logits[..., 0]
  wrong = (logit > 0) != (targets == 1)
  signed = jnp.where(targets == 1, logit, -logit)
  return (wrong | (signed < margin)) & mask


def multiclass_loss(logits, targets, mask):
  """Cross-entropy for heads with C >= 2 labels."""
  return losses.softmax_cross_entropy(logits, targets, mask)


def argmax_wrong(logits, targets, mask, margin=0.0):
  """Argmax differs from the target (labels or teacher-forced next tokens), or
  the target's logit leads the runner-up by less than `margin`."""
  wrong = jnp.argmax(logits, axis=-1) != targets
  gold = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  others = jnp.where(jax.nn.one_hot(targets, logits.shape[-1], dtype=bool),
                     -jnp.inf, logits)
  lead = gold - jnp.max(others, axis=-1)
  return (wrong | (lead < margin)) & mask


def seq2seq_loss(logits, targets, mask):
  """Reference zsRE loss: label-smoothed NLL (eps 0.1) per target token."""
  return losses.label_smoothed_nll(logits, targets, mask, epsilon=0.1)


# -- Fused linear head + label-smoothed NLL ----------------------------------
#
# A seq2seq edit step needs, at a few answer positions, the label-smoothed NLL
# over the whole vocabulary and which positions are wrong. On CPU the cost is
# reading the [d, V] head from memory (47 MB for d=384, V=30522), not the
# arithmetic: logits then the backward pass read it twice per step. The fused
# objective reads it once: one pass over vocabulary chunks keeps an online
# softmax (running max, sum and softmax-weighted mean of the head rows, as in
# flash attention), which gives the loss, its gradient w.r.t. the hidden
# state, the argmax and the gold logit's lead at the same time.

SEQ2SEQ_EPSILON = 0.1   # the reference's label smoothing (seq2seq_loss)


def chunk_linear_head(kernel, bias, chunk: int = 2048) -> dict:
  """A linear head [d, V] (+ bias [V]) as vocabulary chunks for the fused
  objective: {"w": [c, C, d], "b": [c, C] (-inf past V), "w_sum": [d],
  "b_sum": [], "num_classes": []}."""
  d, v = kernel.shape
  chunk = min(chunk, v)
  c = -(-v // chunk)
  pad = c * chunk - v
  w = jnp.pad(kernel.T, ((0, pad), (0, 0))).reshape(c, chunk, d)
  b = jnp.pad(bias, (0, pad), constant_values=-jnp.inf).reshape(c, chunk)
  return {"w": w, "b": b, "w_sum": jnp.sum(kernel, axis=1),
          "b_sum": jnp.sum(bias), "num_classes": jnp.asarray(v, jnp.float32)}


def _softmax_pass(head, hidden, targets):
  """One pass over the chunks for rows hidden [R, d] with targets [R].

  Returns lse, gold logit, best other logit, argmax (first index) [R] and the
  softmax-weighted mean of the head rows [R, d].
  """
  w, b = head["w"], head["b"]
  c, size, _ = w.shape
  r = hidden.shape[0]
  neg = jnp.full((r,), -jnp.inf, hidden.dtype)

  def body(carry, xs):
    m, s, g, gold, other, best, arg = carry
    w_c, b_c, j = xs
    z = hidden @ w_c.T + b_c                                   # [R, C]
    col = targets - j * size                                   # [R]
    here = (col >= 0) & (col < size)
    is_t = jnp.arange(size)[None, :] == col[:, None]
    gold = jnp.where(here, jnp.sum(jnp.where(is_t, z, 0.0), -1), gold)
    other = jnp.maximum(other, jnp.max(jnp.where(is_t, -jnp.inf, z), -1))
    z_max = jnp.max(z, -1)
    arg = jnp.where(z_max > best, j * size + jnp.argmax(z, -1), arg)
    best = jnp.maximum(best, z_max)
    m_new = jnp.maximum(m, z_max)
    scale = jnp.exp(m - m_new)
    e = jnp.exp(z - m_new[:, None])
    s = s * scale + jnp.sum(e, -1)
    g = g * scale[:, None] + e @ w_c
    return (m_new, s, g, gold, other, best, arg), None

  init = (neg, jnp.zeros((r,), hidden.dtype),
          jnp.zeros(hidden.shape, hidden.dtype), jnp.zeros((r,), hidden.dtype),
          neg, neg, jnp.zeros((r,), jnp.int32))
  (m, s, g, gold, other, _, arg), _ = jax.lax.scan(
      body, init, (w, b, jnp.arange(c)))
  return m + jnp.log(s), gold, other, arg, g / s[:, None]


def _smoothed_nll_rows(head, hidden, targets):
  """(per-row label-smoothed NLL [R], its gradient [R, d], stats)."""
  lse, gold, other, arg, mean_w = _softmax_pass(head, hidden, targets)
  v = head["num_classes"]
  eps_i = SEQ2SEQ_EPSILON / (v - 1.0)
  keep = 1.0 - SEQ2SEQ_EPSILON - eps_i
  z_sum = hidden @ head["w_sum"] + head["b_sum"]
  loss = keep * (lse - gold) + eps_i * (v * lse - z_sum)
  w_t = head["w"].reshape(-1, hidden.shape[-1])[targets]
  grad = keep * (mean_w - w_t) + eps_i * (v * mean_w - head["w_sum"])
  return loss, grad, (gold, other, arg)


@jax.custom_vjp
def _fused_rows(head, hidden, targets):
  loss, _, stats = _smoothed_nll_rows(head, hidden, targets)
  return loss, stats


def _fused_rows_fwd(head, hidden, targets):
  loss, grad, stats = _smoothed_nll_rows(head, hidden, targets)
  return (loss, stats), grad


def _fused_rows_bwd(grad, cotangents):
  # Only the loss is differentiable; the head is frozen.
  ct_loss, _ = cotangents
  return None, ct_loss[:, None] * grad, None


_fused_rows.defvjp(_fused_rows_fwd, _fused_rows_bwd)


def fused_seq2seq_objective(head, hidden, targets, mask, margin=0.0):
  """`seq2seq_loss` and `argmax_wrong` (margin 0 and `margin`) of the logits
  of a chunked linear head (`chunk_linear_head`), in one pass over it.

  hidden [P, d], targets/mask [P] -> (loss, wrong [P], unsure [P]).
  """
  loss, (gold, other, arg) = _fused_rows(head, hidden, targets)
  gold, other = jax.lax.stop_gradient(gold), jax.lax.stop_gradient(other)
  loss = (jnp.sum(jnp.where(mask, loss, 0.0))
          / jnp.maximum(jnp.sum(mask), 1))
  lead = gold - other
  wrong = (arg != targets) & mask
  unsure = (wrong | (lead < margin)) & mask
  return loss, wrong, unsure
