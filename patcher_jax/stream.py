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
import functools
import json
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

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
from patcher_jax.timing import Timings


class StreamConfig(NamedTuple):
  num_edits: int = 1000            # per fold
  num_folds: int = 1
  seed: int = 0
  check_window: int = 8            # records checked per call (same bank)
  prefetch: int = 64               # records whose bank-free inputs a
                                   # runtime may prepare ahead in one pass
  noise_samples: int = 0           # dropout pool per edit (parity: 64)
  max_neurons: int = 5             # per edit, one per wrong token (seq2seq);
                                   # the reference keeps the first 5
  neuron_margin: float = 0.0       # tokens right by less than this get a
                                   # neuron too (0: wrong ones only)
  reference_memory: bool = False   # the reference's duplicated memory rows
  memory_copies: int = 8           # ... as many copies as it trains on
  subject_negatives: int = 0       # questions per other relation of the
                                   # edit's subject that join the memory
                                   # before its edit (0: none; runtimes
                                   # with `negative_rows`)
  negatives_in_memory: bool = True  # ... and stay there for later edits;
                                   # False: they are the edit's own
                                   # (EditTask.negatives, held below
                                   # EditConfig.negative_beta) and no more
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


def plan(runtime, config: StreamConfig, folds=None) -> None:
  """Let the runtime prepare, before the stream, what the edits of these
  folds will likely need (its `plan_edits`, if it has one: seq2seq drafts the
  rephrases of the records it expects to edit). `run` calls it; calling it
  first (as run.py does, to count it as setup) makes that call free.

  Args:
    runtime: a task runtime (tasks/).
    config: the stream's settings (num_edits, num_folds, seed).
    folds: the folds this process runs (default: all).
  """
  plan_edits = getattr(runtime, "plan_edits", None)
  if plan_edits is None:
    return
  orders = fold_orders(len(runtime.stream), config.num_folds, config.seed)
  folds = range(config.num_folds) if folds is None else folds
  plan_edits([orders[f] for f in folds], config.num_edits)


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


# One compile per combination of task shapes (stacking leaf by leaf
# compiled once per leaf shape: ~30 small compiles a run).
_stack_tasks = jax.jit(_stack)


@functools.partial(jax.jit, static_argnums=1)
def _unstack(tree, i):
  """Fold i's part of stacked arrays (one dispatch, not one per leaf)."""
  return jax.tree.map(lambda a: a[i], tree)


