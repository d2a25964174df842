"""Metrics of a base model on a benchmark: accuracy / exact match per split.

Reported per task (all on record inputs unless named otherwise):
  fever: val_acc, test_acc, edit_acc, train_heldout_acc (held-out templates of
         train facts), edit_mistakes (edit records the model gets wrong).
  zsre:  val_em, test_em, edit_em, train_heldout_em, edit_mistakes.
Train accuracy / EM on the inputs comes from the trainer (the same function,
computed from the cached frozen activations); ``with_train=True`` recomputes it
(for models that were not trained here).
"""
from typing import Callable, Dict, Sequence

import numpy as np

from patcher_jax.models import qa_format
from patcher_jax.models import train_classifier as tc

HELDOUT_RECORDS = 1000  # train records whose held-out rephrases are scored


def _heldout_pairs(records, held_out_rephrases: Callable, limit: int):
  texts, owners = [], []
  for r in records[:limit]:
    for t in held_out_rephrases(r):
      texts.append(t)
      owners.append(r)
  return texts, owners


def classifier_correct(model, params, tokenizer, texts: Sequence[str],
                       labels: Sequence[int], max_len: int = 64) -> np.ndarray:
  """Per text: is ``logit > 0`` equal to the label?"""
  logits = tc.predict_logits(model, params, tokenizer, list(texts), max_len)
  return (logits > 0) == (np.asarray(labels) > 0)


def qa_correct(model, params, tokenizer, questions: Sequence[str],
               answer_sets: Sequence[Sequence[str]], max_src_len: int,
               max_new_tokens: int) -> np.ndarray:
  """Per question: does the greedy answer match a gold answer (normalised)?"""
  preds = qa_format.generate_answers(model, params, tokenizer, list(questions),
                                     max_src_len, max_new_tokens)
  return np.array([qa_format.exact_match(p, a)
                   for p, a in zip(preds, answer_sets)], bool)


def _mean(x: np.ndarray) -> float:
  return float(np.mean(x)) if len(x) else float("nan")


def evaluate_base(task: str, model, params, tokenizer, benchmark,
                  held_out_rephrases: Callable, *, max_src_len: int = 64,
                  max_new_tokens: int = 16, with_train: bool = False,
                  heldout_records: int = HELDOUT_RECORDS) -> Dict[str, float]:
  """The metrics above as a flat dict (also counts of examples scored)."""
  from patcher_jax.data import fever_label  # pylint: disable=g-import-not-at-top
  out = {}
  ho_texts, ho_owners = _heldout_pairs(benchmark.train, held_out_rephrases,
                                       heldout_records)
  splits = {"val": benchmark.val, "test": benchmark.test,
            "edit": benchmark.edit}
  if with_train:
    splits["train"] = benchmark.train
  if task == "fever":
    def score(texts, recs):
      return classifier_correct(model, params, tokenizer, texts,
                                [fever_label(r) for r in recs], max_src_len)
    metric = "acc"
  else:
    def score(texts, recs):
      return qa_correct(model, params, tokenizer, texts,
                        [r.answers for r in recs], max_src_len,
                        max_new_tokens)
    metric = "em"
  for name, recs in splits.items():
    ok = score([r.input for r in recs], recs)
    out[f"{name}_{metric}"] = _mean(ok)
    out[f"num_{name}"] = len(recs)
    if name == "edit":
      out["edit_mistakes"] = int(np.sum(~ok))
  # Files without rephrases (real FEVER) have no held-out wording to score.
  ok = score(ho_texts, ho_owners) if ho_texts else np.zeros(0, bool)
  out[f"train_heldout_{metric}"] = _mean(ok)
  out["num_train_heldout"] = len(ho_texts)
  return out
