"""Seq2seq QA format, the exact-match metric and greedy decoding."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import numpy as np
import pytest
from transformers import BartConfig, FlaxBartForConditionalGeneration

from patcher_jax.models import minilm, qa_format


@pytest.fixture(scope="module")
def tok():
  return minilm.load_tokenizer()


def test_encode_qa_layout(tok):
  out = qa_format.encode_qa(tok, ["capital of france?", "a b"],
                            ["Paris", "New Delhi"], 8, 6)
  cls, sep, pad = 101, 102, 0
  paris = tok("Paris", add_special_tokens=False)["input_ids"]
  assert len(paris) == 1
  # trg = [SEP, CLS, paris, SEP]: inputs trg[:-1], labels trg[1:].
  np.testing.assert_array_equal(out["decoder_input_ids"][0],
                                [sep, cls, paris[0], pad, pad, pad])
  np.testing.assert_array_equal(out["labels"][0],
                                [cls, paris[0], sep, pad, pad, pad])
  np.testing.assert_array_equal(out["label_mask"][0], [1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(out["decoder_attention_mask"][1],
                                [1, 1, 1, 1, 0, 0])
  assert out["input_ids"].shape == (2, 8)
  assert out["input_ids"][0, 0] == cls
  for v in out.values():
    assert v.dtype == np.int32
  # Truncation keeps the final [SEP] as the last label.
  long = qa_format.encode_targets(tok, ["one two three four five six"], 4)
  np.testing.assert_array_equal(long["labels"][0, -1], sep)


@pytest.mark.parametrize("gold", [
    "Île-de-France", "St. John's", "São Tomé and Príncipe", "  New   Delhi ",
    "Baden-Württemberg", "Côte d'Ivoire", "U.S. dollar"])
def test_normalize_answer_survives_wordpiece_round_trip(tok, gold):
  decoded = tok.decode(tok(gold)["input_ids"], skip_special_tokens=True)
  assert qa_format.normalize_answer(decoded) == qa_format.normalize_answer(gold)
  assert qa_format.exact_match(decoded, ["nope", gold])


def test_normalize_answer_distinguishes_answers():
  n = qa_format.normalize_answer
  assert n("Paris") == n(" paris ") == "paris"
  assert n(n("Île-de-France")) == n("Île-de-France")
  assert n("Paris") != n("Parish")
  assert not qa_format.exact_match("new delhi", ["Delhi"])


def _tiny_bart():
  cfg = BartConfig(vocab_size=40, d_model=16, encoder_layers=1,
                   decoder_layers=2, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=32,
                   decoder_ffn_dim=32, max_position_embeddings=32,
                   pad_token_id=0, bos_token_id=1, eos_token_id=2,
                   decoder_start_token_id=2, forced_eos_token_id=None,
                   init_std=0.5)  # large weights: varied, non-trivial outputs
  return FlaxBartForConditionalGeneration(cfg, seed=3)


def test_greedy_matches_transformers_generate():
  model = _tiny_bart()
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 40, size=(10, 7)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[3:, 5:] = 0
  ids[mask == 0] = 0
  n_new = 6
  ours = qa_format.greedy_generate_ids(model, model.params, ids, mask, n_new,
                                       batch_size=4)
  gc = qa_format.generation_config(model.config, n_new)
  ref = np.asarray(model.generate(ids, attention_mask=mask,
                                  params=model.params,
                                  generation_config=gc).sequences)
  assert ref.shape == (10, n_new + 1)
  assert (ref[:, 0] == 2).all()
  assert len(set(map(tuple, ours.tolist()))) > 2  # not a constant output
  np.testing.assert_array_equal(ours, ref[:, 1:])
  # Cached encoder outputs give the same tokens.
  hidden = model.encode(ids, attention_mask=mask,
                        params=model.params).last_hidden_state
  done = []
  again = qa_format.greedy_generate_ids(model, model.params, ids, mask, n_new,
                                        batch_size=4,
                                        encoder_hidden=np.asarray(hidden),
                                        on_batch=done.append)
  np.testing.assert_array_equal(again, ours)
  assert done == [4, 4, 2]        # the rows of each batch, as they are done


def test_greedy_pads_after_eos():
  model = _tiny_bart()
  params = jax.tree.map(lambda x: x, model.params)
  # Make eos (2) the argmax everywhere: first token eos, then padding.
  bias = np.zeros((1, 40), np.float32)
  bias[0, 2] = 1e4
  params = dict(params, final_logits_bias=bias)
  ids = np.full((3, 5), 7, np.int32)
  out = qa_format.greedy_generate_ids(model, params, ids, np.ones_like(ids), 4)
  np.testing.assert_array_equal(out, [[2, 0, 0, 0]] * 3)


def test_generation_config_is_pinned():
  gc = qa_format.generation_config(_tiny_bart().config, 12)
  assert gc.num_beams == 1 and not gc.do_sample
  assert gc.max_length == 13 and gc.no_repeat_ngram_size == 0
  assert gc.forced_bos_token_id is None and gc.forced_eos_token_id is None
  assert gc.decoder_start_token_id == gc.eos_token_id == 2
