"""Sequential Model Editing: walk an edit stream, fix each mistake as it comes.

For every fold (an independent stream from the same base model), records are
visited in a seeded order; the current patched model is checked on each and
only mistakes are edited, until `num_edits` edits per fold are made or the
fold is exhausted. Folds advance in lock step: each round, every fold finds its
next mistake, then one vmapped compiled `edit` trains all folds' neurons at
once (the fold axis can be sharded over devices). After each edit the record's
queries join both memories, and the per-edit record is kept. The state is
checkpointed with Orbax every `checkpoint_every` rounds; a resumed run ends
with the same banks and metrics as an uninterrupted one (everything is a
function of the seed and the saved state).
"""
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from patcher_jax import checkpoint as ckpt_lib
from patcher_jax import editor
from patcher_jax import memory as memory_lib
from patcher_jax import metrics as metrics_lib
from patcher_jax import patch as patch_lib
from patcher_jax.memory import Memory
from patcher_jax.patch import PatchBank


class StreamConfig(NamedTuple):
  num_edits: int = 1000            # per fold
  num_folds: int = 1
  seed: int = 0
  check_window: int = 8            # records checked per call (same bank)
  noise_samples: int = 0           # dropout pool per edit (parity: 64)
  reference_memory: bool = False   # the reference's duplicated memory rows
  memory_copies: int = 8           # ... as many copies as it trains on
  checkpoint_every: int = 10       # rounds between checkpoints (0: never)
  curve_every: int = 0             # rounds between curve points (0: never)
  curve_size: int = 200            # records per retention curve point
  shard_folds: bool = True         # spread folds over local devices


class FoldState(NamedTuple):
  """Arrays of all folds, stacked on a leading fold axis."""
  bank: PatchBank
  memory: Memory
  val_memory: Memory


