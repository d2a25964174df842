"""The patch bank: extra neurons of one FFN, in preallocated slots.

A neuron i is a key k_i [d], a key bias b_i and a value v_i [d]. The patched FFN is

  ffn(x) + sum_i live_i * act(x . k_i + b_i) * v_i.

Slots are preallocated (capacity N) and filled left to right, so adding a neuron
never changes a shape and never recompiles. Empty slots have `live=False` and a
zero value, so they contribute exactly nothing.

The neurons being trained for one edit (`Neurons`) are kept apart from the bank
until the edit ends: the bank is frozen, only the new neurons get gradients.
Like the reference, a new neuron's effective value is `value * amplifier`.
"""
from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

Activation = Callable[[chex.Array], chex.Array]


def gelu(x: chex.Array) -> chex.Array:
  """Exact (erf) GELU: the `gelu` of BERT and BART configs."""
  return jax.nn.gelu(x, approximate=False)


class PatchBank(NamedTuple):
  """Frozen neurons already merged into one FFN.

  Attributes:
    keys: [N, d] key of each slot.
    biases: [N] key bias of each slot.
    values: [N, d] effective value of each slot (zero where not live).
    live: [N] bool, the slot holds a neuron that fires.
    edit_ids: [N] int32, the edit that added the neuron (-1 if never filled).
    size: [] int32, number of filled slots; the next neuron goes to `size`.
  """
  keys: chex.Array
  biases: chex.Array
  values: chex.Array
  live: chex.Array
  edit_ids: chex.Array
  size: chex.Array

  @property
  def capacity(self) -> int:
    return self.keys.shape[-2]

  @property
  def dim(self) -> int:
    return self.keys.shape[-1]


class Neurons(NamedTuple):
  """The n neurons trained for one edit (padded to a static n, masked).

  Attributes:
    keys: [n, d].
    biases: [n].
    values: [n, d] raw value; the effective value is `values * amplifier`.
    amplifier: [n, d] trainable elementwise scale (the reference's `a`).
  """
  keys: chex.Array
  biases: chex.Array
  values: chex.Array
  amplifier: chex.Array

  def effective_values(self) -> chex.Array:
    return self.values * self.amplifier


def init_bank(capacity: int, dim: int, dtype=jnp.float32) -> PatchBank:
  """An empty bank with `capacity` slots for neurons of width `dim`."""
  return PatchBank(
      keys=jnp.zeros((capacity, dim), dtype),
      biases=jnp.zeros((capacity,), dtype),
      values=jnp.zeros((capacity, dim), dtype),
      live=jnp.zeros((capacity,), bool),
      edit_ids=jnp.full((capacity,), -1, jnp.int32),
      size=jnp.zeros((), jnp.int32),
  )


def init_neurons(
    queries: chex.Array,
    rng: chex.PRNGKey,
    *,
    value_init: str = "reference",
    amplifier: float = 10.0,
    value_direction: Optional[chex.Array] = None,
    value_scale: float = 1.0,
) -> Neurons:
  """New neurons whose keys point at `queries` [n, d].

  key = q / |q|^2 and bias 0, so each neuron's pre-activation on its own query
  is exactly 1 (the reference's init).

  Args:
    queries: [n, d] the FFN inputs each neuron is responsible for.
    rng: PRNG key for the random value init.
    value_init: "reference": raw value ~ N(0, 1), amplifier 10 (so the effective
      value starts as noise of norm ~10*sqrt(d)); "direction": the effective
      value starts at `value_scale * value_direction` [n, d] (e.g. the unit
      direction that lowers the edit loss), amplifier 1; "zero": zero value.
    amplifier: the reference's `amplify_con`, used with "reference".
    value_direction: [n, d], required by "direction".
    value_scale: norm of the effective value for "direction".
  """
  chex.assert_rank(queries, 2)
  n, d = queries.shape
  sq_norm = jnp.sum(queries * queries, axis=-1, keepdims=True)
  keys = queries / jnp.maximum(sq_norm, 1e-12)
  biases = jnp.zeros((n,), queries.dtype)
  if value_init == "reference":
    values = jax.random.normal(rng, (n, d), queries.dtype)
    amp = jnp.full((n, d), amplifier, queries.dtype)
  elif value_init == "direction":
    if value_direction is None:
      raise ValueError("value_init='direction' needs value_direction")
    chex.assert_shape(value_direction, (n, d))
    values = value_scale * value_direction.astype(queries.dtype)
    amp = jnp.ones((n, d), queries.dtype)
  elif value_init == "zero":
    values = jnp.zeros((n, d), queries.dtype)
    amp = jnp.ones((n, d), queries.dtype)
  else:
    raise ValueError(f"unknown value_init {value_init!r}")
  return Neurons(keys, biases, values, amp)


def pre_activations(keys: chex.Array, biases: chex.Array,
                    x: chex.Array) -> chex.Array:
  """x . k_i + b_i for every neuron: x [..., d] -> [..., n]."""
  return jnp.einsum("...d,nd->...n", x, keys) + biases


def neuron_output(keys, biases, values, x, act: Activation = gelu,
                  mask: Optional[chex.Array] = None) -> chex.Array:
  """sum_i mask_i act(x . k_i + b_i) v_i for x [..., d] -> [..., d]."""
  a = act(pre_activations(keys, biases, x))
  if mask is not None:
    a = jnp.where(mask, a, 0.0)
  return jnp.einsum("...n,nd->...d", a, values)


