"""One edit: train the new neurons of one mistake, in one compiled loop.

Data flow: cached queries of the edit (from an adapter) + the frozen bank + the
memory -> `edit` -> the bank with the new neurons merged, and per-edit stats.

`patch_step` is one Optax step on the new neurons only; `edit` runs it inside a
`lax.while_loop` with the stop rule, so a whole edit is a single XLA call.
Two stop rules:
  * "val_plateau" (parity with the reference): check every 25 steps from step
    100; at a successful check record the memory loss on the val memory; stop
    at the first one that is not lower than the best earlier by > 1e-3;
  * "margins" (fast): stop at the first step where the edit is fixed and the
    margins the memory loss asks for already hold: every memory
    pre-activation < beta and every edit pre-activation > max memory + gamma.
Two more for tests and benchmarks: "success" (stop once the edit is fixed)
and "steps" (run exactly `max_steps` steps; checks still halve the rate).
"""
from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from patcher_jax import losses
from patcher_jax import memory as memory_lib
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.fullpath import FullModel
from patcher_jax.memory import Memory
from patcher_jax.patch import Neurons, PatchBank
from patcher_jax.tail import Tail


class EditConfig(NamedTuple):
  """Static settings of one edit (hashable: a jit static argument).

  The defaults are fast mode; `patcher_jax.configs` holds the parity mode
  and each task's settings (`configs.get(task, mode)`).
  """
  copies: int = 1                 # B: copies of the edit per step
  noise: bool = False             # draw copies from the noisy query pool and
                                  # apply the tail's dropouts while training
  max_steps: int = 1000
  stop_rule: str = "margins"      # "margins" | "val_plateau" | "success"
                                  # | "steps" (never early: run max_steps)
  check_every: int = 1
  check_start: int = 0            # first step index (0-based) that may stop
  stop_tolerance: float = 1e-3
  lr: float = 0.01
  weight_decay: float = 0.0       # coupled L2, as torch Adam's weight_decay
                                  # (fast: none, a full-size value init
                                  # can stall under the pull)
  clip_norm: float = 5.0
  plateau_factor: float = 0.5
  plateau_patience: int = 1
  plateau_threshold: float = 0.05
  act_k: int = 5
  act_margin: float = 0.0
  act_weight: float = 1.0
  mem_weight: float = 5.0         # reference: 5 (FEVER), 10 (zsRE)
  mem_k1: int = 1000
  mem_k2: int = 125               # top-1000 over 8 duplicates == top-125
  gamma: float = 3.0              # l_m1 margin
  beta: float = -3.0              # l_m2 margin
  value_init: str = "direction"   # see patch.init_neurons
  key_init: str = "query"         # "query": pre-activation 1 on the edit's
                                  # query, 0 bias (the reference); "margins":
                                  # scaled and biased so the memory margins
                                  # hold before the first step
                                  # (`margin_keys`)
  init_slack: float = 1.0         # "margins": the memory's largest
                                  # pre-activation starts at beta - slack,
                                  # the edit's at beta + gamma + slack
  value_fit: bool = False         # scale the initial values to the smallest
                                  # of a geometric grid that makes the fix
                                  # hold by edit_margin (`fit_value_scale`)
  amplifier: float = 10.0
  keep_failed: bool = False       # merge a failed edit's neurons anyway
  edit_margin: float = 0.0        # "margins" rule: the fix must hold by this
                                  # much (logit / logit-lead), not just flip
  margin_patience: int = 30       # ... or stop this many steps after all
                                  # else holds (in-step checks only)
  pool_alpha: bool = False        # the task's query pool (noisy/augmented
                                  # copies of the edit input) joins the
                                  # activation and memory losses as extra
                                  # copies: the neurons learn to fire on
                                  # variants of the edit, at no head cost
  pool_stop: bool = False         # ... and the margins stop rule asks the
                                  # pool's pre-activations to hold them too
  negative_beta: float = -3.0     # a task's own negatives (EditTask
                                  # .negatives): pre-activations held below
                                  # this (a term like l_m2, same weight)


