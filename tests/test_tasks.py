"""Task-level defaults: the reference's settings, written out here from
ALGORITHM.md (sections 3 and 9), so a drifting default fails."""
import pytest

import patcher_jax as pj
from patcher_jax import tasks

# ALGORITHM.md: 8 copies with dropout, Adam lr 0.01 with coupled L2 0.01,
# clip 5, plateau (0.5, 1, 5% rel), checks every 25 steps from step 100, stop
# on the val-memory rule within 2000 steps, failed patches kept, value
# N(0,1) x amplifier 10, top-5 exp activation loss, top-1000 memory losses
# (top-125 of 8 duplicates) with margins +3 / -3.
REFERENCE = dict(copies=8, noise=True, max_steps=2000, stop_rule="val_plateau",
                 check_every=25, check_start=100, stop_tolerance=1e-3,
                 lr=0.01, weight_decay=0.01, clip_norm=5.0,
                 plateau_factor=0.5, plateau_patience=1,
                 plateau_threshold=0.05, act_k=5, act_margin=0.0,
                 act_weight=1.0, mem_k1=1000, mem_k2=125, gamma=3.0,
                 beta=-3.0, value_init="reference", amplifier=10.0,
                 keep_failed=True)


@pytest.mark.parametrize("task,mem_weight", [("fever", 5.0), ("zsre", 10.0)])
def test_parity_is_the_reference(task, mem_weight):
  for config in (tasks.edit_config(task, "parity"), pj.parity_config(task)):
    got = config._asdict()
    assert {k: got[k] for k in REFERENCE} == REFERENCE
    assert config.mem_weight == mem_weight      # main.py:46 of the reference
  assert tasks.MAX_NEURONS["parity"] == 5
  with pytest.raises(TypeError):
    pj.parity_config()                          # the weight is the task's
  with pytest.raises(ValueError):
    pj.parity_config("squad")


def test_fast_config_defaults_and_overrides():
  assert tasks.edit_config("fever").mem_weight == 5.0
  zsre = tasks.edit_config("zsre")
  assert zsre.mem_weight == 10.0 and zsre.edit_margin > 0
  assert tasks.edit_config("zsre", edit_margin=0.0).edit_margin == 0.0
  assert tasks.edit_config("zsre", "parity", max_steps=7).max_steps == 7
