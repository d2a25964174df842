"""Fine-tune the fact-checking classifier (FEVER): MiniLM + Linear(hidden -> 1).

The model is the unmodified ``transformers.FlaxBertForSequenceClassification``
with ``num_labels=1``: pooler -> dropout -> Linear(hidden, 1); ``logit > 0``
means SUPPORTS. The reference's ``BertBinary`` has no dropout between the
pooler and the Linear; here that dropout acts only when ``train_dropout`` is
set (off by default), and the editor's tail never applies it
(``adapters/bert.py``), so edits see the reference's head. Loss (reference):
binary cross-entropy with logits minus 0.1 x the Bernoulli entropy of the
prediction (a confidence penalty).

Speed on 2 CPU cores: the lower ``frozen_layers`` encoder layers (and the
embeddings) can be frozen; their output is then computed once per training
text and only the top layers, pooler and head run each step (the top layer on
[CLS] only: nothing else reaches the pooler). Inputs are
padded to length buckets (multiples of ``length_multiple``), one compiled step
per bucket. The word-embedding table (half of MiniLM's weights) is frozen by
default: updating 11.7M rarely-used rows each step costs more than it gives.
"""
import functools
import math
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from patcher_jax.models import train_utils as tu

Params = Dict[str, Any]


class ClassifierSettings(NamedTuple):
  """Training recipe of the FEVER classifier (all of it enters the cache key).

  Default: only the top encoder layer (run on [CLS] only), the pooler and the
  head train; layers 0-4 are frozen and computed once per training text. On
  the embedded benchmark this reached train accuracy 0.997 in about 5 minutes
  where training the top 3 layers or the whole model reached 0.60-0.66 in
  9-15 minutes (README.md).
  """
  seed: int = 0
  frozen_layers: int = 5  # lower encoder layers frozen and computed once
  train_word_embeddings: bool = False
  learning_rate: float = 3e-4
  weight_decay: float = 0.01
  warmup_steps: int = 100
  batch_size: int = 32
  epochs: float = 25.0  # passes over records, one random phrasing each
  entropy_weight: float = 0.1  # reference: loss = BCE - 0.1 * entropy
  # Dropout off while training the base model: memorising facts is faster.
  # The config keeps BERT's rates (0.1) for the editor.
  train_dropout: bool = False
  length_multiple: int = 8
  max_len: int = 64  # cap; the actual padding is sized from the data
  train_on_rephrases: bool = True  # also the records' trainable rephrases
  max_rephrases: Optional[int] = 2  # at most this many of them per record
  max_seconds: Optional[float] = None  # hard stop (breaks reproducibility)
  eval_batch_size: int = 128


# --------------------------------------------------------------------------
# Model.


def classifier_config(bert_config):
  """The classifier's ``BertConfig``: the encoder's, with one output logit."""
  cfg = bert_config.__class__.from_dict(bert_config.to_dict())
  cfg.num_labels = 1
  cfg.architectures = ["BertForSequenceClassification"]
  cfg.id2label, cfg.label2id = {0: "SUPPORTS"}, {"SUPPORTS": 0}
  return cfg


def classifier_model(config):
  from transformers import FlaxBertForSequenceClassification  # pylint: disable=g-import-not-at-top
  return FlaxBertForSequenceClassification(config, _do_init=False)


def init_classifier(bert_params: Params, bert_config, seed: int = 0
                    ) -> Tuple[Any, Params]:
  """(config, params) of a classifier whose encoder and pooler are BERT's.

  The head is fresh: kernel ~ N(0, initializer_range), bias 0.
  """
  cfg = classifier_config(bert_config)
  h = cfg.hidden_size
  bert = dict(bert_params)
  if "pooler" not in bert:  # a pooler-less checkpoint: start it fresh too
    k = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    bert["pooler"] = {"dense": {
        "kernel": cfg.initializer_range * jax.random.normal(k, (h, h)),
        "bias": jnp.zeros((h,))}}
  kernel = cfg.initializer_range * jax.random.normal(
      jax.random.PRNGKey(seed), (h, 1), jnp.float32)
  params = {"bert": bert,
            "classifier": {"kernel": kernel, "bias": jnp.zeros((1,))}}
  return cfg, jax.tree.map(lambda x: jnp.array(x, jnp.float32), params)


