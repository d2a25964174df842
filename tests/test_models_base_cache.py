"""Base-model cache: fingerprints, Orbax round trip, train-once-then-reuse."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import chex
import jax
import numpy as np
import pytest
from transformers import BertConfig, BertTokenizerFast, FlaxBertModel

from patcher_jax.data import Benchmark, Record
from patcher_jax.models import base_cache, train_classifier as tc
from patcher_jax.models import train_seq2seq as ts

CITIES = "paris lyon rome oslo lima quito hanoi cairo".split()
COUNTRIES = "france italy norway peru ecuador vietnam egypt".split()
WORDS = CITIES + COUNTRIES + ("is in which country the city of indeed never "
                              "a ? .").split()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A tiny BERT encoder + WordPiece tokenizer as a local HF folder."""
  path = tmp_path_factory.mktemp("tiny_bert")
  vocab = path / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                             + WORDS) + "\n")
  BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(str(path))
  cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32,
                   num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=32)
  FlaxBertModel(cfg, seed=0).save_pretrained(str(path))  # msgpack form
  return str(path)


def _fever_bench(n=16):
  recs = []
  for i in range(n):
    c, y = CITIES[i % 8], i % 2
    recs.append(Record(f"f{i}", f"the city of {c} is {'indeed' if y else 'never'}"
                       " in a country .", ("SUPPORTS" if y else "REFUTES",),
                       (f"{c} is {'indeed' if y else 'never'} in a country ?",)))
  return Benchmark(tuple(recs), tuple(recs[:4]), tuple(recs[4:8]),
                   tuple(recs[8:12]))


def _zsre_bench():
  recs = [Record(f"q{i}", f"the city of {c} is in which country ?", (k,),
                 (f"which country is {c} in ?",))
          for i, (c, k) in enumerate(zip(CITIES, COUNTRIES))]
  return Benchmark(tuple(recs), tuple(recs[:2]), tuple(recs[2:5]),
                   tuple(recs[5:]))


FEVER_FAST = tc.ClassifierSettings(frozen_layers=1, learning_rate=3e-3,
                                   warmup_steps=2, batch_size=8, epochs=3)
ZSRE_FAST = ts.Seq2SeqSettings(decoder_layers=1, learning_rate=3e-3,
                               warmup_steps=2, batch_size=8, epochs=2,
                               tgt_buckets=(), min_steps=0,
                               target_train_em=None)


def test_fingerprint_tracks_data_settings_and_source(model_dir):
  b = _fever_bench()
  src = base_cache.source_fingerprint(model_dir)
  fp = base_cache.train_fingerprint("fever", b, FEVER_FAST, src)
  assert fp == base_cache.train_fingerprint("fever", _fever_bench(),
                                            FEVER_FAST, src)
  changed = b._replace(train=b.train[:-1] + (b.train[-1]._replace(
      answers=("REFUTES",)),))
  assert fp != base_cache.train_fingerprint("fever", changed, FEVER_FAST, src)
  assert fp != base_cache.train_fingerprint(
      "fever", b, FEVER_FAST._replace(seed=1), src)
  assert fp != base_cache.train_fingerprint("fever", b, FEVER_FAST,
                                            dict(src, x="y"))
  # Other splits only touch the eval fingerprint.
  other = b._replace(test=b.test[:2])
  assert fp == base_cache.train_fingerprint("fever", other, FEVER_FAST, src)
  assert base_cache.eval_fingerprint(b) != base_cache.eval_fingerprint(other)


