"""metrics.summarize: GR over the edits that have rephrases."""
import pytest

from patcher_jax import metrics


def _rec(ok, correct, total):
  return {"success": ok, "rephrase_correct": correct, "rephrase_total": total}


def test_gr_skips_edits_without_rephrases_and_counts_them():
  s = metrics.summarize([_rec(True, 1, 2), _rec(True, 0, 0), _rec(False, 3, 3)], [])
  assert s["GR"] == pytest.approx(4 / 5)
  assert s["GR_per_edit_mean"] == pytest.approx((0.5 + 1.0) / 2)
  assert s["edits_without_rephrases"] == 1
  assert s["SR"] == pytest.approx(2 / 3)


def test_gr_is_none_when_no_edit_has_rephrases():
  s = metrics.summarize([_rec(True, 0, 0), _rec(False, 0, 0)], [])
  assert s["GR"] is None and s["GR_per_edit_mean"] is None
  assert s["edits_without_rephrases"] == 2