class EditTask(NamedTuple):
  """The cached inputs of one edit (built by `make_edit_task`).

  Attributes:
    queries: [P, d] FFN inputs at the tail positions, eval mode.
    noisy_queries: [S, P, d] train-mode (dropout) samples of the same.
    base_delta: [P, d] what the frozen bank adds at `queries`.
    noisy_base_delta: [S, P, d] the same at `noisy_queries`.
    targets: [P] int32 gold labels / next tokens.
    target_mask: [P] bool, positions that count.
    neuron_pos: [n] int32, the position each new neuron is responsible for.
    neuron_mask: [n] bool, prefix mask of the neurons in use.
    negatives: [K, d] or None: queries only this edit's neurons must stay
      silent on (below `EditConfig.negative_beta`), e.g. its subject asked
      about otherwise (data/geo/negatives.py).
    negatives_mask: [K] bool, the rows of `negatives` in use.
  """
  queries: chex.Array
  noisy_queries: chex.Array
  base_delta: chex.Array
  noisy_base_delta: chex.Array
  targets: chex.Array
  target_mask: chex.Array
  neuron_pos: chex.Array
  neuron_mask: chex.Array
  negatives: Optional[chex.Array] = None
  negatives_mask: Optional[chex.Array] = None


class EditState(NamedTuple):
  """The state `patch_step` advances."""
  neurons: Neurons
  opt_state: optax.OptState
  lr: chex.Array
  step: chex.Array
  rng: chex.PRNGKey


class LossParts(NamedTuple):
  total: chex.Array
  edit: chex.Array
  act: chex.Array
  mem1: chex.Array
  mem2: chex.Array
  wrong: chex.Array        # [B, P] wrong positions (teacher forced)
  unsure: chex.Array       # [B, P] wrong or right by less than edit_margin
  min_alpha: chex.Array    # smallest edit pre-activation
  max_h: chex.Array        # largest memory pre-activation
  negative_over: chex.Array  # largest task-negative pre-activation minus
                             # negative_beta (-inf: none)


class EditStats(NamedTuple):
  steps: chex.Array
  success: chex.Array
  margins_ok: chex.Array
  loss: chex.Array
  edit_loss: chex.Array
  act_loss: chex.Array
  mem_loss1: chex.Array
  mem_loss2: chex.Array
  min_alpha: chex.Array
  max_memory_h: chex.Array
  lr: chex.Array
  num_neurons: chex.Array


def make_optimizer(config: EditConfig) -> optax.GradientTransformation:
  """Clip, coupled L2, Adam; the learning rate is applied by `patch_step`.

  The rate lives in the state because the plateau rule changes it mid-edit.
  """
  return optax.chain(
      optax.clip_by_global_norm(config.clip_norm),
      optax.add_decayed_weights(config.weight_decay),
      optax.scale_by_adam())


class PositionChecks(NamedTuple):
  wrong: chex.Array    # [P] the patched model's token is wrong
  unsure: chex.Array   # [P] wrong, or right by less than the margin


def wrong_positions(tail: Tail, bank: PatchBank, queries, targets,
                    target_mask, margin: float = 0.0) -> PositionChecks:
  """Which target positions the patched model gets wrong, and which wrong
  or right by less than `margin` (teacher forced, eval), from one pass.

  Args:
    tail: the frozen tail; bank: the patch bank.
    queries: [P, d] queries; targets: [P] tokens; target_mask: [P] bool.
    margin: the logit lead a right position must have not to be unsure.

  Returns:
    PositionChecks(wrong, unsure), [P] bool each (masked positions False).

  Example:
    checks = wrong_positions(tail, bank, q, y, m, margin=2.0)
    fix = checks.wrong | checks.unsure
  """
  delta = patch_lib.bank_output(bank, queries, tail.act)
  _, wrong, unsure = tail_lib.tail_objective(
      tail, queries, delta, jax.random.PRNGKey(0), False, targets,
      target_mask, margin)
  return PositionChecks(wrong, unsure)