class ClsOnlyBertLayer(nn.Module):
  """A ``FlaxBertLayer`` that computes only position 0 ([CLS]).

  Same sub-modules and parameter names as ``FlaxBertLayer``; the [CLS] query
  attends over all positions (keys/values of every token, via the attention's
  ``key_value_states`` path). In the top layer only [CLS] reaches the pooler,
  so this is exact and skips the other positions' FFN and attention queries.
  """
  config: Any

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    from transformers.models.bert import modeling_flax_bert as fb  # pylint: disable=g-import-not-at-top
    cls = x[:, :1]
    attn = fb.FlaxBertAttention(self.config, name="attention")(
        cls, mask, None, key_value_states=x, deterministic=deterministic)[0]
    h = fb.FlaxBertIntermediate(self.config, name="intermediate")(attn)
    return fb.FlaxBertOutput(self.config, name="output")(
        h, attn, deterministic=deterministic)


class BertSlice(nn.Module):
  """Layers [start, stop) of the classifier, optionally with embeddings/head.

  Built from the same transformers sub-modules, so ``BertSlice(0, L, True,
  True)`` computes exactly ``FlaxBertForSequenceClassification``'s logits.
  With the head, the last layer runs on [CLS] only (``ClsOnlyBertLayer``).
  Parameter names are flat (``embeddings``, ``layer_3``, ``pooler``,
  ``classifier``); ``to_slice`` / ``from_slice`` convert.
  """
  config: Any
  start: int
  stop: int
  embed: bool
  head: bool

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    from transformers.models.bert import modeling_flax_bert as fb  # pylint: disable=g-import-not-at-top
    cfg = self.config
    if self.embed:
      ids = x
      pos = jnp.broadcast_to(jnp.arange(ids.shape[-1]), ids.shape)
      x = fb.FlaxBertEmbeddings(cfg, name="embeddings")(
          ids, jnp.zeros_like(ids), pos, mask, deterministic=deterministic)
    for i in range(self.start, self.stop):
      if self.head and i == self.stop - 1:
        x = ClsOnlyBertLayer(cfg, name=f"layer_{i}")(x, mask, deterministic)
      else:
        x = fb.FlaxBertLayer(cfg, name=f"layer_{i}")(
            x, mask, None, deterministic=deterministic)[0]
    if not self.head:
      return x
    pooled = fb.FlaxBertPooler(cfg, name="pooler")(x)
    rate = (cfg.classifier_dropout if cfg.classifier_dropout is not None
            else cfg.hidden_dropout_prob)
    pooled = nn.Dropout(rate=rate)(pooled, deterministic=deterministic)
    return nn.Dense(cfg.num_labels, name="classifier")(pooled)[..., 0]


def to_slice(params: Params, start: int, stop: int, embed: bool, head: bool
             ) -> Params:
  out = {f"layer_{i}": params["bert"]["encoder"]["layer"][str(i)]
         for i in range(start, stop)}
  if embed:
    out["embeddings"] = params["bert"]["embeddings"]
  if head:
    out["pooler"] = params["bert"]["pooler"]
    out["classifier"] = params["classifier"]
  return out


def from_slice(params: Params, sliced: Params) -> Params:
  """``params`` with the sub-trees present in ``sliced`` replaced."""
  bert = dict(params["bert"])
  layers = dict(bert["encoder"]["layer"])
  out = {"bert": bert, "classifier": params["classifier"]}
  for k, v in sliced.items():
    if k.startswith("layer_"):
      layers[k[len("layer_"):]] = v
    elif k == "classifier":
      out["classifier"] = v
    else:
      bert[k] = v
  bert["encoder"] = {"layer": layers}
  return out


# --------------------------------------------------------------------------
# Loss and metrics.


def classifier_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array,
                    entropy_weight: float = 0.1) -> jax.Array:
  """Weighted mean of BCE-with-logits minus ``entropy_weight`` x entropy."""
  bce = optax.sigmoid_binary_cross_entropy(logits, labels)
  p = jax.nn.sigmoid(logits)
  # Bernoulli entropy in a stable form: H = softplus(z) - z * sigmoid(z).
  entropy = jax.nn.softplus(logits) - logits * p
  per = bce - entropy_weight * entropy
  return jnp.sum(per * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """(logit > 0) == label, defined explicitly (ALGORITHM.md 9.2)."""
  if len(labels) == 0:
    return float("nan")
  return float(np.mean((np.asarray(logits) > 0) == (np.asarray(labels) > 0.5)))


# --------------------------------------------------------------------------
# Tokens.


class Tokens(NamedTuple):
  ids: np.ndarray  # [N, max_len] int32
  mask: np.ndarray  # [N, max_len] int32
  buckets: np.ndarray  # [N] padded length of each text


def tokenize(tokenizer, texts: Sequence[str], max_len: int,
             length_multiple: int) -> Tokens:
  enc = tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]
  lengths = np.array([len(x) for x in enc])
  width = tu.round_up(int(lengths.max()) if len(enc) else 1, length_multiple)
  width = min(width, max_len)
  ids = np.zeros((len(enc), width), np.int32)
  for i, x in enumerate(enc):
    ids[i, :len(x)] = x
  mask = (ids != tokenizer.pad_token_id).astype(np.int32)
  mask[:, 0] = 1
  return Tokens(ids, mask, tu.bucket_lengths(lengths, length_multiple, width))


