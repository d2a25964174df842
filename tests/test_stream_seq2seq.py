"""The seq2seq runtime on a tiny random BART with the real tokenizer:
patched greedy generation agrees with the teacher-forced success check."""
import numpy as np
import pytest

import patcher_jax as pj
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
  out = stream.run(runtime, pj.fast_config(mem_weight=10.0, max_steps=400),
                   cfg, log=lambda *_: None)
  recs = out["records"]
  assert len(recs) == 3
  assert all(r["neurons"] <= 5 for r in recs)
  for r in recs:
    if r["train_success"]:
      assert r["success"], r          # greedy decoding reproduces the gold
  # memory rows: positions 1..m+1 of the teacher-forced answer
  i = recs[0]["stream_index"]
  m = int(np.asarray(runtime.stream_qa["decoder_attention_mask"][i]).sum())
  assert runtime.memory_rows(i).shape == (m - 1, runtime.dim)


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
