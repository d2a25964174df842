"""Per-task edit objectives: the edit loss and which positions are wrong.

Each pair works on the tail's logits at the cached positions: logits [P, C],
targets [P], mask [P]. They are model-agnostic; adapters pick one.
"""
import jax.numpy as jnp

from patcher_jax import losses


def binary_loss(logits, targets, mask):
  """Reference FEVER loss: BCE - 0.1 * entropy on a single logit (C == 1)."""
  return losses.binary_entropy_loss(logits[..., 0], targets, mask=mask)


def binary_wrong(logits, targets, mask):
  """A position is wrong when (logit > 0) disagrees with the 0/1 label."""
  return ((logits[..., 0] > 0) != (targets == 1)) & mask


def multiclass_loss(logits, targets, mask):
  """Cross-entropy for heads with C >= 2 labels."""
  return losses.softmax_cross_entropy(logits, targets, mask)


def argmax_wrong(logits, targets, mask):
  """Argmax differs from the target (labels or teacher-forced next tokens)."""
  return (jnp.argmax(logits, axis=-1) != targets) & mask


def seq2seq_loss(logits, targets, mask):
  """Reference zsRE loss: label-smoothed NLL (eps 0.1) per target token."""
  return losses.label_smoothed_nll(logits, targets, mask, epsilon=0.1)