def predict_logits(model, params: Params, tokenizer, texts: Sequence[str],
                   max_len: int = 64, batch_size: int = 128,
                   length_multiple: int = 8) -> np.ndarray:
  """Deterministic logits [N] of the classifier for raw texts."""
  if not len(texts):
    return np.zeros((0,), np.float32)
  tok = tokenize(tokenizer, texts, max_len, length_multiple)
  fn = _jitted_forward(model)
  out = np.zeros((len(texts),), np.float32)
  for b in tu.eval_batches(tok.buckets, batch_size):
    ids = tu.take_rows(tok.ids, b.index, b.length)
    mask = tu.take_rows(tok.mask, b.index, b.length)
    mask[:, 0] = 1
    logits = np.asarray(fn(params, ids, mask))
    keep = b.index >= 0
    out[b.index[keep]] = logits[keep]
  return out


_FORWARD = {}


def _jitted_forward(model):
  key = id(model)
  if key not in _FORWARD:
    _FORWARD[key] = (model, jax.jit(lambda p, ids, mask: model(
        ids, attention_mask=mask, params=p).logits[:, 0]))
  return _FORWARD[key][1]


# --------------------------------------------------------------------------
# Training.


def training_texts(records, train_on_rephrases: bool,
                   trainable_rephrases=None,
                   max_rephrases: Optional[int] = None
                   ) -> Tuple[list, np.ndarray, np.ndarray]:
  """(texts, labels, groups): each record's input, plus its trainable
  rephrases; ``groups`` holds the record index of each text."""
  from patcher_jax.data import fever_label  # pylint: disable=g-import-not-at-top
  texts, labels, groups = [], [], []
  for g, r in enumerate(records):
    y = fever_label(r)
    extra = ()
    if train_on_rephrases:
      extra = (trainable_rephrases(r) if trainable_rephrases is not None
               else r.rephrases)[:max_rephrases]
    for t in (r.input,) + tuple(extra):
      texts.append(t)
      labels.append(y)
      groups.append(g)
  return texts, np.asarray(labels, np.float32), np.asarray(groups, np.int64)


def _lower_hidden(config, params: Params, tok: Tokens, stop: int,
                  batch_size: int, show_progress: bool = False) -> np.ndarray:
  """Output of the frozen embeddings + layers [0, stop) for every text
  (a minute or more for the embedded benchmark's texts: shown as it goes)."""
  module = BertSlice(config, 0, stop, embed=True, head=False)
  sliced = to_slice(params, 0, stop, embed=True, head=False)
  fn = jax.jit(lambda p, ids, mask: module.apply({"params": p}, ids, mask))
  return tu.hidden_states(functools.partial(fn, sliced), tok.ids, tok.mask,
                          tok.buckets, batch_size, config.hidden_size,
                          show_progress=show_progress)


