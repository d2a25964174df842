"""The seq2seq runtime on a tiny random BART with the real tokenizer:
patched greedy generation agrees with the teacher-forced success check."""
import jax.numpy as jnp
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import stream
from patcher_jax.data import load_benchmark
from patcher_jax.tasks import seq2seq


@pytest.fixture(scope="module")
def runtime():
  from transformers import BartConfig, FlaxBartForConditionalGeneration
  from patcher_jax.models import minilm
  tok = minilm.load_tokenizer()
  config = BartConfig(
      vocab_size=tok.vocab_size, d_model=32, encoder_layers=1,
      decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
      encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
      pad_token_id=0, bos_token_id=101, eos_token_id=102,
      decoder_start_token_id=102, forced_bos_token_id=None,
      scale_embedding=False)
  model = FlaxBartForConditionalGeneration(config, seed=0)
  bench = load_benchmark("zsre", scale="tiny")
  train = list(bench.train)
  return seq2seq.Seq2SeqRuntime(
      model, model.params, tok, bench.edit[:30], train[:16], bench.test[:16],
      train[16:60], bench.val[:10], max_tgt_len=12, max_new_tokens=12,
      batch_size=16, log=lambda *_: None)


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
