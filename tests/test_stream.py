"""The editing stream on a tiny random classifier: only mistakes are edited,
metrics are consistent, folds vmap, and a crash + resume gives the same run."""
import chex
import jax
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import configs
from patcher_jax import metrics, stream


@pytest.fixture(scope="module")
def runtime():
  from helpers import tiny
  return tiny.classification_runtime()


def _run(runtime, tmp_path=None, folds=None, **kw):
  cfg = stream.StreamConfig(num_edits=kw.pop("num_edits", 4), seed=0,
                            checkpoint_every=1, curve_every=2, **kw)
  return stream.run(runtime, pj.fast_config(max_steps=300), cfg, folds=folds,
                    checkpoint_dir=str(tmp_path) if tmp_path else None,
                    log=lambda *_: None)


def test_stream_edits_only_mistakes(runtime):
  out = _run(runtime)
  assert len(out["records"]) == 4
  base = pj.init_bank(8, runtime.dim)
  for r in out["records"]:
    # each edited record was a mistake of the model before its edit: at least
    # of the unedited model for the first one
    assert r["rephrase_total"] >= 1
  first = out["records"][0]["stream_index"]
  assert bool(runtime.mistakes(base, np.array([first]))[0])
  order = stream.fold_orders(len(runtime.stream), 1, 0)[0]
  # records before the first edit in the order were right
  before = order[:list(order).index(first)]
  assert not runtime.mistakes(base, before).any()
  # SR and ER against the model itself: each record's success is what the
  # bank right after its edit answers (rebuilt from the final bank), ER what
  # the final bank answers on all edited records.
  bank = jax.tree.map(lambda a: a[0], out["state"].bank)
  recs = out["records"]
  now_right = [not runtime.mistakes(bank_after(bank, r["edit"]),
                                    np.array([r["stream_index"]]))[0]
               for r in recs]
  assert [r["success"] for r in recs] == now_right
  s = stream.summarize(out)["summary"]
  assert s["SR"] == pytest.approx(np.mean(now_right))
  edited = np.array([r["stream_index"] for r in recs])
  assert s["ER"] == pytest.approx(np.mean(~runtime.mistakes(bank, edited)))


def test_edit_records_carry_the_models_answers(runtime):
  """edits.jsonl's answers before and after each edit are what the model
  answers with the bank right before and right after it."""
  out = _run(runtime, num_edits=6)
  bank = jax.tree.map(lambda a: a[0], out["state"].bank)
  for r in out["records"]:
    i = [r["stream_index"]]
    assert r["answer_before"] == runtime.answers(
        bank_after(bank, r["edit"] - 1), i)[0]
    assert r["answer_after"] == runtime.answers(
        bank_after(bank, r["edit"]), i)[0]


def bank_after(bank, t):
  """The bank as it was right after edit t: later edits dropped."""
  for later in range(t + 1, int(np.max(bank.edit_ids)) + 1):
    bank = pj.drop_edit(bank, later)
  return bank


def test_records_say_what_each_edit_did(runtime):
  out = _run(runtime, num_edits=4)
  bank = jax.tree.map(lambda a: a[0], out["state"].bank)
  empty = pj.init_bank(8, runtime.dim)
  labels = {0: "REFUTES", 1: "SUPPORTS"}
  for r in out["records"]:
    i = r["stream_index"]
    assert r["input"] == runtime.stream[i].input
    assert r["target"] == runtime.stream[i].answers[0]
    before = bank_after(bank, r["edit"] - 1) if r["edit"] else empty
    after = bank_after(bank, r["edit"])
    logit = lambda b: runtime._logits(runtime.tail, b, runtime.q_stream[i:i + 1])  # pylint: disable=protected-access
    assert r["answer_before"] == labels[int(logit(before)[0, 0] > 0)]
    assert r["answer_after"] == labels[int(logit(after)[0, 0] > 0)]
    assert r["answer_before"] != r["target"]          # it was a mistake
    assert (r["answer_after"] == r["target"]) == r["success"]
    lo, hi = runtime.reph_offsets[i], runtime.reph_offsets[i + 1]
    base_logits = runtime._logits(runtime.tail, empty, runtime.q_reph[lo:hi])  # pylint: disable=protected-access
    want = int(np.sum((np.asarray(base_logits)[:, 0] > 0)
                      == (runtime.y_stream[i] == 1)))
    assert r["rephrase_correct_before"] == want
  s = stream.summarize(out)["summary"]
  recs = out["records"]
  assert s["GR_before"] == pytest.approx(
      sum(r["rephrase_correct_before"] for r in recs)
      / sum(r["rephrase_total"] for r in recs))