def make_edit_task(tail: Tail, bank: PatchBank, queries, targets, target_mask,
                   *, noisy_queries=None, max_neurons: int = 1,
                   neuron_margin: float = 0.0) -> EditTask:
  """Cache what an edit needs; one neuron per wrong (or barely right)
  position, at most n.

  Neurons go to the first `max_neurons` wrong positions, in order (the
  reference's `select_index`). With `neuron_margin` > 0, positions the model
  gets right by less than that margin get one too, after the wrong ones: a
  barely right token is where a rephrase of the input goes wrong. If teacher
  forcing finds nothing wrong, the task has no neuron (`neuron_mask` all
  False): callers should skip it.
  """
  queries = jnp.asarray(queries)
  targets = jnp.asarray(targets, jnp.int32)
  target_mask = jnp.asarray(target_mask, bool)
  if noisy_queries is None:
    noisy_queries = queries[None]
  wrong, unsure = wrong_positions(tail, bank, queries, targets, target_mask,
                                  neuron_margin)
  unsure = unsure | wrong    # a margin <= 0 never drops a wrong position
  p = queries.shape[0]
  # wrong positions first, then (with a margin) the barely right ones; each
  # group in position order
  order = jnp.lexsort((jnp.arange(p), ~unsure, ~wrong))
  pos = order[:max_neurons] if max_neurons <= p else jnp.pad(
      order, (0, max_neurons - p))
  # no wrong position: no neuron (a barely right edit is not a mistake)
  n_need = jnp.where(jnp.any(wrong), jnp.sum(unsure.astype(jnp.int32)), 0)
  neuron_mask = jnp.arange(max_neurons) < n_need
  pos = jnp.where(neuron_mask, pos, 0).astype(jnp.int32)
  return EditTask(
      queries=queries,
      noisy_queries=jnp.asarray(noisy_queries),
      base_delta=patch_lib.bank_output(bank, queries, tail.act),
      noisy_base_delta=patch_lib.bank_output(bank, noisy_queries, tail.act),
      targets=targets, target_mask=target_mask,
      neuron_pos=pos, neuron_mask=neuron_mask)


def fit_slots(task: EditTask) -> Optional[EditTask]:
  """`task` with its neuron slots cut to a power of two >= the neurons it
  uses (None if it uses none). The cut slots are masked: they change no
  loss, gradient or output, only the work of every step.

  Example:
    task = fit_slots(make_edit_task(tail, bank, q, y, m, max_neurons=8))
  """
  mask = np.asarray(task.neuron_mask)
  used = int(mask.sum())   # a prefix mask
  if not used:
    return None
  slots = min(mask.shape[-1], 1 << (used - 1).bit_length())
  # cut on the host: a device slice compiles once per shape
  return task._replace(neuron_pos=np.asarray(task.neuron_pos)[..., :slots],
                       neuron_mask=mask[..., :slots])


def task_width(num_positions: int, total: int, floor: int = 4) -> int:
  """Static position count for an edit with `num_positions` target positions.

  Each step costs about in proportion to the positions the tail runs on (a
  seq2seq head spans the vocabulary), so callers crop a task to its target
  positions, rounded up to a power of two (at least `floor`, at most `total`):
  a handful of widths, hence a handful of compiles.
  """
  width = max(floor, 1 << max(num_positions - 1, 0).bit_length())
  return int(min(width, total))


def pad_positions(task: EditTask, width: int,
                  num_neurons: Optional[int] = None) -> EditTask:
  """`task` padded with masked positions to `width` and masked neuron slots
  to `num_neurons` (to stack tasks of different widths, e.g. the folds of
  one vmapped edit)."""
  slots = task.neuron_mask.shape[-1]
  if num_neurons is not None and num_neurons > slots:
    more = num_neurons - slots
    task = task._replace(
        neuron_pos=jnp.pad(task.neuron_pos, (0, more)),
        neuron_mask=jnp.pad(task.neuron_mask, (0, more)))
  extra = width - task.queries.shape[-2]
  if extra <= 0:
    return task

  def pad(a, axis, value=0):
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, extra)
    return jnp.pad(a, widths, constant_values=value)

  return task._replace(
      queries=pad(task.queries, -2), noisy_queries=pad(task.noisy_queries, -2),
      base_delta=pad(task.base_delta, -2),
      noisy_base_delta=pad(task.noisy_base_delta, -2),
      targets=pad(task.targets, -1), target_mask=pad(task.target_mask, -1,
                                                     False))


def _copies(task: EditTask, config: EditConfig, rng, train: bool):
  """B copies of the edit's queries (and bank deltas): noisy or clean."""
  b = config.copies
  if train and config.noise:
    idx = jax.random.randint(rng, (b,), 0, task.noisy_queries.shape[0])
    return task.noisy_queries[idx], task.noisy_base_delta[idx]
  q = jnp.broadcast_to(task.queries, (b,) + task.queries.shape)
  d = jnp.broadcast_to(task.base_delta, (b,) + task.base_delta.shape)
  return q, d