def train_classifier(config, params: Params, tokenizer, texts: Sequence[str],
                     labels: np.ndarray, groups: Optional[np.ndarray] = None,
                     settings: ClassifierSettings = ClassifierSettings(),
                     show_progress: bool = True) -> Tuple[Params, Dict]:
  """Fine-tunes the classifier on (texts, labels in {0, 1}).

  ``groups`` ties phrasings of one record together: an epoch shows each group
  once, in a random one of its phrasings (default: every text its own group).

  Returns the full, standard params tree and an info dict (steps, seconds,
  final running loss/accuracy, accuracy of the final model on each group's
  first text).
  """
  s = settings
  n_layers = config.num_hidden_layers
  k = int(s.frozen_layers)
  if not 0 <= k < n_layers:
    raise ValueError(f"frozen_layers must be in [0, {n_layers})")
  clock = tu.Stopwatch()
  labels = np.asarray(labels, np.float32)
  tok = tokenize(tokenizer, texts, s.max_len, s.length_multiple)
  embed = k == 0
  if embed:
    inputs = tok.ids
    precompute_s = 0.0
  else:
    inputs = _lower_hidden(config, params, tok, k, s.eval_batch_size,
                           show_progress)
    precompute_s = clock()
    logging.info("classifier: cached layers [0, %d) for %d texts in %.1fs",
                 k, len(texts), precompute_s)

  module = BertSlice(config, k, n_layers, embed=embed, head=True)
  sliced = to_slice(params, k, n_layers, embed=embed, head=True)

  def trainable(path):
    return s.train_word_embeddings or path[:2] != ("embeddings",
                                                   "word_embeddings")
  train_p, frozen_p = tu.to_device(tu.split_params(sliced, trainable))
  groups = np.arange(len(texts)) if groups is None else np.asarray(groups)
  num_steps = tu.planned_steps(groups, tok.buckets, s.batch_size, s.epochs)
  tx = tu.adamw_linear(s.learning_rate, num_steps, s.warmup_steps,
                       s.weight_decay)
  opt_state = tx.init(train_p)

  def loss_fn(tp, fp, x, mask, y, w, rng):
    logits = module.apply({"params": tu.merge_params(tp, fp)}, x, mask,
                          deterministic=not s.train_dropout,
                          rngs={"dropout": rng})
    return classifier_loss(logits, y, w, s.entropy_weight), logits

  @functools.partial(jax.jit, donate_argnums=(0, 1))  # update in place
  def step(tp, opt_state, fp, x, mask, y, w, rng):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        tp, fp, x, mask, y, w, rng)
    updates, opt_state = tx.update(grads, opt_state, tp)
    tp = optax.apply_updates(tp, updates)
    correct = jnp.sum(((logits > 0) == (y > 0.5)) * w)
    return tp, opt_state, loss, correct / jnp.maximum(jnp.sum(w), 1.0)

  rng = np.random.default_rng(s.seed)
  key = jax.random.PRNGKey(s.seed)
  running = tu.Running()
  bar = tu.progress(num_steps, "train classifier", disable=not show_progress)
  done, stopped_early = 0, False
  while done < num_steps and not stopped_early:
    subset = tu.one_per_group(groups, rng)
    for b in tu.epoch_batches(tok.buckets, s.batch_size, rng, subset):
      if done >= num_steps:
        break
      if s.max_seconds is not None and clock() > s.max_seconds:
        stopped_early = True
        break
      x = tu.take_rows(inputs, b.index, b.length)
      mask = tu.take_rows(tok.mask, b.index, b.length)
      mask[:, 0] = 1
      w = (b.index >= 0).astype(np.float32)
      y = np.where(b.index >= 0, labels[np.maximum(b.index, 0)], 0.0)
      train_p, opt_state, loss, acc = step(
          train_p, opt_state, frozen_p, x, mask, y, w,
          jax.random.fold_in(key, done))
      done += 1
      if running.add(loss=loss, acc=acc):
        vals = running.values
        bar.set_postfix(loss=f"{vals['loss']:.3f}", acc=f"{vals['acc']:.3f}")
      bar.update(1)
  bar.close()
  running.flush()
  train_s = clock()
  if stopped_early:
    logging.warning("classifier: stopped at step %d/%d after %.0fs "
                    "(max_seconds): the result is not reproducible",
                    done, num_steps, train_s)

  sliced = tu.merge_params(train_p, frozen_p)
  new_params = from_slice(params, sliced)
  # Train accuracy of the final model on each group's first text (a record's
  # input), deterministic, from the cached frozen activations.
  _, first = np.unique(groups, return_index=True)
  eval_fn = jax.jit(lambda p, x, mask: module.apply({"params": p}, x, mask))
  logits = np.zeros((len(first),), np.float32)
  for b in tu.eval_batches(tok.buckets[first], s.eval_batch_size):
    rows = np.where(b.index >= 0, first[np.maximum(b.index, 0)], -1)
    x = tu.take_rows(inputs, rows, b.length)
    mask = tu.take_rows(tok.mask, rows, b.length)
    mask[:, 0] = 1
    out = np.asarray(eval_fn(sliced, x, mask))
    keep = b.index >= 0
    logits[b.index[keep]] = out[keep]
  info = {
      "steps": done, "planned_steps": num_steps, "stopped_early": stopped_early,
      "num_train_texts": len(texts), "num_groups": int(len(first)),
      "padded_width": int(tok.ids.shape[1]),
      "buckets": sorted(set(int(x) for x in tok.buckets)),
      "precompute_seconds": round(precompute_s, 2),
      "train_seconds": round(train_s, 2),
      "steps_per_second": round(done / max(train_s - precompute_s, 1e-9), 3),
      "final_running_loss": running.values.get("loss", math.nan),
      "final_running_acc": running.values.get("acc", math.nan),
      "train_acc": accuracy(logits, labels[first]),
      "trainable_params": tu.count_params(train_p),
  }
  return tu.to_numpy(new_params), info
