"""Settings written as text ('edit_margin=2,pool=32'), shared by the probes.

sweep.py, loc_probe.py and gr_probe.py take `--settings`: ';'-separated
settings, each a ','-separated list of name=value ('default' or an empty
setting: the mode's defaults). A name is an EditConfig
field, or one of STREAM_KEYS (the pool and the stream's neuron margin),
which go to the runtime and the StreamConfig instead. No flags here, so any
probe can import it.

  config, stream_kwargs = apply("edit_margin=2,pool=32", "zsre", "fast",
                                runtime)
  stream.run(runtime, config, stream.StreamConfig(num_edits=100,
                                                  **stream_kwargs))
"""
from typing import Any, Dict, Tuple

# name -> type of the settings that are not EditConfig fields
STREAM_KEYS = {"pool": int, "word_drop": float, "pool_dropout": bool,
               "neuron_margin": float, "encoder_samples": int}


def _items(text: str):
  """The name=value items of a setting ('default' or '': none)."""
  if text.strip() == "default":
    return []
  return [t.strip() for t in text.split(",") if t.strip()]


def parse_pool(text: str, defaults: Dict[str, Any]) -> Dict[str, Any]:
  """The STREAM_KEYS settings of `text` over `defaults` (a dict).

  Example:
    >>> parse_pool("pool=32,edit_margin=2,pool_dropout=no", {"pool": 16})
    {'pool': 32, 'pool_dropout': False}
  """
  out = dict(defaults)
  for item in _items(text):
    name, _, value = item.partition("=")
    if name in STREAM_KEYS:
      kind = STREAM_KEYS[name]
      out[name] = (value.lower() in ("1", "true", "yes") if kind is bool
                   else kind(value))
  return out


def parse_setting(text: str, config):
  """`config` (an EditConfig) with the fields `text` sets replaced, typed
  as the field; STREAM_KEYS are skipped here. A bad name or value is a
  ValueError naming --settings.

  Example:
    >>> from patcher_jax import configs
    >>> parse_setting("edit_margin=2,pool=32",
    ...               configs.get("zsre", "fast")).edit_margin
    2.0
  """
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  items = [t for t in _items(text) if t.partition("=")[0] not in STREAM_KEYS]
  try:
    return config._replace(**configs.parse_overrides(items))
  except ValueError as e:
    raise ValueError(f"--settings: {e}") from None


def apply(text: str, task: str, mode: str, runtime) -> Tuple[Any, Dict]:
  """(EditConfig, StreamConfig keyword arguments) of one setting, over the
  mode's defaults; the pool settings are set on `runtime` (the runtimes
  that have them: `pool_word_drop`, `pool_dropout`, `pool_encoder_samples`).
  """
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  config = parse_setting(text, configs.get(task, mode))
  settings = configs.stream_settings(task, mode)
  pool = parse_pool(text, {"pool": settings.pop("noise_samples"),
                           "neuron_margin": settings.pop("neuron_margin"),
                           "word_drop": 0.0, "pool_dropout": True,
                           "encoder_samples": -1})
  for name, value in (("pool_word_drop", pool["word_drop"]),
                      ("pool_dropout", pool["pool_dropout"]),
                      # -1: every sample runs the whole model (the default)
                      ("pool_encoder_samples",
                       None if pool["encoder_samples"] < 0
                       else pool["encoder_samples"])):
    if hasattr(runtime, name):
      setattr(runtime, name, value)
  return config, dict(settings, noise_samples=pool["pool"],
                      neuron_margin=pool["neuron_margin"])