def _objective(neurons: Neurons, tail: Tail, task: EditTask, rng, config,
               train: bool, full: Optional[FullModel]):
  """Edit loss, wrong [B, P], unsure [B, P] and queries [B, P, d] of B copies
  with the new neurons."""
  r_copy, r_tail, r_act = jax.random.split(rng, 3)
  noisy = train and config.noise

  def new_neurons_delta(q):
    act = tail.act(patch_lib.pre_activations(neurons.keys, neurons.biases, q))
    act = jnp.where(task.neuron_mask, act, 0.0)
    if noisy:
      act = tail_lib.dropout(r_act, act, tail.activation_dropout)
    return act @ neurons.effective_values()

  if full is not None:
    return _full_objective(neurons, tail, task, config, noisy, full,
                           new_neurons_delta, r_tail)
  q, base_delta = _copies(task, config, r_copy, train)          # [B, P, d]
  delta = base_delta + new_neurons_delta(q)
  loss, wrong, unsure = jax.vmap(
      lambda qq, dd, r: tail_lib.tail_objective(
          tail, qq, dd, r, noisy, task.targets, task.target_mask,
          config.edit_margin))(q, delta, jax.random.split(r_tail, q.shape[0]))
  return jnp.mean(loss), wrong, unsure, q


def _full_objective(neurons, tail, task, config, noisy, full, new_delta, rng):
  """`_objective` through the whole model (the reference's way)."""
  # The reference recomputes the frozen lower layers at every step. In a
  # deterministic step they do not depend on the loop state, so XLA would
  # hoist them out of the while loop; tying the parameters to the neurons
  # keeps them in the loop: this is what an un-cached implementation pays.
  params, _ = jax.lax.optimization_barrier(
      (full.params, jax.lax.stop_gradient(neurons.keys)))
  delta_fn = lambda q: (patch_lib.bank_output(full.bank, q, tail.act)
                        + new_delta(q))
  logits, q = full.forward_fn(full.model, params, full.inputs, delta_fn,
                              rng, noisy, config.copies)
  loss, wrong, unsure = jax.vmap(lambda lg: tail_lib.logits_objective(
      tail, lg, task.targets, task.target_mask, config.edit_margin))(logits)
  return jnp.mean(loss), wrong, unsure, q


class _EditTerms(NamedTuple):
  """Everything of a loss evaluation except the memory terms."""
  edit: chex.Array
  act: chex.Array
  wrong: chex.Array
  unsure: chex.Array
  alpha: chex.Array
  alpha_mask: chex.Array
  stop_alpha: chex.Array     # the pre-activations the stop rule looks at
  stop_mask: chex.Array


def _edit_terms(neurons, tail, task, rng, config, train, full) -> _EditTerms:
  edit_loss, wrong, unsure, q = _objective(neurons, tail, task, rng, config,
                                           train, full)
  # alpha[b, i]: neuron i's pre-activation at its own position on copy b.
  q_at = q[:, task.neuron_pos, :]                                # [B, n, d]
  alpha = jnp.einsum("bnd,nd->bn", q_at, neurons.keys) + neurons.biases
  alpha_mask = jnp.broadcast_to(task.neuron_mask, alpha.shape)
  stop_alpha, stop_mask = alpha, alpha_mask
  if config.pool_alpha and not config.noise:
    # every pool copy, deterministic: the in-step margin checks stay exact
    pool = jnp.einsum("snd,nd->sn", task.noisy_queries[:, task.neuron_pos],
                      neurons.keys) + neurons.biases
    alpha = jnp.concatenate([alpha, pool])
    alpha_mask = jnp.broadcast_to(task.neuron_mask, alpha.shape)
    if config.pool_stop:
      stop_alpha, stop_mask = alpha, alpha_mask
  act_loss = losses.activation_loss(alpha, alpha_mask, config.act_k,
                                    config.act_margin)
  return _EditTerms(edit_loss, act_loss, wrong, unsure, alpha, alpha_mask,
                    stop_alpha, stop_mask)


def _memory_terms(neurons: Neurons, task: EditTask, memory: Memory,
                  terms: _EditTerms, config: EditConfig):
  """(l_m1, l_m2, largest memory pre-activation, `negative_over`) on each
  neuron's top rows; the task's own negatives add their term to l_m2."""
  top, top_mask = memory_lib.top_pre_activations(
      memory, neurons.keys, neurons.biases, max(config.mem_k1, config.mem_k2))
  top_mask = top_mask & task.neuron_mask[:, None]
  mem1, mem2 = losses.memory_loss_top(
      top, top_mask, terms.alpha, terms.alpha_mask, k1=config.mem_k1,
      k2=config.mem_k2, gamma=config.gamma, beta=config.beta)
  over = jnp.asarray(-jnp.inf, mem2.dtype)
  if task.negatives is not None:
    h = task.negatives @ neurons.keys.T + neurons.biases          # [K, n]
    mask = task.negatives_mask[:, None] & task.neuron_mask[None, :]
    excess = jnp.where(mask, h - config.negative_beta, -jnp.inf)
    mem2 = mem2 + (jnp.sum(losses.safe_exp(excess))
                   / jnp.maximum(jnp.sum(mask), 1))
    over = jnp.max(excess)
  return mem1, mem2, jnp.max(jnp.where(top_mask, top, -jnp.inf)), over