def test_flips_count_the_answers_that_changed(runtime):
  out = _run(runtime, num_edits=5)
  bank = jax.tree.map(lambda a: a[0], out["state"].bank)
  empty = pj.init_bank(8, runtime.dim)
  s = stream.summarize(out)["summary"]
  for split, key in (("train", "TrainR_flips"), ("test", "TestR_flips")):
    q, y = {"train": (runtime.q_train, runtime.y_train),
            "test": (runtime.q_test, runtime.y_test)}[split]
    base = runtime.correct(empty, q, y)
    final = runtime.correct(bank, q, y)
    f = s[key]
    assert f == {"lost": int(np.sum(base & ~final)),
                 "gained": int(np.sum(~base & final)), "total": len(y)}
    # the ratio is what the flips leave
    ratio = (base.sum() - f["lost"] + f["gained"]) / base.sum()
    assert s[key[:-6]] == pytest.approx(ratio)
  # the edits of a random tiny model move answers both ways (so the test
  # above compares something)
  assert min(s["TrainR_flips"]["lost"], s["TrainR_flips"]["gained"]) > 0


class Crash(Exception):
  """A kill in the middle of a stream."""


def _crash_after(n: int):
  """An on_edit hook that raises Crash at the n-th edit."""
  seen = []

  def hook(rec):
    seen.append(rec)
    if len(seen) == n:
      raise Crash
  return hook


def test_resume_after_crash_gives_same_bank_and_metrics(runtime, tmp_path):
  full = _run(runtime, num_edits=5)

  crash_after_two = _crash_after(2)

  cfg = stream.StreamConfig(num_edits=5, seed=0, checkpoint_every=1)
  with pytest.raises(Crash):
    stream.run(runtime, pj.fast_config(max_steps=300), cfg,
               checkpoint_dir=str(tmp_path), on_edit=crash_after_two,
               log=lambda *_: None)
  resumed = stream.run(runtime, pj.fast_config(max_steps=300), cfg,
                       checkpoint_dir=str(tmp_path), resume=True,
                       log=lambda *_: None)
  chex.assert_trees_all_close(resumed["state"], full["state"], atol=0)
  assert (stream.summarize(resumed)["summary"]
          == stream.summarize(full)["summary"])
  strip = lambda recs: [{k: v for k, v in r.items() if k != "edit_time_s"}
                        for r in recs]
  assert strip(resumed["records"]) == strip(full["records"])


def test_folds_vmap_equal_single_streams(runtime):
  two = _run(runtime, num_edits=2, num_folds=2)
  assert len(two["records"]) == 4
  assert {r["fold"] for r in two["records"]} == {0, 1}
  assert len(two["folds"]) == 2
  orders = stream.fold_orders(len(runtime.stream), 2, 0)
  assert all(r["stream_index"] in set(orders[r["fold"]])
             for r in two["records"])
  # each fold run alone (as another process would) gives the same result
  parts = [_run(runtime, num_edits=2, num_folds=2, folds=[f]) for f in (0, 1)]
  for p in parts:
    p.pop("state")
  merged = stream.merge(parts)
  _assert_same_records(merged["records"], stream.merge([two])["records"])
  assert (stream.summarize(merged)["summary"]
          == stream.summarize(two)["summary"])