def _fold_sharding(num_folds: int):
  """Folds split over this process's devices (a fold never spans devices)."""
  devices = jax.local_devices()
  if len(devices) < 2 or num_folds % len(devices):
    return None
  mesh = jax.sharding.Mesh(np.array(devices), ("folds",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("folds"))


def _empty_like_task(task: editor.EditTask) -> editor.EditTask:
  """A task with no neuron: `edit` returns at once and changes nothing."""
  return task._replace(neuron_mask=jnp.zeros_like(task.neuron_mask))


def _capacity(n: int) -> int:
  return max(8, 1 << (max(n, 1) - 1).bit_length())


def _memory_capacity(n: int) -> int:
  # Every edit step reads the whole memory buffer: round up to a block, not
  # to a power of two (the capacity is fixed for the run, so no recompiles).
  return max(1024, -(-n // 1024) * 1024)


def init_fold_state(runtime, config: StreamConfig,
                    num_slots: int) -> FoldState:
  """Empty banks and the initial memories, preallocated for the run:
  memories for the rows an edit likely adds (`_memory_rows_per_edit`) and
  its subject negatives; they grow if an edit needs more (`_room_for`)."""
  f = num_slots
  # Sized for ~2 neurons an edit (zsRE averages 1.5; the worst case, 16,
  # would make every check through the bank 8x dearer); grown if needed.
  bank = patch_lib.init_bank(_capacity(config.num_edits
                                       * min(2, _neurons_per_edit(runtime,
                                                                  config))),
                             runtime.dim)
  extra = config.num_edits * (_memory_rows_per_edit(runtime, config)
                              + _negative_rows_per_edit(runtime, config))
  mem = memory_lib.init_memory(runtime.memory0,
                               _memory_capacity(len(runtime.memory0) + extra))
  val = memory_lib.init_memory(
      runtime.val_memory0, _memory_capacity(len(runtime.val_memory0) + extra))
  return FoldState(*(_stack([t] * f) for t in (bank, mem, val)))


class Progress(NamedTuple):
  """Python-side bookkeeping, saved as JSON in the checkpoint.

  Lists are indexed by local slot: slot s runs global fold `folds[s]`.
  """
  rounds: int
  folds: List[int]
  cursors: List[int]
  edits: List[int]
  finished: List[bool]
  records: List[Dict[str, Any]]
  skipped: List[Dict[str, Any]]
  curve: List[Dict[str, Any]]
  # Per slot, the memory rows of subject negatives (`_append_negatives`):
  # {"live": {question: [[start, stop, val start, val stop], ...]},
  #  "dropped": [[start, stop, val start, val stop], ...]} (None: none yet)
  negatives: Optional[List[Dict[str, Any]]] = None


def _arrays(state: FoldState, runtime) -> Dict[str, Any]:
  """What a checkpoint holds: plain dicts of arrays, restorable without a
  target. The memories are saved as the rows the edits appended (the
  initial rows come from the runtime): a few MB instead of the buffers."""
  out = {"bank": state.bank._asdict()}
  for name, start in (("memory", len(runtime.memory0)),
                      ("val_memory", len(runtime.val_memory0))):
    mem = getattr(state, name)
    size = np.asarray(mem.size)
    # at least one row (beyond `size` a buffer row is zero): Orbax and
    # zero-size arrays do not mix
    stop = min(max(int(size.max()), start + 1), mem.queries.shape[1])
    # sliced on the device to a multiple of 1024 rows, then trimmed: a slice
    # of a new size is a new compile (it was one per checkpoint)
    wide = min(start + -(-(stop - start) // 1024) * 1024, mem.queries.shape[1])
    out[name] = {"added": np.asarray(mem.queries[:, start:wide])[
        :, :stop - start], "size": size}
  return out


def _from_arrays(arrays: Dict[str, Any], runtime, config: StreamConfig,
                 num_slots: int) -> FoldState:
  """The state `_arrays` saved (bit-identical buffers)."""
  state = init_fold_state(runtime, config, num_slots)
  mems = {}
  for name, start in (("memory", len(runtime.memory0)),
                      ("val_memory", len(runtime.val_memory0))):
    mem = getattr(state, name)
    added, size = arrays[name]["added"], np.asarray(arrays[name]["size"])
    mem = _room_for(mem, added.shape[1])   # the run's buffers had grown
    queries = np.array(mem.queries)
    queries[:, start:start + added.shape[1]] = added
    mask = np.arange(queries.shape[1])[None] < size[:, None]
    mems[name] = Memory(jnp.asarray(queries), jnp.asarray(mask),
                        jnp.asarray(size, jnp.int32))
  bank = PatchBank(**{k: jnp.asarray(v) for k, v in arrays["bank"].items()})
  return FoldState(bank, mems["memory"], mems["val_memory"])


def local_folds(num_folds: int, process_index: int = 0,
                process_count: int = 1) -> List[int]:
  """Folds a process runs: round-robin over processes (folds are independent
  streams, so splitting them changes no result)."""
  return [f for f in range(num_folds) if f % process_count == process_index]


class _Run(NamedTuple):
  """What stays fixed during a run (the loop's context)."""
  runtime: Any
  edit_config: editor.EditConfig
  config: StreamConfig
  folds: List[int]
  orders: List[np.ndarray]
  edit_fn: Callable
  base_key: Any
  sharding: Any
  manager: Any
  timings: Timings
  log: Callable
  memo: Dict[str, Any]              # values computed once per run, and
                                    # the curve point under way
  pool_key: Callable[[int, int], Any]  # (fold, start) -> pool key, kept


def run(runtime, edit_config: editor.EditConfig, config: StreamConfig, *,
        folds: Optional[Sequence[int]] = None,
        checkpoint_dir: Optional[str] = None, resume: bool = False,
        on_edit: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_round: Optional[Callable[[FoldState, Progress], None]] = None,
        timings: Optional[Timings] = None, log=print) -> Dict[str, Any]:
  """Run the streams of `folds` (default: all); returns the raw result.

  Args:
    runtime: a task runtime (see `patcher_jax.tasks`).
    edit_config: settings of each edit.
    config: settings of the stream.
    folds: global fold ids this process runs.
    checkpoint_dir: Orbax checkpoints every `config.checkpoint_every` rounds.
    resume: continue from the newest checkpoint in `checkpoint_dir`.
    on_edit: called with each per-edit record, as it is made.
    on_round: called with (state, progress) after each round (benchmarks
      probe the bank here; its time is not counted in any phase). A curve
      point of this round may still be under way in the background, not
      yet in `progress.curve`.
    timings: receives the wall time of each phase of the loop (a hook for
      benchmarks and the run's time split).
    log: where progress notes go.

  Returns:
    {"records", "skipped", "folds" (final metrics per fold), "curve",
    "state", "exhausted"}. Combine results of several processes with `merge`,
    then `summarize`.
  """
  timings = timings if timings is not None else Timings()
  ctx, state, prog = _start(runtime, edit_config, config, folds,
                            checkpoint_dir, resume, timings, log)
  # the point of the round resumed from, if it was under way at its save
  _maybe_curve_point(ctx, state, prog)
  # A round's checks run in the background during the next round's edit;
  # its records are made then (or before anything reads the records).
  pending = []
  while not all(prog.finished):
    with timings.phase("next_mistake"):
      picks = _pick_mistakes(ctx, state, prog)
    if all(p is None for p in picks):
      break
    if config.subject_negatives:
      with timings.phase("negatives"):
        if config.negatives_in_memory:
          state = _drop_edited(state, runtime, picks, prog)
          state = _append_negatives(state, runtime, picks, prog, config)
        else:
          picks = _attach_negatives(runtime, picks, config)
    with timings.phase("edit"):
      state, stats, edit_s = _edit_round(ctx, state, prog, picks)
    with timings.phase("after_edit"):
      _settle(prog, pending, on_edit)
      pending = _check_round(ctx, state, prog, picks, stats, edit_s)
    with timings.phase("memory_append"):
      state = _append_memories(state, runtime, picks, config)
    prog = prog._replace(rounds=prog.rounds + 1)
    if on_round or _records_read(ctx, prog):
      with timings.phase("after_edit"):
        _settle(prog, pending, on_edit)
    with timings.phase("curve"):
      _maybe_curve_point(ctx, state, prog)
    with timings.phase("checkpoint"):
      _maybe_checkpoint(ctx, state, prog, final=all(prog.finished))
    if on_round:
      on_round(state, prog)
  with timings.phase("after_edit"):
    _settle(prog, pending, on_edit)
  with timings.phase("curve"):
    _maybe_curve_point(ctx, state, prog, final=True)
  with timings.phase("checkpoint"):
    _maybe_checkpoint(ctx, state, prog, final=True)
  with timings.phase("final_metrics"):
    finals = _finals(runtime, state, prog)
  return {"records": prog.records, "skipped": prog.skipped,
          "folds": finals, "curve": prog.curve, "state": state,
          "exhausted": {str(f): prog.edits[s] < config.num_edits
                        for s, f in enumerate(prog.folds)}}


def _start(runtime, edit_config, config, folds, checkpoint_dir, resume,
           timings, log):
  """The run's context, its initial (or restored) state and progress (and
  the runtime's plan, `plan`: ~40 s the first time for zsRE, then cached)."""
  folds = list(range(config.num_folds)) if folds is None else list(folds)
  n = len(folds)
  orders = fold_orders(len(runtime.stream), config.num_folds, config.seed)
  plan(runtime, config, folds)
  state = init_fold_state(runtime, config, n)
  prog = Progress(0, folds, [0] * n, [0] * n, [False] * n, [], [], [],
                  [_new_book() for _ in range(n)])
  mngr = ckpt_lib.manager(checkpoint_dir) if checkpoint_dir else None
  if mngr is not None and resume:
    restored = _restore(mngr, checkpoint_dir, folds, runtime, config, log)
    if restored is not None:
      state, prog = restored
  sharding = _fold_sharding(n) if config.shard_folds else None
  if sharding is not None:
    state = jax.device_put(state, sharding)
  edit_fn = jax.jit(jax.vmap(editor.edit,
                             in_axes=(None, 0, 0, 0, 0, 0, 0, None)),
                    static_argnums=7)
  base_key = jax.random.PRNGKey(config.seed)
  ctx = _Run(runtime, edit_config, config, folds, orders, edit_fn, base_key,
             sharding, mngr, timings, log, {},
             _kept_pool_keys(base_key, 4 * (POOLS_AHEAD + 1) * n))
  return ctx, state, prog


def _restore(mngr, checkpoint_dir, folds, runtime, config, log):
  restored = ckpt_lib.restore_latest(mngr)
  if restored is None:
    return None
  _, arrays, meta = restored
  if meta["folds"] != folds:
    raise ValueError(f"checkpoint in {checkpoint_dir} holds folds "
                     f"{meta['folds']}, this run wants {folds}")
  state = _from_arrays(arrays, runtime, config, len(folds))
  prog = Progress(**meta)
  if prog.negatives is None:    # saved before subject negatives existed
    prog = prog._replace(negatives=[_new_book() for _ in folds])
  state = _mask_rows(state, [book["dropped"] for book in prog.negatives])
  log(f"resumed after round {prog.rounds}: {sum(prog.edits)} edits")
  return state, prog


def _pick_mistakes(ctx: _Run, state: FoldState, prog: Progress):
  """Each unfinished fold's next mistake: (stream index, task) or None."""
  picks = []
  for slot in range(len(prog.folds)):
    pick = None
    if not prog.finished[slot]:
      order = ctx.orders[prog.folds[slot]]
      pick = _next_mistake(ctx.runtime, _unstack(state.bank, slot), order,
                           prog, slot, ctx.config, ctx.pool_key)
      if pick is not None:
        _look_ahead(ctx, order, prog, slot)
    picks.append(pick)
  return picks


# Mistakes ahead whose pools are drawn in the background: two, so a pool
# has two edits' time, and never waits long behind a block of drafts.
POOLS_AHEAD = 2


def _look_ahead(ctx: _Run, order, prog: Progress, slot: int) -> None:
  """Let the runtime start what the coming rounds need and no bank changes
  (lookahead.py): the rephrase drafts of the next records, and the dropout
  pools of the likeliest next mistakes (the runtime guesses among a
  window's records) under the keys `_next_mistake` will use for them."""
  cursor = prog.cursors[slot]
  prefetch = getattr(ctx.runtime, "prefetch", None)
  if prefetch is not None:
    prefetch(order[cursor:cursor + ctx.config.prefetch])
  negatives = getattr(ctx.runtime, "prefetch_negatives", None)
  if negatives is not None and ctx.config.subject_negatives:
    negatives(order[cursor:cursor + ctx.config.prefetch],
              ctx.config.subject_negatives)
  pool = getattr(ctx.runtime, "prefetch_pool", None)
  start = cursor + 1     # the next search starts after this mistake
  for _ in range(POOLS_AHEAD if pool and ctx.config.noise_samples else 0):
    window = order[start:start + ctx.config.check_window]
    guess = pool(window, ctx.pool_key(prog.folds[slot], start),
                 ctx.config.noise_samples)
    if guess is None:
      break
    # if the guess is right, the search after it starts past it
    start += int(np.flatnonzero(window == guess)[0]) + 1


def _edit_round(ctx: _Run, state: FoldState, prog: Progress, picks):
  """One vmapped compiled edit over the folds (idle folds get empty tasks)."""
  n = len(picks)
  template = next(p for p in picks if p is not None)[1]
  tasks = [p[1] if p is not None else _empty_like_task(template)
           for p in picks]
  width = max(t.queries.shape[-2] for t in tasks)   # tasks may be cropped
  slots = max(t.neuron_mask.shape[-1] for t in tasks)
  tasks = [editor.pad_positions(t, width, slots) for t in tasks]
  bank = patch_lib.ensure_capacity(state.bank, slots)  # rare: recompiles
  if bank is not state.bank:
    state = state._replace(bank=bank if ctx.sharding is None
                           else jax.device_put(bank, ctx.sharding))
  keys = jnp.stack([jax.random.fold_in(
      ctx.base_key, 10_000 * prog.folds[s] + prog.edits[s]) for s in range(n)])
  ids = jnp.asarray(prog.edits, jnp.int32)
  t0 = time.perf_counter()
  banks, stats = ctx.edit_fn(ctx.runtime.tail, state.bank, _stack_tasks(tasks),
                             state.memory, state.val_memory, keys, ids,
                             ctx.edit_config)
  jax.block_until_ready(banks)
  edit_s = (time.perf_counter() - t0) / sum(p is not None for p in picks)
  return state._replace(bank=banks), stats, edit_s


def _check_round(ctx: _Run, state: FoldState, prog: Progress, picks, stats,
                 edit_s) -> List[Callable[[], Dict[str, Any]]]:
  """Start the checks of each edited record and its rephrases (in the
  background where the runtime can: they decide nothing) and advance the
  cursors; returns, per edit, the function that makes its record."""
  stats = jax.device_get(stats)       # one transfer for all folds
  later = getattr(ctx.runtime, "after_edit_later", None)
  makers = []
  for slot, pick in enumerate(picks):
    if pick is None:
      continue
    idx, bank = pick[0], _unstack(state.bank, slot)
    if later is not None:
      checks = later(bank, idx)
    else:                                 # checked now
      checks = lambda done=ctx.runtime.after_edit(bank, idx): done
    makers.append(functools.partial(
        _make_record, ctx.runtime, prog.folds[slot], prog.edits[slot], idx,
        bank, checks, jax.tree.map(lambda a, s=slot: a[s].item(), stats),
        edit_s))
    prog.edits[slot] += 1
    prog.cursors[slot] += 1
    if prog.edits[slot] >= ctx.config.num_edits:
      prog.finished[slot] = True
  return makers


def _make_record(runtime, fold: int, edit_id: int, idx: int, bank, checks,
                 st, edit_s: float) -> Dict[str, Any]:
  """One edit's record, once its checks are done."""
  ok, r_ok, r_n = checks()
  # the bank before this edit: the same without this edit's neurons
  described = _describe(runtime, lambda: patch_lib.drop_edit(bank, edit_id),
                        bank, idx)
  return {
      "fold": fold, "edit": edit_id,
      "stream_index": int(idx), "id": runtime.stream[idx].id,
      "success": bool(ok), "train_success": bool(st.success),
      "rephrase_correct": r_ok, "rephrase_total": r_n,
      "steps": int(st.steps), "neurons": int(st.num_neurons),
      "edit_time_s": edit_s, "loss": st.loss, "edit_loss": st.edit_loss,
      "act_loss": st.act_loss, "mem_loss1": st.mem_loss1,
      "mem_loss2": st.mem_loss2, "margins_ok": bool(st.margins_ok),
      **described,
  }


def _settle(prog: Progress, makers, on_edit) -> None:
  """Make the records of the edits whose checks were started, in order."""
  for make in makers:
    rec = make()
    prog.records.append(rec)
    if on_edit:
      on_edit(rec)
  makers.clear()


def _due(every: int, prog: Progress, final: bool) -> bool:
  """Whether a thing done every `every` rounds (0: never) is due now."""
  return bool(every) and (prog.rounds % every == 0 or final)


def _records_read(ctx: _Run, prog: Progress) -> bool:
  """Whether this round's curve point or checkpoint reads the records."""
  final = all(prog.finished)
  return (_due(ctx.config.curve_every, prog, final)
          or (ctx.manager is not None
              and _due(ctx.config.checkpoint_every, prog, final)))


def _maybe_curve_point(ctx: _Run, state: FoldState, prog: Progress,
                       final: bool = False) -> None:
  """Start a curve point every `curve_every` rounds, and at the last round
  (a run can end between points, or run out of mistakes early). Its model
  work runs in the background where the runtime can; `_resolve_curve`
  appends it to `prog.curve` (before the next checkpoint, or now if final).
  """
  if (prog.rounds and prog.rounds not in _curve_rounds(ctx, prog)
      and _due(ctx.config.curve_every, prog, final)):
    _resolve_curve(ctx, prog)
    ctx.memo["curve_pending"] = (prog.rounds, _curve_point_later(
        ctx, state, prog))
  if final:
    _resolve_curve(ctx, prog)


def _curve_rounds(ctx: _Run, prog: Progress) -> set:
  """Rounds whose curve point is in `prog.curve` or under way."""
  pending = ctx.memo.get("curve_pending")
  return ({p["round"] for p in prog.curve[-1:]}
          | ({pending[0]} if pending else set()))


def _resolve_curve(ctx: _Run, prog: Progress, before: Optional[int] = None
                   ) -> None:
  """Append the curve point under way (if any; only if its round is before
  `before`) to `prog.curve`."""
  pending = ctx.memo.get("curve_pending")
  if pending and (before is None or pending[0] < before):
    prog.curve.append(pending[1]())
    del ctx.memo["curve_pending"]


def _maybe_checkpoint(ctx: _Run, state: FoldState, prog: Progress,
                      final: bool) -> None:
  if ctx.manager is None or not _due(ctx.config.checkpoint_every, prog,
                                     final):
    return
  if "saved_round" not in ctx.memo:    # a resumed run's newest checkpoint
    ctx.memo["saved_round"] = ctx.manager.latest_step()
  if ctx.memo["saved_round"] != prog.rounds:
    ctx.memo["saved_round"] = prog.rounds
    # a point of this very round may stay under way: a resumed run
    # computes it again from this checkpoint's bank (`_restore`)
    _resolve_curve(ctx, prog, before=prog.rounds)
    # copies: the save is written in the background while the lists grow
    meta = {k: list(v) if isinstance(v, list) else v
            for k, v in prog._asdict().items()}
    meta["negatives"] = json.loads(json.dumps(prog.negatives))  # deep
    ckpt_lib.save(ctx.manager, prog.rounds, _arrays(state, ctx.runtime), meta)
  if final:
    ckpt_lib.finish(ctx.manager)


def merge(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """One result from the results of processes that ran disjoint folds."""
  order = lambda r: (r["fold"], r.get("edit", 0))
  curve = {}
  for res in results:
    for point in res["curve"]:
      c = curve.setdefault(point["round"], {"round": point["round"],
                                            "per_fold": {}})
      c["per_fold"].update(point["per_fold"])
  return {
      "records": sorted((r for res in results for r in res["records"]),
                        key=order),
      "skipped": sorted((r for res in results for r in res["skipped"]),
                        key=order),
      "folds": sorted((f for res in results for f in res["folds"]),
                      key=lambda f: f["fold"]),
      "curve": [curve[k] for k in sorted(curve)],
      "exhausted": {k: v for res in results
                    for k, v in res["exhausted"].items()},
  }


def summarize(result: Dict[str, Any]) -> Dict[str, Any]:
  """Headline metrics and the curve points (SR/GR from the records so far)."""
  summary = metrics_lib.summarize(result["records"], result["folds"])
  points = []
  for c in result["curve"]:
    upto = [r for r in result["records"] if r["edit"] < c["round"]]
    point = {"edits": c["round"]}
    point.update({k: v for k, v in metrics_lib.summarize(upto, []).items()
                  if k in ("SR", "GR", "GR_per_edit_mean", "GR_before")})
    for name in ("ER", "TrainR", "TestR"):
      point[name] = metrics_lib.mean_over_folds(
          [f[name] for f in c["per_fold"].values()])
    points.append(point)
  return {"summary": summary, "curve": points}


def _neurons_per_edit(runtime, config: StreamConfig) -> int:
  return min(runtime.max_neurons, config.max_neurons)


def _memory_copies(config: StreamConfig) -> int:
  """Copies an edit's rows come in (0: deduplicated rows)."""
  return config.memory_copies if config.reference_memory else 0


def _append_width(runtime, config: StreamConfig) -> int:
  """Rows each edit's memory rows are padded to for the append program
  (record 0's, at least neurons + 1: a width, not the rows an edit adds;
  `_append_memories` makes room for more)."""
  copies = _memory_copies(config)
  rows = (len(runtime.memory_rows(0, copies)) if len(runtime.stream) else 1)
  if not copies:
    rows = max(rows, _neurons_per_edit(runtime, config) + 1)
  return max(rows, 1)


def _next_mistake(runtime, bank, order, prog: Progress, slot: int,
                  config: StreamConfig, pool_key: Callable):
  """Advance a slot's cursor to its next editable mistake: (index, task).
  `pool_key(fold, start)`: the key of the pool of the mistake found from
  `start` on."""
  fold = prog.folds[slot]
  while prog.cursors[slot] < len(order):
    start = prog.cursors[slot]
    window = order[start:start + config.check_window]
    offset = _first_mistake(runtime, bank, window)
    if offset is None:
      prog.cursors[slot] += len(window)
      continue
    prog.cursors[slot] = start + offset
    idx = int(window[offset])
    key = pool_key(fold, start)
    task = runtime.edit_task(bank, idx, key, config.noise_samples,
                             _neurons_per_edit(runtime, config),
                             config.neuron_margin)
    if task is None:   # generation wrong but teacher forcing right: skip
      prog.skipped.append({"fold": fold, "stream_index": idx,
                           "id": runtime.stream[idx].id})
      prog.cursors[slot] += 1
      continue
    return idx, task
  prog.finished[slot] = True
  return None


def _first_mistake(runtime, bank, window) -> Optional[int]:
  """Offset in `window` of the first record the patched model gets wrong
  (None: none). A runtime whose checks cost by the row (`checks_by_row`:
  a seq2seq head spans the vocabulary) checks the first record alone, then
  the rest: the stream's records are mostly mistakes."""
  parts = [window]
  if getattr(runtime, "checks_by_row", False) and len(window) > 1:
    parts = [window[:1], window[1:]]
  seen = 0
  for part in parts:
    wrong = runtime.mistakes(bank, part)
    if wrong.any():
      return seen + int(np.argmax(wrong))
    seen += len(part)
  return None


def _pool_key(base_key, fold: int, start: int):
  """The key of the dropout pool of the mistake found from `start` on."""
  return jax.random.fold_in(base_key, 7_000_000 + 10_000 * fold + start)


def _kept_pool_keys(base_key, size: int) -> Callable[[int, int], Any]:
  """`_pool_key(base_key, ...)` keeping the last `size` keys asked for (the
  look-ahead asks for each key up to three times; each is a device call)."""
  return functools.lru_cache(maxsize=size)(
      functools.partial(_pool_key, base_key))


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _append_all(memory: Memory, val_memory: Memory, rows, mask):
  """Append each fold's rows [F, r, d] to both of its memories, in place."""
  add = jax.vmap(memory_lib.append)
  return add(memory, rows, mask), add(val_memory, rows, mask)


def _append_memories(state: FoldState, runtime, picks,
                     config: StreamConfig) -> FoldState:
  """Each edited record's queries join its fold's train and val memory (the
  reference's rows per task with `reference_memory`, else deduplicated);
  the buffers grow if a long answer's rows would not fit."""
  copies = _memory_copies(config)
  per_pick = []
  for pick in picks:
    r = np.zeros((0, runtime.dim), np.float32)
    if pick is not None:
      r = np.asarray(runtime.memory_rows(pick[0], copies))
      if not copies:
        r = memory_lib.deduplicate(r)
    per_pick.append(r)
  return _append_rows(state, runtime, per_pick,
                      _append_width(runtime, config))


# Room kept per edit over the mean rows an edit adds (longer answers): too
# little costs one growth of the buffers (and its compiles), too much costs
# every edit step, which reads the whole buffer.
MEMORY_SLACK = 1.5


def _memory_rows_per_edit(runtime, config: StreamConfig) -> int:
  """Memory rows to keep per edit when sizing the buffers: the mean rows an
  edit adds (`memory_rows` of up to 256 records spread over the stream),
  times MEMORY_SLACK for deduplicated rows (the reference's copies come in
  a fixed number per answer token: no slack). Not `_append_width`: its
  floor of neurons + 1 sized zsRE's buffer for 17 rows an edit where ~3.5
  come (and ~4.4 of subject negatives): 32,768 rows where the default run
  ends at 18,927; now 20,480."""
  n = len(runtime.stream)
  if not n:
    return 1
  copies = _memory_copies(config)
  idxs = np.unique(np.linspace(0, n - 1, min(n, 256)).astype(int))
  mean = np.mean([len(runtime.memory_rows(int(i), copies)) for i in idxs])
  slack = 1.0 if copies else MEMORY_SLACK
  return max(1, int(np.ceil(slack * mean)))


def _negative_rows_per_edit(runtime, config: StreamConfig) -> int:
  """Room kept per edit for its subject negatives (a guess: ~2 questions a
  template on zsRE, ~2.5 rows each; the buffers grow if it is short)."""
  if not (config.subject_negatives and hasattr(runtime, "negative_rows")):
    return 0
  return 4 * config.subject_negatives


def _new_book() -> Dict[str, Any]:
  """Where a fold's subject negatives sit in its memories (Progress)."""
  return {"live": {}, "dropped": []}


def _append_negatives(state: FoldState, runtime, picks, prog: Progress,
                      config: StreamConfig) -> FoldState:
  """Before each fold's edit, the rows of its record's subject negatives
  (`runtime.negative_rows`) join its memories: the edit's memory loss keeps
  its neurons silent on them, and so does every later edit's. Where each
  question's rows went is kept in the fold's book (`_drop_edited`)."""
  if not hasattr(runtime, "negative_rows"):
    return state
  found = [(np.zeros((0, runtime.dim), np.float32), []) if pick is None
           else runtime.negative_rows(pick[0], config.subject_negatives)
           for pick in picks]
  per_pick = [np.asarray(rows, np.float32) for rows, _ in found]
  if not max(len(r) for r in per_pick):
    return state
  starts = [np.asarray(jax.device_get(m.size)).reshape(-1)
            for m in (state.memory, state.val_memory)]
  state = _append_rows(state, runtime, per_pick,
                       max(8, _negative_rows_per_edit(runtime, config)))
  for slot, (_, questions) in enumerate(found):
    for question, (a, b) in _runs(questions).items():
      prog.negatives[slot]["live"].setdefault(question, []).append(
          [int(starts[0][slot]) + a, int(starts[0][slot]) + b,
           int(starts[1][slot]) + a, int(starts[1][slot]) + b])
  return state


def _attach_negatives(runtime, picks, config: StreamConfig):
  """Picks whose tasks carry their record's subject negatives (rows padded
  to one multiple of 8 for all folds: a few shapes, a few compiles)."""
  if not hasattr(runtime, "negative_rows"):
    return picks
  rows = [None if p is None else np.asarray(runtime.negative_rows(
      p[0], config.subject_negatives)[0], np.float32) for p in picks]
  k = max(8, -(-max(len(r) for r in rows if r is not None) // 8) * 8)
  out = []
  for pick, r in zip(picks, rows):
    if pick is None:
      out.append(None)
      continue
    buf = np.zeros((k, runtime.dim), np.float32)
    buf[:len(r)] = r
    out.append((pick[0], pick[1]._replace(
        negatives=jnp.asarray(buf),
        negatives_mask=jnp.asarray(np.arange(k) < len(r)))))
  return out


def _runs(labels: Sequence[str]) -> Dict[str, tuple]:
  """{label: (first index, last index + 1)} of a list whose equal labels
  are contiguous.

  Example:
    >>> _runs(["a", "a", "b"])
    {'a': (0, 2), 'b': (2, 3)}
  """
  out = {}
  for k, label in enumerate(labels):
    out[label] = (out.get(label, (k, k))[0], k + 1)
  return out


def _drop_edited(state: FoldState, runtime, picks,
                 prog: Progress) -> FoldState:
  """A subject negative that is itself edited later stops being one: its
  rows (the unedited answer's, whose first query is the edit's own) leave
  the fold's memories before the edit, which could not hold otherwise."""
  drops = []
  for slot, pick in enumerate(picks):
    book = prog.negatives[slot]
    ranges = ([] if pick is None else
              book["live"].pop(runtime.stream[pick[0]].input, []))
    book["dropped"].extend(ranges)
    drops.append(ranges)
  return _mask_rows(state, drops) if any(drops) else state


def _placed_like(new: np.ndarray, old: jax.Array) -> jax.Array:
  """`new` placed as `old` is: on its sharding if `old` is committed (folds
  sharded over devices), else uncommitted. Committing one leaf of a
  single-device state would commit every later output computed from it,
  and jit compiles a program again for committed inputs: 78 of a zsRE
  run's 213 compiles were such second compiles (9 of them edits, ~3.5 s
  each)."""
  if old.committed:
    return jax.device_put(new, old.sharding)
  return jnp.asarray(new)


def _mask_rows(state: FoldState, drops) -> FoldState:
  """Memory rows marked invalid: drops[slot] lists [start, stop, val start,
  val stop] ranges of that fold."""
  if not any(drops):
    return state
  masks = [np.array(m.mask) for m in (state.memory, state.val_memory)]
  for slot, ranges in enumerate(drops):
    for a, b, va, vb in ranges:
      masks[0][slot, a:b] = False
      masks[1][slot, va:vb] = False
  new = [m._replace(mask=_placed_like(k, m.mask))
         for m, k in zip((state.memory, state.val_memory), masks)]
  return state._replace(memory=new[0], val_memory=new[1])


def _append_rows(state: FoldState, runtime, per_pick, width: int
                 ) -> FoldState:
  """Each fold's rows (per_pick[slot], [r, d]) join its memories, padded to
  `width` rows (or the next multiple of 8 that holds the longest)."""
  longest = max(len(r) for r in per_pick)
  if longest > width:           # a few widths, a few compiles
    width = -(-longest // 8) * 8
  rows = np.zeros((len(per_pick), width, runtime.dim), np.float32)
  mask = np.zeros((len(per_pick), width), bool)
  for slot, r in enumerate(per_pick):
    rows[slot, :len(r)] = r
    mask[slot, :len(r)] = True
  grown = [_room_for(m, longest) for m in (state.memory, state.val_memory)]
  memory, val_memory = _append_all(*grown, jnp.asarray(rows),
                                   jnp.asarray(mask))
  return state._replace(memory=memory, val_memory=val_memory)


def _room_for(memory: Memory, extra: int) -> Memory:
  """`memory` with room for `extra` more rows: grown by a quarter (whole
  blocks; every edit step reads the whole buffer, so never doubled), which
  recompiles the edit once."""
  cap, size = memory.queries.shape[-2], int(np.max(memory.size))
  if size + extra <= cap:
    return memory
  return memory_lib.grow(memory, _memory_capacity(size + extra + cap // 4))


def _describe(runtime, bank_before: Callable[[], PatchBank],
              bank_after: PatchBank, idx: int) -> Dict[str, Any]:
  """What an edit did to its record, for edits.jsonl: the input, the target,
  the model's answer right before and after the edit, and how many of the
  record's rephrases the unedited model got right (for GR_before)."""
  # answers the runtime already saw in its checks, if it keeps them
  seen = getattr(runtime, "edit_answers", lambda i: (None, None))(idx)
  before = seen[0] if seen[0] is not None else runtime.answers(
      bank_before(), [idx])[0]
  after = seen[1] if seen[1] is not None else runtime.answers(
      bank_after, [idx])[0]
  return {"input": runtime.stream[idx].input, "target": runtime.target(idx),
          "answer_before": before, "answer_after": after,
          "rephrase_correct_before": runtime.rephrases_before(idx)[0]}


def _edited(prog: Progress, slot: int) -> List[int]:
  fold = prog.folds[slot]
  return [r["stream_index"] for r in prog.records if r["fold"] == fold]


def _curve_base(runtime, config: StreamConfig) -> Dict[str, float]:
  """The unedited model's accuracy on the curve subsets (once per run)."""
  empty = patch_lib.init_bank(8, runtime.dim)
  return {split: runtime.accuracy(empty, split, limit=config.curve_size)
          for split in ("train", "test")}


def _later(runtime, name: str, *args) -> Callable[[], Any]:
  """A function returning `runtime.<name>(*args)`. A runtime with
  `<name>_later` starts the model's part now, in the background; otherwise
  it is computed now."""
  later = getattr(runtime, name + "_later", None)
  if later is not None:
    return later(*args)
  done = getattr(runtime, name)(*args)
  return lambda: done


def _curve_point_later(ctx: _Run, state, prog: Progress
                       ) -> Callable[[], Dict[str, Any]]:
  """Per fold, for the plot: ER and TrainR/TestR now, each on at most
  `curve_size` records (past edits evenly spaced over the stream so far;
  the final metrics use every record). Started now; the returned function
  waits for the model's work and returns the point."""
  runtime, config = ctx.runtime, ctx.config
  if "curve_base" not in ctx.memo:
    ctx.memo["curve_base"] = _curve_base(runtime, config)
  base, rounds, parts = ctx.memo["curve_base"], prog.rounds, {}
  for slot, fold in enumerate(prog.folds):
    bank = _unstack(state.bank, slot)
    edited = _edited(prog, slot)
    if len(edited) > config.curve_size:
      picks = np.linspace(0, len(edited) - 1, config.curve_size).round()
      edited = [edited[int(i)] for i in picks]
    parts[str(fold)] = {
        "ER": _later(runtime, "stream_accuracy", bank, edited),
        "TrainR": _later(runtime, "split_correct", bank, "train",
                         config.curve_size),
        "TestR": _later(runtime, "split_correct", bank, "test",
                        config.curve_size)}

  def point():
    per_fold = {fold: {
        "ER": p["ER"](),
        "TrainR": metrics_lib.retention_ratio(_mean(p["TrainR"]()),
                                              base["train"]),
        "TestR": metrics_lib.retention_ratio(_mean(p["TestR"]()),
                                             base["test"])}
                for fold, p in parts.items()}
    return {"round": rounds, "per_fold": per_fold}

  return point


def _finals(runtime, state, prog: Progress) -> List[Dict[str, Any]]:
  """Per fold: ER, final and base accuracies, and the answers that flipped."""
  # the model's work starts in the background, largest part first; the
  # waits below run what has not started yet here: both cores work
  banks = [_unstack(state.bank, slot) for slot in range(len(prog.folds))]
  parts = [{"test": _later(runtime, "split_correct", bank, "test"),
            "train": _later(runtime, "split_correct", bank, "train"),
            "er": _later(runtime, "stream_accuracy", bank, _edited(prog, slot))}
           for slot, bank in enumerate(banks)]
  empty = patch_lib.init_bank(8, runtime.dim)
  base = {s: runtime.split_correct(empty, s) for s in ("train", "test")}
  finals = []
  for slot, fold in enumerate(prog.folds):
    er = parts[slot]["er"]()
    final = {s: parts[slot][s]() for s in ("train", "test")}
    finals.append({
        "fold": fold, "edits": prog.edits[slot], "er": er,
        "train_acc": _mean(final["train"]), "test_acc": _mean(final["test"]),
        "base_train_acc": _mean(base["train"]),
        "base_test_acc": _mean(base["test"]),
        "train_flips": metrics_lib.flips(base["train"], final["train"]),
        "test_flips": metrics_lib.flips(base["test"], final["test"]),
        "neurons": int(np.asarray(banks[slot].size)),
    })
  return finals


def _mean(right: np.ndarray) -> float:
  return float(np.mean(right)) if len(right) else float("nan")