def _combine(terms: _EditTerms, mem1, mem2, max_h, negative_over,
             config: EditConfig) -> LossParts:
  total = terms.edit + config.act_weight * terms.act + config.mem_weight * (
      mem1 + mem2)
  min_alpha = jnp.min(jnp.where(terms.stop_mask, terms.stop_alpha, jnp.inf))
  return LossParts(total, terms.edit, terms.act, mem1, mem2, terms.wrong,
                   terms.unsure, min_alpha, max_h, negative_over)


def loss_parts(neurons: Neurons, tail: Tail, task: EditTask, memory: Memory,
               rng: chex.PRNGKey, config: EditConfig, train: bool = True,
               full: Optional[FullModel] = None) -> LossParts:
  """l_e + alc * l_a + mlc * (l_m1 + l_m2) of the new neurons, and margins.

  With `full`, the logits and queries come from the whole model (the
  reference's way) instead of the cached tail; everything else is shared.
  """
  terms = _edit_terms(neurons, tail, task, rng, config, train, full)
  return _combine(terms, *_memory_terms(neurons, task, memory, terms, config),
                  config)


def init_state(neurons: Neurons, rng: chex.PRNGKey,
               config: EditConfig) -> EditState:
  opt_state = make_optimizer(config).init(neurons)
  return EditState(neurons, opt_state, jnp.asarray(config.lr, jnp.float32),
                   jnp.zeros((), jnp.int32), rng)


def patch_step(state: EditState, tail: Tail, task: EditTask, memory: Memory,
               config: EditConfig = EditConfig(),
               full: Optional[FullModel] = None):
  """One optimiser step on the new neurons only; returns (state, LossParts).

  The LossParts are those of the parameters *before* the step (what the
  gradient was taken at). Pure: jit it (config static), vmap it over edits or
  streams, donate `state`. `full` switches to the full-model path.
  """
  rng, r_loss = jax.random.split(state.rng)
  grad_fn = jax.value_and_grad(
      lambda n: (lambda p: (p.total, p))(
          loss_parts(n, tail, task, memory, r_loss, config, train=True,
                     full=full)),
      has_aux=True)
  (_, parts), grads = grad_fn(state.neurons)
  updates, opt_state = make_optimizer(config).update(
      grads, state.opt_state, state.neurons)
  neurons = jax.tree.map(lambda p, u: p - state.lr * u, state.neurons,
                         updates)
  return EditState(neurons, opt_state, state.lr, state.step + 1, rng), parts


def _memory_margins_ok(parts: LossParts, config: EditConfig) -> chex.Array:
  """The margins the memory loss asks for hold."""
  return ((parts.max_h < config.beta)
          & (parts.min_alpha > parts.max_h + config.gamma)
          & (parts.negative_over < 0))


def _margins_ok(parts: LossParts, config: EditConfig) -> chex.Array:
  """The fix holds by edit_margin and the memory-loss margins hold."""
  return ~jnp.any(parts.unsure) & _memory_margins_ok(parts, config)


def _success(parts: LossParts) -> chex.Array:
  return ~jnp.any(parts.wrong)


