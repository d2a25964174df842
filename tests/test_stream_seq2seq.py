"""The seq2seq runtime on a tiny random BART with the real tokenizer:
patched greedy generation agrees with the teacher-forced success check."""
import jax
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import configs
from patcher_jax import stream
from helpers import tiny


@pytest.fixture(scope="module")
def runtime():
  return tiny.seq2seq_runtime()


def test_empty_bank_generation_equals_unpatched(runtime):
  from patcher_jax.models import qa_format
  qs = [r.input for r in runtime.stream[:4]]
  src = qa_format.encode_sources(runtime.tokenizer, qs, runtime.max_src_len)
  want = qa_format.greedy_generate(runtime.model, runtime.params,
                                   src["input_ids"], src["attention_mask"],
                                   12, runtime.tokenizer, batch_size=8)
  got = runtime.generate(pj.init_bank(8, runtime.dim), qs, 8)
  assert got == want


def test_teacher_forced_success_means_generation_success(runtime):
  cfg = stream.StreamConfig(num_edits=3, seed=0, checkpoint_every=0)
  # No memory loss: the queries of a tiny random model are nearly parallel,
  # so with it no edit is fixed in 400 steps and there would be nothing to
  # compare (failed edits are discarded).
  out = stream.run(runtime, pj.fast_config(mem_weight=0.0, max_steps=400),
                   cfg, log=lambda *_: None)
  recs = out["records"]
  assert len(recs) == 3
  assert all(r["neurons"] <= 5 for r in recs)
  # Real greedy decoding (no draft) with the bank as it was before and right
  # after each edit: success and the answers in the record are what it says.
  from patcher_jax.models import qa_format
  bank = jax.tree.map(lambda a: a[0], out["state"].bank)
  empty = pj.init_bank(8, runtime.dim)
  for r in recs:
    rec = runtime.stream[r["stream_index"]]
    after = _bank_after(bank, r["edit"])
    before = _bank_after(bank, r["edit"] - 1) if r["edit"] else empty
    said, = runtime.generate(after, [rec.input], 8)
    assert r["success"] == qa_format.exact_match(said, rec.answers), r
    if r["train_success"]:
      assert r["success"], r          # greedy decoding reproduces the gold
    assert r["answer_after"] == said
    assert r["answer_before"] == runtime.generate(before, [rec.input], 8)[0]
    assert r["target"] == rec.answers[0] and r["input"] == rec.input
    reph = list(rec.rephrases)[:5]
    said = runtime.generate(empty, reph, 8)
    assert r["rephrase_correct_before"] == sum(
        qa_format.exact_match(a, rec.answers) for a in said)
  assert any(r["success"] for r in recs)
  # memory rows: positions 1..m+1 of the teacher-forced answer
  i = recs[0]["stream_index"]
  m = int(np.asarray(runtime.stream_qa["decoder_attention_mask"][i]).sum())
  assert runtime.memory_rows(i).shape == (m - 1, runtime.dim)


def _bank_after(bank, t):
  """The bank as it was right after edit t: later edits dropped."""
  for later in range(t + 1, int(np.max(bank.edit_ids)) + 1):
    bank = pj.drop_edit(bank, later)
  return bank


def test_a_bank_grown_mid_stream_gives_the_same_run(runtime, monkeypatch):
  cfg = stream.StreamConfig(num_edits=3, seed=0, checkpoint_every=0,
                            max_neurons=16)
  config = pj.fast_config(mem_weight=10.0, max_steps=400)
  want = stream.run(runtime, config, cfg, log=lambda *_: None)
  monkeypatch.setattr(stream, "_capacity", lambda n: 1)  # grow at every edit
  got = stream.run(runtime, config, cfg, log=lambda *_: None)
  drop_time = lambda recs: [{k: v for k, v in r.items() if k != "edit_time_s"}
                            for r in recs]
  assert drop_time(got["records"]) == drop_time(want["records"])
  a, b = want["state"].bank, got["state"].bank
  n = int(a.size[0])
  assert int(b.size[0]) == n and b.capacity >= n
  np.testing.assert_allclose(b.keys[:, :n], a.keys[:, :n], atol=1e-6)
  np.testing.assert_allclose(b.values[:, :n], a.values[:, :n], atol=1e-6)


def test_memory_grown_mid_stream_gives_the_same_run(runtime, monkeypatch):
  # The buffers are sized by the mean rows an edit adds; an estimate too
  # low only makes them grow (one more compile), never changes a decision.
  cfg = stream.StreamConfig(num_edits=3, seed=0, checkpoint_every=0)
  config = pj.fast_config(mem_weight=10.0, max_steps=400)
  want = stream.run(runtime, config, cfg, log=lambda *_: None)
  monkeypatch.setattr(stream, "_memory_capacity", lambda n: n)  # no blocks
  monkeypatch.setattr(stream, "_memory_rows_per_edit", lambda *_: 0)
  grown = []
  grow = stream.memory_lib.grow
  monkeypatch.setattr(stream.memory_lib, "grow",
                      lambda *a: grown.append(a[1]) or grow(*a))
  got = stream.run(runtime, config, cfg, log=lambda *_: None)
  assert grown                                        # the buffers grew
  # a buffer shorter than the memory loss's k sums its rows in another
  # order: the losses agree to rounding, every decision exactly
  losses = ("loss", "act_loss", "mem_loss1", "mem_loss2", "edit_loss")
  strip = lambda recs: [{k: v for k, v in r.items()
                         if k not in losses + ("edit_time_s",)} for r in recs]
  assert strip(got["records"]) == strip(want["records"])
  for a, b in zip(got["records"], want["records"]):
    np.testing.assert_allclose([a[k] for k in losses], [b[k] for k in losses],
                               rtol=1e-5)
  for name in ("memory", "val_memory"):
    a, b = getattr(want["state"], name), getattr(got["state"], name)
    n = int(a.size[0])
    assert int(b.size[0]) == n > len(getattr(runtime, name + "0"))
    np.testing.assert_array_equal(b.queries[:, :n], a.queries[:, :n])
    np.testing.assert_array_equal(b.mask[:, :n], a.mask[:, :n])


def test_parity_memory_gets_the_references_rows(runtime):
  """The reference flattens all decoder positions of its 8 training copies
  and keeps [1:-1]: position 0 of copies 1-7 is in, 8 L - 2 rows."""
  cfg = stream.StreamConfig(num_edits=1, seed=0, checkpoint_every=0,
                            noise_samples=8, reference_memory=True)
  out = stream.run(runtime, configs.get("zsre", "parity", max_steps=25), cfg,
                   log=lambda *_: None)   # rows join whether or not it held
  i = out["records"][0]["stream_index"]
  mask = np.asarray(runtime.stream_qa["decoder_attention_mask"][i], bool)
  length = int(mask.sum())
  positions = runtime.q_stream[i][:length]          # positions 0..L-1
  want = np.concatenate([positions] * 8)[1:-1]
  assert len(want) == 8 * length - 2
  for mem, start in ((out["state"].memory, len(runtime.memory0)),
                     (out["state"].val_memory, len(runtime.val_memory0))):
    assert int(mem.size[0]) == start + len(want)
    got = np.asarray(mem.queries[0, start:start + len(want)])
    np.testing.assert_array_equal(got, want)
    # position 0 (the decoder start) appears once per copy but the first
    assert sum(np.array_equal(r, positions[0]) for r in got) == 7
