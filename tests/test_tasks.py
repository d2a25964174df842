"""Task-level defaults and the train split of a runtime."""
import patcher_jax as pj
from patcher_jax import tasks


def test_edit_config_defaults_and_overrides():
  assert tasks.edit_config("fever").mem_weight == 5.0
  zsre = tasks.edit_config("zsre")
  assert zsre.mem_weight == 10.0 and zsre.edit_margin > 0
  assert tasks.edit_config("zsre", edit_margin=0.0).edit_margin == 0.0
  parity = tasks.edit_config("zsre", "parity")
  assert parity == pj.parity_config(mem_weight=10.0)   # the reference's
  assert tasks.MAX_NEURONS["parity"] == 5


def test_pool_settings_turn_on_pool_alpha_in_fast_mode_only():
  for task in ("zsre", "fever"):
    fast = tasks.pool_settings(task, "fast")
    assert tasks.edit_config(task).pool_alpha == (fast["pool"] > 0)
    assert not tasks.edit_config(task, "parity").pool_alpha
    assert tasks.pool_settings(task, "parity")["pool"] == 64  # reference's
  assert not tasks.edit_config("zsre", pool_alpha=False).pool_alpha