def margin_keys(neurons: Neurons, memory: Memory, config: EditConfig,
                max_scale: float = 1e3) -> Neurons:
  """Keys and biases rescaled so the memory margins hold from the start.

  A fresh key k = q / |q|^2 has pre-activation 1 on its query and c_m on
  memory row m. Scaled by s with bias b, the edit sits at s + b and the
  memory's largest at s * c + b (c = max_m c_m). Choosing
  s = (top_edit - top_mem) / (1 - c) and b = top_edit - s puts the memory's
  largest at top_mem = beta - slack and the edit at
  top_edit = beta + gamma + slack: the memory loss is nearly satisfied before
  the first step, which otherwise spends most of an edit walking the bias
  there (tens of Adam steps of size lr). The neuron's boundary is the same
  hyperplane family as before (normal to q), only placed and sharpened.
  Where c >= 1 (a memory row lies as far along q as the edit) no scale
  separates them and the key stays as it was. An empty memory changes
  nothing.

  Args:
    neurons: fresh neurons from `patch.init_neurons` (keys q / |q|^2, zero
      biases).
    memory: the memory the edit must stay silent on.
    config: beta, gamma and init_slack are read.
    max_scale: cap on s.

  Returns:
    `neurons` with new keys and biases (values untouched).
  """
  c = neurons.keys @ memory.queries.T                              # [n, M]
  c = jnp.max(jnp.where(memory.mask[None, :], c, -jnp.inf), axis=-1)
  top_mem = config.beta - config.init_slack
  top_edit = config.beta + config.gamma + config.init_slack
  usable = jnp.isfinite(c) & (c < 1.0 - 1e-3)
  scale = jnp.clip((top_edit - top_mem) / jnp.maximum(1.0 - c, 1e-3), 1.0,
                   max_scale)
  scale = jnp.where(usable, scale, 1.0)
  biases = jnp.where(usable, top_edit - scale, neurons.biases)
  return neurons._replace(keys=neurons.keys * scale[:, None], biases=biases)


def initial_neurons(tail: Tail, task: EditTask, rng: chex.PRNGKey,
                    config: EditConfig,
                    memory: Optional[Memory] = None) -> Neurons:
  """Keys from the edit's queries; values as `config.value_init` says.

  "direction": the effective value starts along -d(edit loss)/d(ffn output) at
  the neuron's position, with the norm of the FFN's own output there, so the
  very first step already moves the prediction the right way. With
  key_init "margins" (and a `memory`), `margin_keys` places the keys.
  """
  neurons = _initial_values(tail, task, rng, config)
  if config.key_init == "margins" and memory is not None:
    neurons = margin_keys(neurons, memory, config)
  elif config.key_init not in ("query", "margins"):
    raise ValueError(f"unknown key_init {config.key_init!r}")
  if config.value_fit:
    neurons = fit_value_scale(tail, task, neurons, config)
  return neurons


def fit_value_scale(tail: Tail, task: EditTask, neurons: Neurons,
                    config: EditConfig, num_scales: int = 12) -> Neurons:
  """`neurons` with values scaled by the smallest of 1, sqrt(2), 2, ... (
  `num_scales` of them) at which the edit holds by `config.edit_margin` on
  the clean queries; if none does, the one with the lowest edit loss.

  The initial values point the right way (value_init "direction") but Adam
  grows them by about lr per coordinate and step, so a fix that needs a
  value several times the FFN output's norm takes tens of steps to reach it.
  One batched evaluation of the tail at every scale jumps there instead.

  Args:
    tail: the frozen top of the model.
    task: the edit (clean queries, targets, neuron slots).
    neurons: the initial neurons.
    config: edit_margin is read.
    num_scales: grid points, each sqrt(2) times the last.

  Returns:
    `neurons` with every value multiplied by the chosen scale.
  """
  pre = patch_lib.pre_activations(neurons.keys, neurons.biases, task.queries)
  act = jnp.where(task.neuron_mask, tail.act(pre), 0.0)          # [P, n]
  new_delta = act @ neurons.effective_values()                   # [P, d]
  scales = jnp.sqrt(2.0) ** jnp.arange(num_scales, dtype=jnp.float32)

  def objective(scale):
    loss, _, unsure = tail_lib.tail_objective(
        tail, task.queries, task.base_delta + scale * new_delta,
        jax.random.PRNGKey(0), False, task.targets, task.target_mask,
        config.edit_margin)
    return loss, jnp.any(unsure)

  loss, unsure = jax.vmap(objective)(scales)
  pick = jnp.where(jnp.any(~unsure), jnp.argmax(~unsure), jnp.argmin(loss))
  return neurons._replace(values=neurons.values * scales[pick])


