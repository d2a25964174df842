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


def mean_over_folds(values: Sequence[float]) -> float:
  values = [v for v in values if not np.isnan(v)]
  return float(np.mean(values)) if values else float("nan")


def summarize(records: Sequence[Dict], fold_final: Sequence[Dict]) -> Dict:
  """The headline numbers.

  Args:
    records: per-edit dicts with at least `success` (bool),
      `rephrase_correct` and `rephrase_total` (ints).
    fold_final: per-fold dicts with `er`, `train_acc`, `base_train_acc`,
      `test_acc`, `base_test_acc`.
  """
  gr_pooled, gr_mean = generality_rates(
      [r["rephrase_correct"] for r in records],
      [r["rephrase_total"] for r in records])
  return {
      "SR": success_rate([r["success"] for r in records]),
      "GR": gr_pooled,
      "GR_per_edit_mean": gr_mean,
      "edits_without_rephrases": sum(r["rephrase_total"] == 0
                                     for r in records),
      "ER": mean_over_folds([f["er"] for f in fold_final]),
      "TrainR": mean_over_folds([
          retention_ratio(f["train_acc"], f["base_train_acc"])
          for f in fold_final]),
      "TestR": mean_over_folds([
          retention_ratio(f["test_acc"], f["base_test_acc"])
          for f in fold_final]),
  }