def bank_output(bank: PatchBank, x: chex.Array,
                act: Activation = gelu) -> chex.Array:
  """What the bank adds to the FFN output at inputs x [..., d]."""
  return neuron_output(bank.keys, bank.biases, bank.values, x, act, bank.live)


def new_neuron_output(neurons: Neurons, x: chex.Array, mask: chex.Array,
                      act: Activation = gelu) -> chex.Array:
  """What the edit's new (masked) neurons add at inputs x [..., d]."""
  return neuron_output(neurons.keys, neurons.biases,
                       neurons.effective_values(), x, act, mask)


def add_neurons(bank: PatchBank, neurons: Neurons, mask: chex.Array,
                edit_id) -> PatchBank:
  """Merge the masked new neurons into the next free slots (jittable).

  `mask` [n] must be a prefix mask (live neurons first), as `editor` builds it.
  The caller must ensure `bank.size + n <= capacity` (see `ensure_capacity`):
  inside jit an overflow cannot raise, so the write is clamped and dropped.
  """
  n = neurons.keys.shape[0]
  chex.assert_shape(mask, (n,))
  start = bank.size
  fits = start + n <= bank.capacity
  values = jnp.where(mask[:, None], neurons.effective_values(), 0.0)
  live = jnp.logical_and(mask, fits)
  ids = jnp.where(live, jnp.asarray(edit_id, jnp.int32), -1)

  def write(buf, rows):
    # When it does not fit, write what is already there (a no-op).
    old = jax.lax.dynamic_slice_in_dim(buf, start, n, axis=0)
    rows = jnp.where(fits, rows.astype(buf.dtype), old)
    return jax.lax.dynamic_update_slice_in_dim(buf, rows, start, axis=0)

  count = jnp.where(fits, jnp.sum(mask.astype(jnp.int32)), 0)
  return PatchBank(
      keys=write(bank.keys, jnp.where(mask[:, None], neurons.keys, 0.0)),
      biases=write(bank.biases, jnp.where(mask, neurons.biases, 0.0)),
      values=write(bank.values, values),
      live=write(bank.live, live),
      edit_ids=write(bank.edit_ids, ids),
      size=bank.size + count,
  )


def ensure_capacity(bank: PatchBank, extra: int) -> PatchBank:
  """Grow (outside jit) to the next power of two if `extra` more won't fit.

  Growth changes shapes, hence one recompile per doubling, not per edit.
  Works on a single bank and on a stack of banks (leading fold axes).
  """
  size = int(jnp.max(bank.size))
  if size + extra <= bank.capacity:
    return bank
  capacity = bank.capacity
  while size + extra > capacity:
    capacity *= 2
  pad = capacity - bank.capacity

  def grow(a, value, axis):
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, pad)
    return jnp.pad(a, widths, constant_values=value)

  return PatchBank(
      keys=grow(bank.keys, 0, -2), biases=grow(bank.biases, 0, -1),
      values=grow(bank.values, 0, -2), live=grow(bank.live, False, -1),
      edit_ids=grow(bank.edit_ids, -1, -1), size=bank.size)


def drop_edit(bank: PatchBank, edit_id) -> PatchBank:
  """Roll back one edit: its neurons stop firing; slots are not reused."""
  hit = bank.edit_ids == edit_id
  return bank._replace(
      live=jnp.where(hit, False, bank.live),
      values=jnp.where(hit[:, None], 0.0, bank.values))


def compact(bank: PatchBank) -> PatchBank:
  """Live neurons moved to the first slots, in order; the rest emptied
  (outside jit, single bank). After `drop_edit`, the result equals slot for
  slot a bank that never received the dropped edit.

  Example:
    >>> b = init_bank(4, 2)
    >>> n = Neurons(jnp.ones((2, 2)), jnp.zeros(2), jnp.ones((2, 2)),
    ...             jnp.ones((2, 2)))
    >>> b = add_neurons(add_neurons(b, n, jnp.array([True, False]), 0),
    ...                 n, jnp.array([True, False]), 1)
    >>> compact(drop_edit(b, 0)).edit_ids.tolist(), int(compact(b).size)
    ([1, -1, -1, -1], 2)
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  live = np.asarray(bank.live)
  order = np.concatenate([np.flatnonzero(live), np.flatnonzero(~live)])
  n = int(live.sum())
  empty = init_bank(bank.capacity, bank.dim, bank.keys.dtype)

  def take(a, blank):
    a = np.asarray(a)[order]
    a[n:] = np.asarray(blank)[n:]
    return jnp.asarray(a)

  return PatchBank(keys=take(bank.keys, empty.keys),
                   biases=take(bank.biases, empty.biases),
                   values=take(bank.values, empty.values),
                   live=take(bank.live, empty.live),
                   edit_ids=take(bank.edit_ids, empty.edit_ids),
                   size=jnp.asarray(n, jnp.int32))


def live_neurons(bank: PatchBank) -> dict:
  """Read the live neurons out as numpy arrays (outside jit)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  live = np.asarray(bank.live)
  return dict(keys=np.asarray(bank.keys)[live],
              biases=np.asarray(bank.biases)[live],
              values=np.asarray(bank.values)[live],
              edit_ids=np.asarray(bank.edit_ids)[live])
