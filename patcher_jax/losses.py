"""The losses of one edit: edit (task) loss, activation loss, memory loss.

Everything acts on neuron *pre*-activations (x . k + b), as the reference does.
Sets that the reference builds with padding or duplication are expressed with
masks here, so shapes stay static under jit.
"""
import chex
import jax
import jax.numpy as jnp


def top_mean(values: chex.Array, k: int, mask=None) -> chex.Array:
  """Mean of the k largest valid entries (all of them if fewer than k).

  The reference's `TopMean_k`, over the flattened array. Invalid entries
  (mask False) never count; an all-invalid set gives 0.
  """
  if mask is None:
    mask = jnp.ones(values.shape, bool)
  mask = jnp.broadcast_to(mask, values.shape).reshape(-1)
  values = values.reshape(-1)
  if k >= values.shape[0]:        # every valid entry counts: no selection
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(mask), 1)
  top, idx = jax.lax.top_k(jnp.where(mask, values, -jnp.inf), k)
  valid = mask[idx]
  total = jnp.sum(jnp.where(valid, top, 0.0))
  return total / jnp.maximum(jnp.sum(valid), 1)


def safe_exp(x: chex.Array, cap: float = 30.0) -> chex.Array:
  """exp(x) below `cap`, continued linearly (value and slope exp(cap)) above.

  The margin losses exponentiate pre-activation gaps. A key placed at the
  memory margins can be very sharp, so a pool copy of the edit may start far
  below it: exp of a gap over ~88 is inf in float32 and its gradient NaN.
  Below `cap` this is exp itself, so ordinary edits are unchanged.

  Example:
    >>> float(safe_exp(jnp.asarray(1.0))) == float(jnp.exp(1.0))
    True
    >>> bool(jnp.isfinite(jax.grad(safe_exp)(200.0)))
    True
  """
  below = x < cap
  # each branch sees only its own inputs: no inf, and no NaN in a gradient
  exp_part = jnp.exp(jnp.where(below, x, cap))
  line = jnp.exp(cap) * (1.0 + jnp.where(below, cap, x) - cap)
  return jnp.where(below, exp_part, line)


def activation_loss(alpha: chex.Array, mask: chex.Array, k: int = 5,
                    margin: float = 0.0) -> chex.Array:
  """l_a = TopMean_k(exp(margin - alpha)) over valid (copy, neuron) pairs.

  Pushes the smallest edit pre-activations up. alpha, mask: [B, n].
  """
  chex.assert_equal_shape([alpha, mask])
  return top_mean(safe_exp(margin - alpha), k, mask)


def memory_loss(h: chex.Array, h_mask: chex.Array, alpha: chex.Array,
                alpha_mask: chex.Array, *, k1: int = 1000, k2: int = 125,
                gamma: float = 3.0, beta: float = -3.0):
  """(l_m1, l_m2): keep the new neurons silent on memory queries.

  l_m1 = TopMean_k1(exp(h[m,i] - alpha[b,i] + gamma)) over (m, b, i): each neuron
         fires at least gamma more on its edit than on any memory query.
  l_m2 = TopMean_k2(exp(h[m,i] - beta)) over distinct (m, i): memory
         pre-activations stay below beta.
  The reference's top-1000 over 8 duplicated copies of h equals k2=125 here.

  Only each neuron's top-max(k1, k2) memory values can enter either top-k
  (for a fixed (b, i) the l_m1 term grows with h[m, i]), so both are computed
  exactly on that candidate set (`memory_loss_top`).

  Args:
    h: [M, n] memory pre-activations; h_mask: [M, n] valid entries.
    alpha: [B, n] edit pre-activations; alpha_mask: [B, n] valid entries.
  """
  chex.assert_equal_shape([h, h_mask])
  kc = min(max(k1, k2), h.shape[0])
  top, idx = jax.lax.top_k(jnp.where(h_mask, h, -jnp.inf).T, kc)  # [n, kc]
  top_mask = jnp.take_along_axis(h_mask.T, idx, axis=1)
  return memory_loss_top(top, top_mask, alpha, alpha_mask, k1=k1, k2=k2,
                         gamma=gamma, beta=beta)


def memory_loss_top(top: chex.Array, top_mask: chex.Array, alpha: chex.Array,
                    alpha_mask: chex.Array, *, k1: int = 1000, k2: int = 125,
                    gamma: float = 3.0, beta: float = -3.0):
  """`memory_loss` from each neuron's largest memory pre-activations.

  Args:
    top: [n, kc] a superset of each neuron's top-max(k1, k2) values of h (in
      any order), e.g. from `memory.top_pre_activations`; top_mask: [n, kc].
    alpha, alpha_mask: [B, n] as in `memory_loss`.
  """
  chex.assert_equal_shape([top, top_mask])
  chex.assert_equal_shape([alpha, alpha_mask])
  terms = top.T[:, None, :] - alpha[None, :, :] + gamma       # [kc, B, n]
  terms_mask = top_mask.T[:, None, :] & alpha_mask[None, :, :]
  l_m1 = top_mean(safe_exp(jnp.where(terms_mask, terms, -jnp.inf)), k1,
                  terms_mask)
  l_m2 = top_mean(safe_exp(jnp.where(top_mask, top - beta, -jnp.inf)), k2,
                  top_mask)
  return l_m1, l_m2


def binary_entropy_loss(logit: chex.Array, label: chex.Array,
                        entropy_weight: float = 0.1,
                        mask=None) -> chex.Array:
  """BCE-with-logits minus `entropy_weight` x Bernoulli entropy (mean).

  The reference's BertBinary loss (a KnowledgeEditor-style regulariser).
  logit, label: same shape; label in {0, 1}; mask: optional valid entries.
  """
  label = label.astype(logit.dtype)
  bce = jax.nn.softplus(logit) - label * logit
  p = jax.nn.sigmoid(logit)
  entropy = p * jax.nn.softplus(-logit) + (1.0 - p) * jax.nn.softplus(logit)
  per = bce - entropy_weight * entropy
  if mask is None:
    return jnp.mean(per)
  return jnp.sum(jnp.where(mask, per, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def softmax_cross_entropy(logits: chex.Array, labels: chex.Array,
                          mask=None) -> chex.Array:
  """Masked mean CE over positions: logits [..., C], labels [...] int."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  if mask is None:
    return jnp.mean(nll)
  return jnp.sum(jnp.where(mask, nll, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def label_smoothed_nll(logits: chex.Array, targets: chex.Array,
                       mask: chex.Array, epsilon: float = 0.1) -> chex.Array:
  """fairseq label-smoothed NLL, summed over valid tokens / their count.

  Per token: (1 - eps - eps') * nll + eps' * sum_v(-log p_v), eps' = eps/(V-1).
  logits [..., T, V], targets/mask [..., T].
  """
  vocab = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  smooth = -jnp.sum(logp, axis=-1)
  eps_i = epsilon / (vocab - 1)
  per_token = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
  return (jnp.sum(jnp.where(mask, per_token, 0.0))
          / jnp.maximum(jnp.sum(mask), 1))