def _initial_values(tail: Tail, task: EditTask, rng: chex.PRNGKey,
                    config: EditConfig) -> Neurons:
  q0 = task.queries[task.neuron_pos]                              # [n, d]
  if config.value_init != "direction":
    return patch_lib.init_neurons(q0, rng, value_init=config.value_init,
                                  amplifier=config.amplifier)

  def edit_loss_of_delta(extra):
    return tail_lib.tail_objective(tail, task.queries, task.base_delta + extra,
                                   rng, False, task.targets,
                                   task.target_mask)[0]

  g = jax.grad(edit_loss_of_delta)(jnp.zeros_like(task.queries))[
      task.neuron_pos]                                            # [n, d]
  direction = -g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True),
                               1e-12)
  ffn_out = tail_lib.ffn_output(tail, q0)
  scale = jnp.linalg.norm(ffn_out, axis=-1, keepdims=True)
  # Divide by act(1): the neuron's initial activation on its own query.
  scale = scale / tail.act(jnp.ones((), q0.dtype))
  neurons = patch_lib.init_neurons(q0, rng, value_init="direction",
                                   value_direction=direction)
  return neurons._replace(values=neurons.values * scale)


class _Plateau(NamedTuple):
  best: chex.Array
  bad: chex.Array


def _plateau_update(p: _Plateau, lr, metric, config: EditConfig):
  """torch ReduceLROnPlateau(mode=min, threshold_mode=rel, cooldown=0)."""
  improved = metric < p.best * (1.0 - config.plateau_threshold)
  best = jnp.where(improved, metric, p.best)
  bad = jnp.where(improved, 0, p.bad + 1)
  cut = bad > config.plateau_patience
  lr = jnp.where(cut, lr * config.plateau_factor, lr)
  bad = jnp.where(cut, 0, bad)
  return _Plateau(best, bad), lr


def val_plateau_stop(ok, val_mem, best_val, n_ok, tolerance: float = 1e-3):
  """The reference's stop decision at one check (ALGORITHM.md 3.9).

  At a check where the edit is right (`ok`), its val-memory loss joins the
  list; stop when it is not lower than the best earlier one by more than
  `tolerance` (so two successful checks at least). Failed checks change
  nothing.

  Args:
    ok: bool, the edit is right at this check (and the check counts).
    val_mem: the memory loss on the val memory at this check.
    best_val: the lowest val_mem of the earlier successful checks (inf).
    n_ok: how many successful checks came before.
    tolerance: the improvement that counts.

  Returns:
    (stop, best_val, n_ok) after this check.

  Example:
    >>> stop, best, n = val_plateau_stop(True, 2.0, jnp.inf, 0)
    >>> bool(stop), float(best), int(n)
    (False, 2.0, 1)
    >>> bool(val_plateau_stop(True, 1.9995, best, n)[0])
    True
  """
  ok = jnp.asarray(ok)
  stop = ok & (n_ok > 0) & ~(val_mem < best_val - tolerance)
  best_val = jnp.where(ok, jnp.minimum(best_val, val_mem), best_val)
  return stop, best_val, n_ok + ok.astype(jnp.int32)


class _Loop(NamedTuple):
  state: EditState
  plateau: _Plateau
  best_val_mem: chex.Array
  n_success_checks: chex.Array
  done: chex.Array