def fold_orders(n_records: int, num_folds: int, seed: int) -> List[np.ndarray]:
  """The reference's folds: a seeded permutation cut into n contiguous parts
  of size floor(N/n)+1 (the last smaller); each part is a stream."""
  perm = np.random.default_rng(seed).permutation(n_records)
  if num_folds == 1:
    return [perm]
  size = n_records // num_folds + 1
  return [perm[i * size:(i + 1) * size] for i in range(num_folds)]


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _unstack(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def _fold_sharding(num_folds: int):
  devices = jax.devices()
  if len(devices) < 2 or num_folds % len(devices):
    return None
  mesh = jax.sharding.Mesh(np.array(devices), ("folds",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("folds"))


def _empty_like_task(task: editor.EditTask) -> editor.EditTask:
  """A task with no neuron: `edit` returns at once and changes nothing."""
  return task._replace(neuron_mask=jnp.zeros_like(task.neuron_mask))


def _capacity(n: int) -> int:
  return max(8, 1 << (max(n, 1) - 1).bit_length())


def init_state(runtime, config: StreamConfig, rows_per_edit: int) -> FoldState:
  """Empty banks and the initial memories, preallocated for the whole run."""
  f = config.num_folds
  bank = patch_lib.init_bank(_capacity(config.num_edits * runtime.max_neurons),
                             runtime.dim)
  extra = config.num_edits * rows_per_edit
  mem = memory_lib.init_memory(runtime.memory0,
                               _capacity(len(runtime.memory0) + extra))
  val = memory_lib.init_memory(runtime.val_memory0,
                               _capacity(len(runtime.val_memory0) + extra))
  return FoldState(*(_stack([t] * f) for t in (bank, mem, val)))


class Progress(NamedTuple):
  """Python-side bookkeeping, saved as JSON in the checkpoint."""
  rounds: int
  cursors: List[int]
  edits: List[int]
  finished: List[bool]
  records: List[Dict[str, Any]]
  skipped: List[Dict[str, Any]]
  curve: List[Dict[str, Any]]


def _meta(p: Progress) -> Dict[str, Any]:
  return p._asdict()


def _arrays(state: FoldState) -> Dict[str, Any]:
  """Plain dicts of arrays: restorable without a target."""
  return {k: v._asdict() for k, v in state._asdict().items()}


def run(runtime, edit_config: editor.EditConfig, config: StreamConfig, *,
        checkpoint_dir: Optional[str] = None, resume: bool = False,
        on_edit: Optional[Callable[[Dict[str, Any]], None]] = None,
        log=print) -> Dict[str, Any]:
  """Run the stream; returns records, per-fold finals and the summary."""
  f = config.num_folds
  orders = fold_orders(len(runtime.stream), f, config.seed)
  rows_per_edit = _rows_per_edit(runtime, config)
  state = init_state(runtime, config, rows_per_edit)
  prog = Progress(0, [0] * f, [0] * f, [False] * f, [], [], [])
  mngr = ckpt_lib.manager(checkpoint_dir) if checkpoint_dir else None
  if mngr is not None and resume:
    restored = ckpt_lib.restore_latest(mngr)
    if restored is not None:
      _, arrays, meta = restored
      state = FoldState(PatchBank(**arrays["bank"]),
                        Memory(**arrays["memory"]),
                        Memory(**arrays["val_memory"]))
      state = jax.tree.map(jnp.asarray, state)
      prog = Progress(**meta)
      log(f"resumed after round {prog.rounds}: {sum(prog.edits)} edits")
  sharding = _fold_sharding(f) if config.shard_folds else None
  if sharding is not None:
    state = jax.device_put(state, sharding)

  edit_fn = jax.jit(jax.vmap(editor.edit,
                             in_axes=(None, 0, 0, 0, 0, 0, 0, None)),
                    static_argnums=7)
  base_key = jax.random.PRNGKey(config.seed)
  t_start = time.perf_counter()

  while not all(prog.finished):
    tasks, picks = [], []
    for fold in range(f):
      bank_f = _unstack(state.bank, fold)
      pick = None if prog.finished[fold] else _next_mistake(
          runtime, bank_f, orders[fold], prog, fold, config, base_key,
          edit_config)
      picks.append(pick)
    if all(p is None for p in picks):
      break
    template = next(p for p in picks if p is not None)[1]
    tasks = [p[1] if p is not None else _empty_like_task(template)
             for p in picks]
    keys = jnp.stack([jax.random.fold_in(base_key, 10_000 * fold + prog.edits[fold])
                      for fold in range(f)])
    ids = jnp.asarray([prog.edits[fold] for fold in range(f)], jnp.int32)
    t0 = time.perf_counter()
    banks, stats = edit_fn(runtime.tail, state.bank, _stack(tasks),
                           state.memory, state.val_memory, keys, ids,
                           edit_config)
    jax.block_until_ready(banks)
    edit_s = time.perf_counter() - t0
    state = state._replace(bank=banks)
    for fold, pick in enumerate(picks):
      if pick is None:
        continue
      idx, _ = pick
      bank_f = _unstack(state.bank, fold)
      ok, r_ok, r_n = runtime.after_edit(bank_f, idx)
      st = jax.tree.map(lambda a: np.asarray(a[fold]).item(), stats)
      rec = {
          "fold": fold, "edit": prog.edits[fold], "stream_index": int(idx),
          "id": runtime.stream[idx].id, "success": bool(ok),
          "train_success": bool(st.success), "rephrase_correct": r_ok,
          "rephrase_total": r_n, "steps": int(st.steps),
          "neurons": int(st.num_neurons), "edit_time_s": edit_s / max(
              1, sum(p is not None for p in picks)),
          "loss": st.loss, "edit_loss": st.edit_loss, "act_loss": st.act_loss,
          "mem_loss1": st.mem_loss1, "mem_loss2": st.mem_loss2,
          "margins_ok": bool(st.margins_ok),
      }
      prog.records.append(rec)
      prog.edits[fold] += 1
      prog.cursors[fold] += 1
      if prog.edits[fold] >= config.num_edits:
        prog.finished[fold] = True
      if on_edit:
        on_edit(rec)
    state = _append_memories(state, runtime, picks, config)
    prog = prog._replace(rounds=prog.rounds + 1)
    if config.curve_every and prog.rounds % config.curve_every == 0:
      prog.curve.append(_curve_point(runtime, state, prog, orders, config))
    if mngr is not None and config.checkpoint_every and (
        prog.rounds % config.checkpoint_every == 0 or all(prog.finished)):
      ckpt_lib.save(mngr, prog.rounds, _arrays(state), _meta(prog))

  if (mngr is not None and config.checkpoint_every
      and mngr.latest_step() != prog.rounds):
    ckpt_lib.save(mngr, prog.rounds, _arrays(state), _meta(prog))
  finals = _finals(runtime, state, prog, orders, config)
  summary = metrics_lib.summarize(prog.records, finals)
  return {"records": prog.records, "skipped": prog.skipped,
          "folds": finals, "summary": summary, "curve": prog.curve,
          "state": state, "exhausted": [
              prog.edits[i] < config.num_edits for i in range(f)],
          "loop_s": time.perf_counter() - t_start}


def _rows_per_edit(runtime, config: StreamConfig) -> int:
  rows = max(len(runtime.memory_rows(0)), 1) if len(runtime.stream) else 1
  rows = max(rows, runtime.max_neurons + 1)
  return rows * (config.memory_copies if config.reference_memory else 1)


def _next_mistake(runtime, bank, order, prog: Progress, fold: int,
                  config: StreamConfig, base_key, edit_config):
  """Advance fold's cursor to its next editable mistake: (index, task)."""
  while prog.cursors[fold] < len(order):
    start = prog.cursors[fold]
    window = order[start:start + config.check_window]
    wrong = runtime.mistakes(bank, window)
    if not wrong.any():
      prog.cursors[fold] += len(window)
      continue
    offset = int(np.argmax(wrong))
    prog.cursors[fold] = start + offset
    idx = int(window[offset])
    key = jax.random.fold_in(base_key, 7_000_000 + 10_000 * fold + start)
    task = runtime.edit_task(bank, idx, key, config.noise_samples)
    if task is None:   # generation wrong but teacher forcing right: skip
      prog.skipped.append({"fold": fold, "stream_index": idx,
                           "id": runtime.stream[idx].id})
      prog.cursors[fold] += 1
      continue
    return idx, task
  prog.finished[fold] = True
  return None


def _append_memories(state: FoldState, runtime, picks,
                     config: StreamConfig) -> FoldState:
  """Each edited record's queries join its fold's train and val memory."""
  mems, vals = [], []
  width = _rows_per_edit(runtime, config)
  for fold, pick in enumerate(picks):
    mem_f = _unstack(state.memory, fold)
    val_f = _unstack(state.val_memory, fold)
    if pick is not None:
      rows = np.asarray(runtime.memory_rows(pick[0]))
      if config.reference_memory:
        rows = np.tile(rows, (config.memory_copies, 1))[1:-1]
      else:
        rows = memory_lib.deduplicate(rows)
      pad = np.zeros((width, rows.shape[1]), rows.dtype)
      pad[:len(rows)] = rows[:width]
      mask = np.arange(width) < len(rows)
      mem_f = memory_lib.append(mem_f, jnp.asarray(pad), jnp.asarray(mask))
      val_f = memory_lib.append(val_f, jnp.asarray(pad), jnp.asarray(mask))
    mems.append(mem_f)
    vals.append(val_f)
  return state._replace(memory=_stack(mems), val_memory=_stack(vals))


def _edited(prog: Progress, fold: int) -> List[int]:
  return [r["stream_index"] for r in prog.records if r["fold"] == fold]


def _curve_point(runtime, state, prog, orders, config) -> Dict[str, Any]:
  """SR/GR so far, and ER/TrainR/TestR on small subsets, for the plot."""
  point = {"edits": sum(prog.edits) / config.num_folds}
  point.update(metrics_lib.summarize(prog.records, []))
  ers = []
  for fold in range(config.num_folds):
    ers.append(runtime.stream_accuracy(_unstack(state.bank, fold),
                                       _edited(prog, fold)))
  point["ER"] = metrics_lib.mean_over_folds(ers)
  empty = patch_lib.init_bank(8, runtime.dim)
  for split, name in (("train", "TrainR"), ("test", "TestR")):
    ratios = []
    base = runtime.accuracy(empty, split, limit=config.curve_size)
    for fold in range(config.num_folds):
      acc = runtime.accuracy(_unstack(state.bank, fold), split,
                             limit=config.curve_size)
      ratios.append(metrics_lib.retention_ratio(acc, base))
    point[name] = metrics_lib.mean_over_folds(ratios)
  return point


def _finals(runtime, state, prog, orders, config) -> List[Dict[str, Any]]:
  finals = []
  empty = patch_lib.init_bank(8, runtime.dim)
  base_train = runtime.accuracy(empty, "train")
  base_test = runtime.accuracy(empty, "test")
  for fold in range(config.num_folds):
    bank_f = _unstack(state.bank, fold)
    finals.append({
        "fold": fold, "edits": prog.edits[fold],
        "er": runtime.stream_accuracy(bank_f, _edited(prog, fold)),
        "train_acc": runtime.accuracy(bank_f, "train"),
        "test_acc": runtime.accuracy(bank_f, "test"),
        "base_train_acc": base_train, "base_test_acc": base_test,
        "neurons": int(np.asarray(bank_f.size)),
    })
  return finals