def _assert_same_records(a, b):
  """Same decisions exactly; losses to float rounding (vmap width differs)."""
  assert len(a) == len(b)
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    for k in ra:
      if k == "edit_time_s":
        continue
      if isinstance(ra[k], float):
        assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), (k, ra, rb)
      else:
        assert ra[k] == rb[k], (k, ra, rb)


def test_metrics_pooled_and_per_edit_gr():
  pooled, mean = metrics.generality_rates([1, 3, 0], [1, 4, 0])
  assert pooled == pytest.approx(4 / 5) and mean == pytest.approx(0.875)
  assert metrics.retention_ratio(0.5, 0.8) == pytest.approx(0.625)


def test_metrics_flips_and_gr_before():
  assert metrics.flips([1, 1, 0, 0], [1, 0, 1, 1]) == {
      "lost": 1, "gained": 2, "total": 4}
  with pytest.raises(ValueError):
    metrics.flips([1, 0], [1])
  recs = [{"success": True, "rephrase_correct": 2,
           "rephrase_correct_before": 0, "rephrase_total": 2},
          {"success": False, "rephrase_correct": 1,
           "rephrase_correct_before": 1, "rephrase_total": 3}]
  fold = lambda lost, gained: {
      "er": 1.0, "train_acc": 0.5, "base_train_acc": 0.5, "test_acc": 0.5,
      "base_test_acc": 0.5, "train_flips": {"lost": lost, "gained": gained,
                                            "total": 10},
      "test_flips": {"lost": 0, "gained": 0, "total": 10}}
  s = metrics.summarize(recs, [fold(1, 2), fold(3, 0)])
  assert s["GR"] == pytest.approx(3 / 5)
  assert s["GR_before"] == pytest.approx(1 / 5)
  assert s["TrainR_flips"] == {"lost": 4, "gained": 2, "total": 20}


def test_parity_memory_gets_8_copies_of_each_edit(runtime):
  """The reference appends the [CLS] query of each of its 8 training copies:
  8 identical rows per edit, in the train and the val memory."""
  cfg = stream.StreamConfig(num_edits=2, seed=0, checkpoint_every=0,
                            noise_samples=16, reference_memory=True)
  out = stream.run(runtime, configs.get("fever", "parity", max_steps=25), cfg,
                   log=lambda *_: None)   # rows join whether or not it held
  idxs = [r["stream_index"] for r in out["records"]]
  assert len(idxs) == 2
  want = np.concatenate([np.repeat(runtime.q_stream[i:i + 1], 8, 0)
                         for i in idxs])
  for mem, start in ((out["state"].memory, len(runtime.memory0)),
                     (out["state"].val_memory, len(runtime.val_memory0))):
    assert int(mem.size[0]) == start + 16
    np.testing.assert_array_equal(
        np.asarray(mem.queries[0, start:start + 16]), want)
    assert not np.asarray(mem.mask[0, start + 16:]).any()


class _Recording:
  """The tiny runtime, recording the arguments of every `edit_task`."""

  def __init__(self, runtime):
    self._rt, self.calls = runtime, []

  def __getattr__(self, name):
    return getattr(self._rt, name)

  def edit_task(self, *args):
    self.calls.append(args[3:])
    return self._rt.edit_task(*args)


@pytest.mark.parametrize("settings", [
    dict(), dict(noise_samples=3, max_neurons=2, neuron_margin=1.5)])
def test_stream_settings_reach_the_runtime(runtime, settings):
  """(noise_samples, max_neurons, neuron_margin) of StreamConfig are what
  each edit task is made with (max_neurons capped by the runtime's)."""
  rec = _Recording(runtime)
  cfg = stream.StreamConfig(num_edits=2, seed=0, checkpoint_every=0,
                            **settings)
  stream.run(rec, pj.fast_config(max_steps=50), cfg, log=lambda *_: None)
  want = (cfg.noise_samples, min(cfg.max_neurons, runtime.max_neurons),
          cfg.neuron_margin)
  assert rec.calls and all(c == want for c in rec.calls)