def edit(tail: Tail, bank: PatchBank, task: EditTask, memory: Memory,
         val_memory: Memory, rng: chex.PRNGKey, edit_id,
         config: EditConfig = EditConfig(), full: Optional[FullModel] = None,
         num_steps=None):
  """Fix one mistake: train new neurons, merge them into the bank.

  Args:
    tail: the frozen top of the model (from an adapter).
    bank: the patch bank so far (frozen during this edit).
    task: the edit's cached inputs (`make_edit_task`).
    memory: train memory (queries the neurons must not fire on).
    val_memory: val memory for the parity stop rule (may equal `memory`).
    rng: PRNG key.
    edit_id: int id recorded in the bank for the new neurons.
    config: static settings (`configs.get(task, mode)`).
    full: run the whole model at every step instead of the cached tail (the
      reference's cost; for benchmarks and equivalence tests).
    num_steps: optional traced cap on the steps (at most `config.max_steps`);
      with stop_rule "steps" the edit runs exactly this many, e.g. to replay
      another run's step count without a recompile.

  Returns:
    (bank, EditStats). A failed edit's neurons are merged only if
    `config.keep_failed` (the reference does); the bank is unchanged otherwise.
  """
  r_init, r_loop, r_eval = jax.random.split(rng, 3)
  neurons = initial_neurons(tail, task, r_init, config, memory)
  state0 = init_state(neurons, r_loop, config)
  if config.stop_rule not in ("margins", "val_plateau", "success", "steps"):
    raise ValueError(f"unknown stop_rule {config.stop_rule!r}")
  # Margins checked inside the step are exact only for a deterministic step.
  check_in_step = config.stop_rule in ("margins", "success") and not (
      config.noise)

  def eval_parts(n, mem):
    return loss_parts(n, tail, task, mem, r_eval, config, train=False,
                      full=full)

  def eval_both(n):
    """Eval parts on the train memory and the val-memory loss: one forward."""
    terms = _edit_terms(n, tail, task, r_eval, config, False, full)
    parts = _combine(terms, *_memory_terms(n, task, memory, terms, config),
                     config)
    vm1, vm2, _, _ = _memory_terms(n, task, val_memory, terms, config)
    return parts, vm1 + vm2

  def stop_now(parts):
    ok = _success(parts)
    if config.stop_rule == "margins":
      ok = ok & _margins_ok(parts, config)
    return ok

  def body(loop: _Loop) -> _Loop:
    state = loop.state
    new_state, parts = patch_step(state, tail, task, memory, config, full)
    step = state.step                                # index of this step
    plateau, best_val, n_ok, done = (loop.plateau, loop.best_val_mem,
                                     loop.n_success_checks, loop.done)
    if check_in_step:
      # parts describe the pre-step parameters: keep them if they pass.
      # A fix that holds with every margin but its lead (edit_margin: not
      # always reachable behind a LayerNorm) gets margin_patience more steps.
      settled = _success(parts)
      if config.stop_rule == "margins":
        settled = settled & _memory_margins_ok(parts, config)
      n_ok = jnp.where(settled, n_ok + 1, 0)
      done = (stop_now(parts) | (n_ok > config.margin_patience)) & (
          step >= config.check_start)
      new_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state,
                               new_state)
      return _Loop(new_state, plateau, best_val, n_ok, done)

    is_check = ((step + 1) % config.check_every == 0)

    def check(args):
      plateau, lr, best_val, n_ok = args
      if config.stop_rule == "val_plateau":
        ev, val_mem = eval_both(new_state.neurons)
      else:
        ev = eval_parts(new_state.neurons, memory)
      plateau, lr = _plateau_update(plateau, lr, ev.edit, config)
      ok = _success(ev) & (step >= config.check_start)
      if config.stop_rule == "val_plateau":
        stop, best_val, n_ok = val_plateau_stop(ok, val_mem, best_val, n_ok,
                                                config.stop_tolerance)
      elif config.stop_rule == "steps":
        stop = jnp.zeros((), bool)
      else:
        stop = ok & (_margins_ok(ev, config) if config.stop_rule == "margins"
                     else True)
      return plateau, lr, best_val, n_ok, stop

    def no_check(args):
      plateau, lr, best_val, n_ok = args
      return plateau, lr, best_val, n_ok, jnp.zeros((), bool)

    plateau, lr, best_val, n_ok, done = jax.lax.cond(
        is_check, check, no_check, (plateau, new_state.lr, best_val, n_ok))
    return _Loop(new_state._replace(lr=lr), plateau, best_val, n_ok, done)

  limit = config.max_steps if num_steps is None else jnp.minimum(
      jnp.asarray(num_steps, jnp.int32), config.max_steps)

  def cond(loop: _Loop):
    return (~loop.done) & (loop.state.step < limit)

  loop0 = _Loop(state0, _Plateau(jnp.asarray(jnp.inf, jnp.float32),
                                 jnp.zeros((), jnp.int32)),
                jnp.asarray(jnp.inf, jnp.float32), jnp.zeros((), jnp.int32),
                # nothing to train (e.g. an idle fold under vmap): done at once
                ~jnp.any(task.neuron_mask))
  loop = jax.lax.while_loop(cond, body, loop0)
  final = eval_parts(loop.state.neurons, memory)
  success = _success(final) & jnp.any(task.neuron_mask)
  keep = success | config.keep_failed
  new_bank = patch_lib.add_neurons(bank, loop.state.neurons,
                                   task.neuron_mask & keep, edit_id)
  stats = EditStats(
      steps=loop.state.step, success=success, margins_ok=_margins_ok(final, config),
      loss=final.total, edit_loss=final.edit, act_loss=final.act,
      mem_loss1=final.mem1, mem_loss2=final.mem2, min_alpha=final.min_alpha,
      max_memory_h=final.max_h, lr=loop.state.lr,
      num_neurons=jnp.sum((task.neuron_mask & keep).astype(jnp.int32)))
  return new_bank, stats
