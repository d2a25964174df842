"""Sequential-editing metrics (ALGORITHM.md section 6), from per-edit records.

  SR      fraction of edits correct right after their own edit (pooled).
  GR      accuracy on each edit's rephrases right after its edit; pooled
          (sum correct / sum rephrases, the reference code's way) and as the
          mean of per-edit accuracies. Only edits with rephrases count (real
          FEVER has none); None when no edit had any.
  ER      accuracy of the final model on all past edit inputs, per fold, then
          averaged over folds.
  TrainR  acc(final model, train subset) / acc(base model, train subset).
  TestR   acc(final model, test split) / acc(base model, test split).

What the edits made of these, next to them:
  GR_before     the unedited model's accuracy on the same rephrases, pooled
                like GR (the part of GR that was there before any edit).
  TrainR_flips  {"lost", "gained", "total"} over the train subset: answers
  TestR_flips   the base model got right and the final one gets wrong, the
                reverse, and the set's size; summed over folds. A ratio of
                accuracies near 1 can hide many flips either way.
"""
from typing import Dict, Sequence

import numpy as np


def success_rate(successes: Sequence[bool]) -> float:
  """SR, pooled over all edits (of all folds)."""
  return float(np.mean(successes)) if len(successes) else float("nan")


def generality_rates(correct: Sequence[int], totals: Sequence[int]):
  """(pooled GR, per-edit mean GR) over edits with at least one rephrase;
  (None, None) when no edit has one."""
  correct = np.asarray(correct, np.float64)
  totals = np.asarray(totals, np.float64)
  has = totals > 0
  if not has.any():
    return None, None
  pooled = correct[has].sum() / totals[has].sum()
  per_edit = float(np.mean(correct[has] / totals[has]))
  return float(pooled), per_edit


def retention_ratio(final_acc: float, base_acc: float) -> float:
  """TrainR / TestR: final accuracy over the unedited model's."""
  return float(final_acc / base_acc) if base_acc > 0 else float("nan")


def flips(base_correct, final_correct) -> Dict[str, int]:
  """{"lost", "gained", "total"} between two [N] bool correctness arrays.

  Example:
    >>> flips([True, True, False], [True, False, True])
    {'lost': 1, 'gained': 1, 'total': 3}
  """
  base = np.asarray(base_correct, bool)
  final = np.asarray(final_correct, bool)
  if base.shape != final.shape:
    raise ValueError(f"flips of different sets: {base.shape} vs {final.shape}")
  return {"lost": int(np.sum(base & ~final)),
          "gained": int(np.sum(~base & final)), "total": int(base.size)}


def sum_flips(per_fold: Sequence[Dict[str, int]]) -> Dict[str, int]:
  return {k: int(sum(f[k] for f in per_fold))
          for k in ("lost", "gained", "total")}


def mean_over_folds(values: Sequence[float]) -> float:
  values = [v for v in values if not np.isnan(v)]
  return float(np.mean(values)) if values else float("nan")


def summarize(records: Sequence[Dict], fold_final: Sequence[Dict]) -> Dict:
  """The headline numbers.

  Args:
    records: per-edit dicts with at least `success` (bool),
      `rephrase_correct`, `rephrase_correct_before` and `rephrase_total`
      (ints).
    fold_final: per-fold dicts with `er`, `train_acc`, `base_train_acc`,
      `test_acc`, `base_test_acc`, `train_flips`, `test_flips`.

  Example:
    >>> rec = {"success": True, "rephrase_correct": 3,
    ...        "rephrase_correct_before": 1, "rephrase_total": 4}
    >>> s = summarize([rec], [])
    >>> s["GR"], s["GR_before"], s["TestR_flips"]["total"]
    (0.75, 0.25, 0)
  """
  totals = [r["rephrase_total"] for r in records]
  gr_pooled, gr_mean = generality_rates(
      [r["rephrase_correct"] for r in records], totals)
  gr_before, _ = generality_rates(
      [r.get("rephrase_correct_before", np.nan) for r in records], totals)
  return {
      "SR": success_rate([r["success"] for r in records]),
      "GR": gr_pooled,
      "GR_per_edit_mean": gr_mean,
      "GR_before": gr_before,
      "edits_without_rephrases": sum(r["rephrase_total"] == 0
                                     for r in records),
      "ER": mean_over_folds([f["er"] for f in fold_final]),
      "TrainR": mean_over_folds([
          retention_ratio(f["train_acc"], f["base_train_acc"])
          for f in fold_final]),
      "TestR": mean_over_folds([
          retention_ratio(f["test_acc"], f["base_test_acc"])
          for f in fold_final]),
      "TrainR_flips": sum_flips([f["train_flips"] for f in fold_final]),
      "TestR_flips": sum_flips([f["test_flips"] for f in fold_final]),
  }
