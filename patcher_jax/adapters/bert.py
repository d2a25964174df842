"""BERT sequence classification (transformers `FlaxBertForSequenceClassification`).

The patch goes into the FFN of the last encoder layer. Only the [CLS] position
reaches the pooler and the classifier, so one query per example ([CLS]'s FFN
input) is all an edit needs. A head with one logit uses the reference's binary
loss (logit > 0 means SUPPORTS); a head with C >= 2 labels uses cross-entropy.
"""
import jax
import jax.numpy as jnp

from patcher_jax import augment
from patcher_jax import objectives
from patcher_jax import patch as patch_lib
from patcher_jax import tail as tail_lib
from patcher_jax.adapters.intercept import FFNSite, run_with_patch
from patcher_jax.fullpath import FullModel


def last_layer(config) -> str:
  return str(config.num_hidden_layers - 1)


def site(config) -> FFNSite:
  layer = ("bert", "encoder", "layer", last_layer(config))
  return FFNSite(key_path=layer + ("intermediate",),
                 value_path=layer + ("output", "dense"))


def _head(head, hidden, rng, train, rate):
  """Pooler (tanh Dense) then the classifier, on [CLS] hidden states."""
  z = jnp.tanh(hidden @ head["pooler"]["kernel"] + head["pooler"]["bias"])
  if train:
    z = tail_lib.dropout(rng, z, rate)
  return z @ head["classifier"]["kernel"] + head["classifier"]["bias"]


def make_tail(config, params) -> tail_lib.Tail:
  """The frozen top of a BERT classifier: last FFN + LayerNorm + head."""
  if config.hidden_act != "gelu":
    raise ValueError(f"expected a GELU BERT, got hidden_act={config.hidden_act}")
  layer = params["bert"]["encoder"]["layer"][last_layer(config)]
  ffn = {"fc1": layer["intermediate"]["dense"],
         "fc2": layer["output"]["dense"],
         "norm": layer["output"]["LayerNorm"]}
  head = {"pooler": params["bert"]["pooler"]["dense"],
          "classifier": params["classifier"]}
  binary = config.num_labels == 1
  # No dropout between the pooler and the classifier while an edit trains:
  # the reference's BertBinary has none there (pooler -> Linear). The
  # transformers model has one; it acts only in its train mode (the full
  # path, for benchmarks), never in the cached tail.
  head_dropout = 0.0
  return tail_lib.Tail(
      ffn=ffn, head=head, head_fn=_head,
      loss_fn=objectives.binary_loss if binary else objectives.multiclass_loss,
      wrong_fn=(objectives.binary_wrong if binary
                else objectives.argmax_wrong),
      norm_eps=config.layer_norm_eps,
      hidden_dropout=config.hidden_dropout_prob,
      activation_dropout=0.0, head_dropout=head_dropout,
      act=patch_lib.gelu)


def forward(model, params, input_ids, attention_mask, *, bank=None,
            train=False, rng=None):
  """Full forward of the (patched) classifier: (logits [B, C], queries [B, d]).

  queries are the [CLS] inputs of the patched FFN (what the tail consumes).
  """
  delta_fn = None
  if bank is not None:
    delta_fn = lambda q: patch_lib.bank_output(bank, q)
  out, captured = run_with_patch(
      lambda: model(input_ids, attention_mask, params=params, train=train,
                    dropout_rng=rng),
      site(model.config), delta_fn)
  return out.logits, captured[0][:, 0]


def queries(model, params, input_ids, attention_mask, *, train=False,
            rng=None):
  """[CLS] FFN inputs [B, d] (independent of the patch: they are its input)."""
  return forward(model, params, input_ids, attention_mask, train=train,
                 rng=rng)[1]


def noisy_queries(model, params, input_ids, attention_mask, rng, num: int):
  """`num` dropout samples of one example's [CLS] query: [num, 1, d].

  The reference trains with dropout on (8 copies, fresh noise each step); a
  pool sampled once per edit lets the cached tail see the same kind of noise.
  """
  ids = jnp.repeat(input_ids[:1], num, axis=0)
  mask = jnp.repeat(attention_mask[:1], num, axis=0)
  return queries(model, params, ids, mask, train=True, rng=rng)[:, None, :]


def augmented_queries(model, params, input_ids, attention_mask, rng,
                      num: int, word_drop: float = 0.1, train: bool = False):
  """`num` variants of one example's [CLS] query, [num, 1, d]: each hides
  input words with probability `word_drop` (`augment.hide_words`) and, with
  `train`, adds dropout."""
  r_words, r_drop = jax.random.split(rng)
  mask = augment.hide_words(r_words, attention_mask, num, word_drop)
  ids = jnp.repeat(input_ids[:1], num, axis=0)
  return queries(model, params, ids, mask, train=train, rng=r_drop)[:, None, :]


def targets(labels):
  """Tail targets for classification: one position per example."""
  labels = jnp.asarray(labels, jnp.int32)
  return labels[:, None], jnp.ones(labels.shape + (1,), bool)



def _full_forward(model, params, inputs, delta_fn, rng, train, copies):
  """Whole-model forward of `copies` copies: logits [B, 1, C], q [B, 1, d]."""
  ids, mask = (jnp.repeat(a, copies, axis=0) for a in inputs)
  out, captured = run_with_patch(
      lambda: model(ids, mask, params=params, train=train, dropout_rng=rng),
      site(model.config), delta_fn)
  return out.logits[:, None, :], captured[0][:, :1, :]


def full_model(model, params, bank, input_ids, attention_mask) -> FullModel:
  """The reference's per-step cost for one example ([1, T] inputs)."""
  return FullModel(params=params, bank=bank,
                   inputs=(input_ids, attention_mask), model=model,
                   forward_fn=_full_forward)