def test_fever_trains_once_then_restores(model_dir, tmp_path):
  bench = _fever_bench()
  first = base_cache.load_or_train_base(
      "fever", bench, cache_dir=str(tmp_path), model_dir=model_dir,
      settings=FEVER_FAST, data_key="tiny:x/y", show_progress=False)
  assert first.info["train"]["trained"]
  assert os.path.isdir(os.path.join(first.path, "params"))
  assert os.path.basename(first.path).startswith("fever-tiny-x-y-")
  m = first.info["metrics"]
  for key in ("train_acc", "val_acc", "test_acc", "edit_acc",
              "train_heldout_acc", "edit_mistakes"):
    assert key in m, key
  assert m["num_edit"] == 4 and 0 <= m["edit_mistakes"] <= 4
  # Nothing but the final folder is left behind (atomic rename).
  assert os.listdir(os.path.dirname(first.path)) == [
      os.path.basename(first.path)]

  again = base_cache.load_or_train_base(
      "fever", bench, cache_dir=str(tmp_path), model_dir=model_dir,
      settings=FEVER_FAST, data_key="tiny:x/y", show_progress=False)
  assert again.path == first.path
  assert again.info["created"] == first.info["created"]  # not retrained
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, again.params),
                              jax.tree.map(np.asarray, first.params))
  assert again.config.num_labels == 1
  texts = [r.input for r in bench.test]
  np.testing.assert_allclose(
      tc.predict_logits(again.model, again.params, again.tokenizer, texts),
      tc.predict_logits(first.model, first.params, first.tokenizer, texts),
      rtol=1e-6)


def test_model_dir_with_a_task_model_is_used_as_is(model_dir, tmp_path):
  bench = _fever_bench()
  base = base_cache.train_base("fever", bench, model_dir, FEVER_FAST,
                               show_progress=False)
  ready = tmp_path / "ready"
  base.model.save_pretrained(str(ready), params=base.params)
  base.tokenizer.save_pretrained(str(ready))
  out = base_cache.load_or_train_base(
      "fever", bench, cache_dir=str(tmp_path / "cache"),
      model_dir=str(ready), settings=FEVER_FAST, show_progress=False)
  assert not out.info["train"]["trained"]
  chex.assert_trees_all_close(jax.tree.map(np.asarray, out.params),
                              jax.tree.map(np.asarray, base.params))
  assert "train_acc" in out.info["metrics"]  # recomputed (not trained here)


def test_zsre_trains_once_then_restores(model_dir, tmp_path):
  bench = _zsre_bench()
  first = base_cache.load_or_train_base(
      "zsre", bench, cache_dir=str(tmp_path), model_dir=model_dir,
      settings=ZSRE_FAST, show_progress=False)
  assert first.info["train"]["trained"]
  assert first.config.model_type == "bart"
  assert not first.config.tie_word_embeddings  # the recipe unties the head
  assert "lm_head" in first.params
  for key in ("train_em", "val_em", "test_em", "train_heldout_em",
              "edit_mistakes"):
    assert key in first.info["metrics"], key
  again = base_cache.load_or_train_base(
      "zsre", bench, cache_dir=str(tmp_path), model_dir=model_dir,
      settings=ZSRE_FAST, show_progress=False)
  assert again.info["created"] == first.info["created"]
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, again.params),
                              jax.tree.map(np.asarray, first.params))
  assert again.tokenizer.sep_token_id == first.config.decoder_start_token_id


def test_scheduled_steps_scale_small_data_up_to_max_epochs():
  s = ts.Seq2SeqSettings(epochs=8, min_steps=2000, max_epochs=40)
  assert ts.scheduled_steps(300, s) == 2400       # large data: 8 passes
  assert ts.scheduled_steps(75, s) == 2000        # small: raised to min_steps
  assert ts.scheduled_steps(10, s) == 400         # tiny: at most 40 passes
  assert ts.scheduled_steps(75, s._replace(min_steps=0)) == 600


def test_zsre_training_stops_at_the_target_train_em(model_dir):
  bench = _zsre_bench()
  settings = ZSRE_FAST._replace(min_steps=300, max_epochs=300,
                                target_train_em=0.75)
  base = base_cache.train_base("zsre", bench, model_dir, settings,
                               show_progress=False)
  t = base.info["train"]
  assert t["planned_steps"] == 300 and t["reached_target"]
  assert t["steps"] < t["planned_steps"]
  # Checks start after `epochs` passes; the last one reached the target, and
  # teacher-forced EM is greedy EM: the final greedy score agrees.
  checks = t["em_checks"]
  assert checks[0][0] == 2 * t["steps_per_epoch"]
  assert checks[-1][0] == t["steps"] and checks[-1][2] >= 0.75
  assert all(em < 0.75 for _, _, em in checks[:-1])
  assert t["train_inputs_em"] == pytest.approx(checks[-1][2], abs=1e-4)
