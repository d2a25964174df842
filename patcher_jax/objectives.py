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
