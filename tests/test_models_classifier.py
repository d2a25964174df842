"""The FEVER classifier: slices equal the transformers model, loss, training."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import BertConfig

from patcher_jax.data import Record
from patcher_jax.models import minilm, train_classifier as tc


WORDS = ("paris lyon rome oslo lima quito hanoi cairo is indeed never a city "
         "in some country lies , .").split()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  """A WordPiece tokenizer over a 25-word vocabulary (keeps the model tiny)."""
  from transformers import BertTokenizerFast
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                             + list(WORDS)) + "\n")
  return BertTokenizerFast(vocab_file=str(path), do_lower_case=True)


_TINY = {}


def _tiny(seed=0):
  if seed not in _TINY:
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32,
                     num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    from transformers import FlaxBertModel
    model = FlaxBertModel(cfg, _do_init=False)
    bert = jax.jit(model.init_weights, static_argnums=1)(
        jax.random.PRNGKey(seed), (1, 4))
    _TINY[seed] = tc.init_classifier(bert, cfg, seed=seed)
  return _TINY[seed]


def test_config_and_tree_are_the_standard_classifier():
  cfg, params = _tiny()
  assert cfg.num_labels == 1
  model = tc.classifier_model(cfg)
  want = jax.eval_shape(lambda r: model.init_weights(r, (1, 4)),
                        jax.random.PRNGKey(0))
  chex.assert_trees_all_equal_shapes_and_dtypes(params, want)


@pytest.mark.parametrize("start", [0, 1, 2])
def test_slices_compose_to_the_transformers_model(start):
  cfg, params = _tiny()
  ids = jnp.array([[2, 5, 6, 7, 3, 0], [2, 9, 3, 0, 0, 0]])
  mask = (ids > 0).astype(jnp.int32)
  want = tc.classifier_model(cfg)(ids, attention_mask=mask,
                                  params=params).logits[:, 0]
  lower = tc.BertSlice(cfg, 0, start, embed=True, head=False).apply(
      {"params": tc.to_slice(params, 0, start, True, False)}, ids, mask)
  x = ids if start == 0 else lower
  got = tc.BertSlice(cfg, start, 3, embed=start == 0, head=True).apply(
      {"params": tc.to_slice(params, start, 3, start == 0, True)}, x, mask)
  np.testing.assert_allclose(got, want, atol=1e-5)
  # from_slice(to_slice) is the identity.
  back = tc.from_slice(params, tc.to_slice(params, start, 3, True, True))
  chex.assert_trees_all_equal(back, params)


def test_loss_is_bce_minus_entropy():
  z = jnp.array([2.0, -1.0, 0.0])
  y = jnp.array([1.0, 1.0, 0.0])
  w = jnp.array([1.0, 1.0, 0.0])  # third row is padding
  p = jax.nn.sigmoid(z)
  bce = -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
  ent = -(p * jnp.log(p) + (1 - p) * jnp.log(1 - p))
  want = jnp.mean((bce - 0.1 * ent)[:2])
  np.testing.assert_allclose(tc.classifier_loss(z, y, w, 0.1), want, rtol=1e-5)
  assert tc.accuracy(np.array([2.0, -1.0]), np.array([1, 1])) == 0.5


def _synthetic_records(n=96):
  # Label is carried by a word: learnable quickly, but not by chance.
  rng = np.random.default_rng(0)
  cities = ["paris", "lyon", "rome", "oslo", "lima", "quito", "hanoi", "cairo"]
  recs = []
  for i in range(n):
    y = i % 2
    c = cities[rng.integers(len(cities))]
    word = "indeed" if y else "never"
    recs.append(Record(f"r{i}", f"{c} is {word} a city in some country .",
                       ("SUPPORTS" if y else "REFUTES",),
                       (f"{c} , {word} , lies in a country .",)))
  return recs


def test_training_learns_and_is_reproducible(tok):
  cfg, params = _tiny()
  texts, labels, groups = tc.training_texts(_synthetic_records(), True)
  assert len(texts) == 192 and labels.mean() == 0.5
  np.testing.assert_array_equal(groups[:4], [0, 0, 1, 1])
  settings = tc.ClassifierSettings(frozen_layers=1, learning_rate=3e-3,
                                   warmup_steps=5, batch_size=16, epochs=8,
                                   seed=1)
  new, info = tc.train_classifier(cfg, params, tok, texts, labels, groups,
                                  settings, show_progress=False)
  assert info["train_acc"] == 1.0, info
  assert info["num_groups"] == 96
  model = tc.classifier_model(cfg)
  logits = tc.predict_logits(model, new, tok, texts)
  assert tc.accuracy(logits, labels) == 1.0
  # Frozen parts are untouched; trained parts moved.
  np.testing.assert_array_equal(
      new["bert"]["embeddings"]["word_embeddings"]["embedding"],
      params["bert"]["embeddings"]["word_embeddings"]["embedding"])
  chex.assert_trees_all_equal(new["bert"]["encoder"]["layer"]["0"],
                              params["bert"]["encoder"]["layer"]["0"])
  assert not np.allclose(new["bert"]["encoder"]["layer"]["1"]["output"]
                         ["dense"]["kernel"], params["bert"]["encoder"]["layer"]
                         ["1"]["output"]["dense"]["kernel"])
  again, _ = tc.train_classifier(cfg, params, tok, texts, labels, groups,
                                 settings, show_progress=False)
  chex.assert_trees_all_equal(again, new)


def test_full_finetune_path_trains_all_but_word_embeddings(tok):
  cfg, params = _tiny()
  texts, labels, _ = tc.training_texts(_synthetic_records(32), False)
  settings = tc.ClassifierSettings(frozen_layers=0, warmup_steps=1,
                                   batch_size=16, epochs=1)
  new, info = tc.train_classifier(cfg, params, tok, texts, labels,
                                  settings=settings, show_progress=False)
  assert info["steps"] == 2 and np.isfinite(info["final_running_loss"])
  emb, old = new["bert"]["embeddings"], params["bert"]["embeddings"]
  np.testing.assert_array_equal(emb["word_embeddings"]["embedding"],
                                old["word_embeddings"]["embedding"])
  assert not np.allclose(emb["position_embeddings"]["embedding"],
                         old["position_embeddings"]["embedding"])
