"""The probes' text settings (experiments/setting_text.py): EditConfig
fields, pool and stream keys, defaults restored, and bad input."""
import doctest
import os
import sys

import pytest

from patcher_jax import configs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments"))
import setting_text  # pylint: disable=g-import-not-at-top,wrong-import-position


class _Runtime:
  pool_word_drop = 0.25
  pool_dropout = True


class _Seq2SeqLike(_Runtime):
  pool_encoder_samples = None


def _apply(text, runtime, task="zsre"):
  return setting_text.apply(text, task, "fast", runtime,
                            setting_text.runtime_defaults(runtime))


def test_doctests():
  result = doctest.testmod(setting_text)
  assert result.attempted >= 5 and not result.failed


@pytest.mark.parametrize("text,field,value", [
    ("", "edit_margin", configs.get("zsre", "fast").edit_margin),
    ("default", "edit_margin", configs.get("zsre", "fast").edit_margin),
    ("edit_margin=3", "edit_margin", 3.0),
    ("pool=4, edit_margin = 1", "edit_margin", 1.0)])
def test_apply_sets_edit_config(text, field, value):
  config, _ = _apply(text, _Runtime())
  got = getattr(config, field)
  assert got == value and type(got) is type(value)


def test_apply_routes_stream_keys_to_stream_and_runtime():
  runtime = _Runtime()
  _, kwargs = _apply("pool=4,neuron_margin=1,word_drop=0.2,pool_dropout=no",
                     runtime)
  default = configs.stream_settings("zsre", "fast")
  assert kwargs == dict(default, noise_samples=4, neuron_margin=1.0)
  assert (runtime.pool_word_drop, runtime.pool_dropout) == (0.2, False)
  assert not hasattr(runtime, "pool_encoder_samples")  # not this runtime's


def test_default_restores_the_runtimes_own_values():
  runtime = _Seq2SeqLike()
  defaults = setting_text.runtime_defaults(runtime)
  setting_text.apply("word_drop=0.5,pool_dropout=0,encoder_samples=2",
                     "zsre", "fast", runtime, defaults)
  assert (runtime.pool_word_drop, runtime.pool_dropout,
          runtime.pool_encoder_samples) == (0.5, False, 2)
  setting_text.apply("default", "zsre", "fast", runtime, defaults)
  assert (runtime.pool_word_drop, runtime.pool_dropout,
          runtime.pool_encoder_samples) == (0.25, True, None)


def test_negative_encoder_samples_mean_every_sample_runs_the_model():
  runtime = _Seq2SeqLike()
  _apply("encoder_samples=-1", runtime)
  assert runtime.pool_encoder_samples is None


def test_apply_defaults_are_the_modes():
  _, kwargs = _apply("", _Runtime(), task="fever")
  assert kwargs == configs.stream_settings("fever", "fast")


@pytest.mark.parametrize("text,match", [
    ("no_such_field=1", "--settings"),
    ("pool=abc", "--settings: 'pool=abc': pool takes a int"),
    ("pool_dropout=maybe",
     "--settings: 'pool_dropout=maybe': pool_dropout is true or false"),
    ("encoder_samples=2", "encoder_samples: not a setting of _Runtime")])
def test_bad_input_is_an_error_naming_the_flag(text, match):
  with pytest.raises(ValueError, match=match):
    _apply(text, _Runtime())
