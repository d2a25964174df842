"""The probes' text settings (experiments/setting_text.py): EditConfig
fields, pool and stream keys, and bad names."""
import doctest
import os
import sys

import pytest

from patcher_jax import configs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments"))
import setting_text  # pylint: disable=g-import-not-at-top,wrong-import-position


class _Runtime:
  pool_word_drop = 0.0
  pool_dropout = True


def test_doctests():
  assert doctest.testmod(setting_text).failed == 0


@pytest.mark.parametrize("text,field,value", [
    ("", "edit_margin", configs.get("zsre", "fast").edit_margin),
    ("default", "edit_margin", configs.get("zsre", "fast").edit_margin),
    ("edit_margin=3", "edit_margin", 3.0),
    ("pool=4,edit_margin=1", "edit_margin", 1.0)])
def test_apply_sets_edit_config(text, field, value):
  config, _ = setting_text.apply(text, "zsre", "fast", _Runtime())
  assert getattr(config, field) == value


def test_apply_routes_stream_keys_to_stream_and_runtime():
  runtime = _Runtime()
  _, kwargs = setting_text.apply("pool=4,neuron_margin=1,word_drop=0.2,"
                                 "pool_dropout=no", "zsre", "fast", runtime)
  default = configs.stream_settings("zsre", "fast")
  assert kwargs == dict(default, noise_samples=4, neuron_margin=1.0)
  assert (runtime.pool_word_drop, runtime.pool_dropout) == (0.2, False)
  assert not hasattr(runtime, "pool_encoder_samples")  # not this runtime's


def test_apply_defaults_are_the_modes():
  _, kwargs = setting_text.apply("", "fever", "fast", _Runtime())
  assert kwargs == configs.stream_settings("fever", "fast")


def test_unknown_name_is_an_error_naming_the_flag():
  with pytest.raises(ValueError, match="--settings"):
    setting_text.parse_setting("no_such_field=1", configs.get("zsre", "fast"))
