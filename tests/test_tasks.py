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
