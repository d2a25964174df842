"""configs: one source of each task's settings in each mode."""
import doctest

import pytest

import patcher_jax as pj
from patcher_jax import configs


def test_edit_config_default_is_fast_mode():
  assert pj.EditConfig() == pj.fast_config()
  # the task adds the pool of edit-input variants (with noise_samples),
  # keys placed at the memory margins and a stop rule that asks the pool
  assert configs.get("fever", "fast") == pj.EditConfig()._replace(
      pool_alpha=True, key_init="margins", pool_stop=True, beta=-5.0)
  fast = pj.EditConfig()
  assert (fast.copies, fast.noise, fast.stop_rule, fast.value_init,
          fast.keep_failed, fast.weight_decay) == (1, False, "margins",
                                                   "direction", False, 0.0)


def test_parity_is_the_reference_and_differs_only_where_it_says():
  parity = configs.get("fever", "parity")
  # ALGORITHM.md section 3
  assert (parity.copies, parity.noise, parity.max_steps, parity.stop_rule,
          parity.check_every, parity.check_start, parity.value_init,
          parity.amplifier, parity.keep_failed, parity.weight_decay,
          parity.mem_weight) == (8, True, 2000, "val_plateau", 25, 100,
                                 "reference", 10.0, True, 0.01, 5.0)
  fast = pj.EditConfig()
  changed = {f for f in fast._fields
             if getattr(fast, f) != getattr(parity, f)}
  assert changed == set(configs.PARITY)


def test_task_settings_come_from_one_place():
  assert configs.get("zsre", "parity").mem_weight == 10.0
  assert configs.get("fever", "parity").mem_weight == 5.0
  zsre = configs.get("zsre")
  assert zsre.mem_weight == 10.0 and zsre.edit_margin == 4.0
  assert configs.get("zsre", "parity").edit_margin == 0.0
  assert configs.get("zsre", edit_margin=0.0).edit_margin == 0.0
  # None keeps the mode's value (optional flags pass through as they are)
  assert configs.get("fever", "parity", keep_failed=None).keep_failed
  assert not configs.get("fever", "parity", keep_failed=False).keep_failed


def test_stream_settings():
  assert configs.stream_settings("zsre", "parity") == dict(
      noise_samples=64, reference_memory=True, max_neurons=5,
      subject_negatives=0, negatives_in_memory=True, neuron_margin=0.0)
  assert configs.stream_settings("zsre") == dict(
      noise_samples=16, reference_memory=False, max_neurons=16,
      subject_negatives=1, negatives_in_memory=True, neuron_margin=2.0)
  assert configs.stream_settings("fever")["subject_negatives"] == 0
  assert configs.stream_settings("fever")["neuron_margin"] == 0.0
  assert configs.stream_settings("zsre", max_neurons=None)["max_neurons"] == 16
  assert configs.stream_settings("zsre", max_neurons=3)["max_neurons"] == 3


@pytest.mark.parametrize("call", [
    lambda: configs.get("squad"), lambda: configs.get("zsre", "slow"),
    lambda: configs.get("zsre", no_such_field=1),
    lambda: configs.stream_settings("zsre", no_such_field=1)])
def test_bad_names_raise(call):
  with pytest.raises(ValueError):
    call()


def test_deprecated_alias():
  from patcher_jax import tasks  # pylint: disable=g-import-not-at-top
  with pytest.warns(DeprecationWarning):
    assert tasks.edit_config("zsre", "parity") == configs.get("zsre", "parity")


# ALGORITHM.md sections 3 and 9, written out (not read from the code), so a
# drifting default fails: 8 copies with dropout, Adam lr 0.01 with coupled L2
# 0.01, clip 5, plateau (0.5, 1, 5% rel), checks every 25 steps from step
# 100, stop on the val-memory rule (tolerance 1e-3) within 2000 steps,
# failed patches kept, value N(0,1) x amplifier 10, top-5 exp activation
# loss, top-1000 memory losses (top-125 of 8 duplicates), margins +3 / -3.
REFERENCE = dict(copies=8, noise=True, max_steps=2000, stop_rule="val_plateau",
                 check_every=25, check_start=100, stop_tolerance=1e-3,
                 lr=0.01, weight_decay=0.01, clip_norm=5.0,
                 plateau_factor=0.5, plateau_patience=1,
                 plateau_threshold=0.05, act_k=5, act_margin=0.0,
                 act_weight=1.0, mem_k1=1000, mem_k2=125, gamma=3.0,
                 beta=-3.0, value_init="reference", amplifier=10.0,
                 keep_failed=True)


@pytest.mark.parametrize("task,mem_weight", [("fever", 5.0), ("zsre", 10.0)])
def test_parity_losses_and_optimiser_are_the_references(task, mem_weight):
  got = configs.get(task, "parity")._asdict()
  assert {k: got[k] for k in REFERENCE} == REFERENCE
  assert got["mem_weight"] == mem_weight          # main.py:46 of the reference
  stream = configs.stream_settings(task, "parity")
  assert stream["max_neurons"] == 5 and stream["reference_memory"]


def test_fast_mode_pool_comes_with_its_samples():
  for task in configs.TASKS:
    fast = configs.get(task)
    assert fast.pool_alpha and not fast.noise
    assert configs.stream_settings(task)["noise_samples"] > 0
    assert not configs.get(task, "parity").pool_alpha


def test_docstring_examples_run():
  assert doctest.testmod(configs).failed == 0


@pytest.mark.parametrize("items, error", [
    (["betta=1"], "expected name=value"), (["beta"], "expected name=value"),
    (["beta=x"], "takes a float"), (["pool_stop=2"], "true or false")])
def test_bad_overrides_name_the_item(items, error):
  with pytest.raises(ValueError, match=error):
    configs.parse_overrides(items)