class _WithNegatives:
  """The tiny runtime, plus subject negatives: record i's are the queries
  (moved a little) of the next 3 records in the fold order, each tagged with
  that record's input (as if they asked about i's subject)."""

  def __init__(self, runtime, order):
    self._rt, self._order = runtime, list(order)
    self.made = []     # (row, question, record it was made for)

  def __getattr__(self, name):
    return getattr(self._rt, name)

  def negative_rows(self, i, per_relation):
    assert per_relation == 1
    at = self._order.index(int(i))
    later = self._order[at + 1:at + 4]
    # moved a little, and differently each time: every row is findable
    rows = np.stack([self._rt.q_stream[j] + 1e-2 * (3 * at + k + 1)
                     for k, j in enumerate(later)])
    questions = [self._rt.stream[j].input for j in later]
    self.made += [(r, q, int(i)) for r, q in zip(rows, questions)]
    return rows, questions


def _negatives_run(runtime, tmp_path=None, on_edit=None, resume=False,
                   in_memory=True):
  order = stream.fold_orders(len(runtime.stream), 1, 0)[0]
  wrapped = _WithNegatives(runtime, order)
  cfg = stream.StreamConfig(num_edits=5, seed=0, checkpoint_every=1,
                            subject_negatives=1,
                            negatives_in_memory=in_memory)
  out = stream.run(wrapped, pj.fast_config(max_steps=300), cfg,
                   checkpoint_dir=str(tmp_path) if tmp_path else None,
                   on_edit=on_edit, resume=resume, log=lambda *_: None)
  return wrapped, out


def test_subject_negatives_join_memory_and_leave_it_when_edited(runtime):
  wrapped, out = _negatives_run(runtime)
  recs = out["records"]
  edited_at = {runtime.stream[r["stream_index"]].input: r["edit"]
               for r in recs}
  made_at = {r["stream_index"]: r["edit"] for r in recs}
  assert len(wrapped.made) == 3 * len(recs)
  for mem in (out["state"].memory, out["state"].val_memory):
    queries = np.asarray(mem.queries[0])
    valid = np.asarray(mem.mask[0])
    for row, question, owner in wrapped.made:
      where = np.flatnonzero((queries == row).all(-1))
      assert len(where) == 1
      # a negative edited after it was added is no negative any more
      dropped = (question in edited_at
                 and edited_at[question] > made_at[owner])
      assert valid[where[0]] == (not dropped)
  assert any(q in edited_at for _, q, _ in wrapped.made)  # the test bites
  # dropping rows keeps an unsharded state uncommitted: committed inputs
  # would compile every edit program a second time
  assert not any(leaf.committed for leaf in jax.tree.leaves(out["state"]))


def test_placed_like_keeps_the_placement():
  new = np.array([True, False])
  loose = stream._placed_like(new, jax.numpy.ones(2, bool))  # pylint: disable=protected-access
  assert not loose.committed
  device = jax.devices()[0]
  pinned = jax.device_put(np.ones(2, bool), device)
  placed = stream._placed_like(new, pinned)  # pylint: disable=protected-access
  assert placed.committed and placed.sharding == pinned.sharding
  np.testing.assert_array_equal(placed, new)


def test_subject_negatives_change_the_edits_and_resume_exactly(runtime,
                                                               tmp_path):
  _, full = _negatives_run(runtime)
  plain = _run(runtime, num_edits=5)
  # the negatives are in the memory the edits see
  assert (int(full["state"].memory.size[0])
          > int(plain["state"].memory.size[0]))

  crash_after_two = _crash_after(2)

  with pytest.raises(Crash):
    _negatives_run(runtime, tmp_path, on_edit=crash_after_two)
  _, resumed = _negatives_run(runtime, tmp_path, resume=True)
  chex.assert_trees_all_close(resumed["state"], full["state"], atol=0)
  strip = lambda recs: [{k: v for k, v in r.items() if k != "edit_time_s"}
                        for r in recs]
  assert strip(resumed["records"]) == strip(full["records"])


