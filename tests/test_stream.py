"""The editing stream on a tiny random classifier: only mistakes are edited,
metrics are consistent, folds vmap, and a crash + resume gives the same run."""
import chex
import jax
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import metrics, stream


@pytest.fixture(scope="module")
def runtime():
  from helpers import tiny
  return tiny.classification_runtime()


def _run(runtime, tmp_path=None, folds=None, **kw):
  cfg = stream.StreamConfig(num_edits=kw.pop("num_edits", 4), seed=0,
                            checkpoint_every=1, curve_every=2, **kw)
  return stream.run(runtime, pj.fast_config(max_steps=300), cfg, folds=folds,
                    checkpoint_dir=str(tmp_path) if tmp_path else None,
                    log=lambda *_: None)


def test_stream_edits_only_mistakes(runtime):
  out = _run(runtime)
  assert len(out["records"]) == 4
  base = pj.init_bank(8, runtime.dim)
  for r in out["records"]:
    # each edited record was a mistake of the model before its edit: at least
    # of the unedited model for the first one
    assert r["rephrase_total"] >= 1
  first = out["records"][0]["stream_index"]
  assert bool(runtime.mistakes(base, np.array([first]))[0])
  order = stream.fold_orders(len(runtime.stream), 1, 0)[0]
  # records before the first edit in the order were right
  before = order[:list(order).index(first)]
  assert not runtime.mistakes(base, before).any()
  s = stream.summarize(out)["summary"]
  assert s["SR"] == np.mean([r["success"] for r in out["records"]])
  assert 0 <= s["ER"] <= 1 and s["TrainR"] > 0


def test_resume_after_crash_gives_same_bank_and_metrics(runtime, tmp_path):
  full = _run(runtime, num_edits=5)

  class Crash(Exception):
    pass

  seen = []

  def crash_after_two(rec):
    seen.append(rec)
    if len(seen) == 2:
      raise Crash

  cfg = stream.StreamConfig(num_edits=5, seed=0, checkpoint_every=1)
  with pytest.raises(Crash):
    stream.run(runtime, pj.fast_config(max_steps=300), cfg,
               checkpoint_dir=str(tmp_path), on_edit=crash_after_two,
               log=lambda *_: None)
  resumed = stream.run(runtime, pj.fast_config(max_steps=300), cfg,
                       checkpoint_dir=str(tmp_path), resume=True,
                       log=lambda *_: None)
  chex.assert_trees_all_close(resumed["state"], full["state"], atol=0)
  assert (stream.summarize(resumed)["summary"]
          == stream.summarize(full)["summary"])
  strip = lambda recs: [{k: v for k, v in r.items() if k != "edit_time_s"}
                        for r in recs]
  assert strip(resumed["records"]) == strip(full["records"])


def test_folds_vmap_equal_single_streams(runtime):
  two = _run(runtime, num_edits=2, num_folds=2)
  assert len(two["records"]) == 4
  assert {r["fold"] for r in two["records"]} == {0, 1}
  assert len(two["folds"]) == 2
  orders = stream.fold_orders(len(runtime.stream), 2, 0)
  assert all(r["stream_index"] in set(orders[r["fold"]])
             for r in two["records"])
  # each fold run alone (as another process would) gives the same result
  parts = [_run(runtime, num_edits=2, num_folds=2, folds=[f]) for f in (0, 1)]
  for p in parts:
    p.pop("state")
  merged = stream.merge(parts)
  _assert_same_records(merged["records"], stream.merge([two])["records"])
  assert (stream.summarize(merged)["summary"]
          == stream.summarize(two)["summary"])


def _assert_same_records(a, b):
  """Same decisions exactly; losses to float rounding (vmap width differs)."""
  assert len(a) == len(b)
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    for k in ra:
      if k == "edit_time_s":
        continue
      if isinstance(ra[k], float):
        assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), (k, ra, rb)
      else:
        assert ra[k] == rb[k], (k, ra, rb)


def test_metrics_pooled_and_per_edit_gr():
  pooled, mean = metrics.generality_rates([1, 3, 0], [1, 4, 0])
  assert pooled == pytest.approx(4 / 5) and mean == pytest.approx(0.875)
  assert metrics.retention_ratio(0.5, 0.8) == pytest.approx(0.625)