def test_subject_negatives_of_the_edit_only_leave_memory_alone(runtime):
  wrapped, own = _negatives_run(runtime, in_memory=False)
  plain = _run(runtime, num_edits=5)
  assert len(wrapped.made) == 3 * len(own["records"])
  for name in ("memory", "val_memory"):
    a, b = getattr(own["state"], name), getattr(plain["state"], name)
    assert int(a.size[0]) == int(b.size[0])


class _FakeChecks:
  """A runtime's `mistakes` over fixed answers, recording the rows asked."""

  def __init__(self, wrong, by_row):
    self.wrong, self.checks_by_row, self.asked = np.asarray(wrong), by_row, []

  def mistakes(self, bank, idxs):
    del bank
    self.asked.append(list(idxs))
    return self.wrong[np.asarray(idxs, int)]


@pytest.mark.parametrize("by_row", [False, True])
@pytest.mark.parametrize("wrong,window,want", [
    ([1, 0, 1, 0], [0, 1, 2, 3], 0),
    ([0, 0, 1, 0], [0, 1, 2, 3], 2),
    ([0, 0, 0, 0], [0, 1, 2, 3], None),
    ([0, 1, 0, 0], [1], 0),
    ([0, 0, 0, 1], [3, 2], 0),
])
def test_first_mistake_is_the_first_wrong_record_either_way(wrong, window,
                                                            want, by_row):
  fake = _FakeChecks(wrong, by_row)
  assert stream._first_mistake(fake, None, np.asarray(window)) == want  # pylint: disable=protected-access
  if by_row and len(window) > 1:
    assert fake.asked[0] == window[:1]     # the likeliest mistake alone
  else:
    assert fake.asked == [window]


@pytest.fixture(scope="module")
def seq2seq_runtime():
  from helpers import tiny
  return tiny.seq2seq_runtime()


@pytest.mark.parametrize("kind", ["classification", "seq2seq"])
@pytest.mark.parametrize("crash_at, resumed_after", [(3, 2), (4, 3)])
def test_curve_points_after_a_resume_equal_an_unbroken_run(
    kind, crash_at, resumed_after, runtime, seq2seq_runtime, tmp_path,
    monkeypatch):
  """A curve point's model work runs in the background (seq2seq) and is
  appended before the next checkpoint, so the checkpoint of its own round
  lacks it: a run resumed from there computes it again (crash at the 3rd
  record, in round 3: resumed after round 2, point 2 under way at its
  save), one resumed later finds it saved (crash in round 4)."""
  rt = {"classification": runtime, "seq2seq": seq2seq_runtime}[kind]
  save = stream.ckpt_lib.save

  def save_and_wait(mngr, *args):   # the crash finds every save on disk
    save(mngr, *args)
    mngr.wait_until_finished()

  monkeypatch.setattr(stream.ckpt_lib, "save", save_and_wait)
  cfg = stream.StreamConfig(num_edits=5, seed=0, checkpoint_every=1,
                            curve_every=2, curve_size=8)
  # no memory loss for the tiny BART: its edits fail with it (see
  # test_stream_seq2seq), and the curve would show nothing
  edit_cfg = pj.fast_config(max_steps=400, **(
      {"mem_weight": 0.0} if kind == "seq2seq" else {}))
  notes = []
  run = lambda d, **kw: stream.run(rt, edit_cfg, cfg, checkpoint_dir=str(d),
                                   log=notes.append, **kw)
  full = run(tmp_path / "full")
  assert [p["round"] for p in full["curve"]] == [2, 4, 5]
  assert any(p["per_fold"]["0"]["ER"] > 0 for p in full["curve"])
  with pytest.raises(Crash):
    run(tmp_path / "broken", on_edit=_crash_after(crash_at))
  resumed = run(tmp_path / "broken", resume=True)
  assert any(n.startswith(f"resumed after round {resumed_after}:")
             for n in notes), notes
  np.testing.assert_equal(resumed["curve"], full["curve"])   # nan == nan
