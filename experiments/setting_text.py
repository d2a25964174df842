"""Settings written as text ('edit_margin=2,pool=32'), shared by the probes.

sweep.py, loc_probe.py and gr_probe.py take `--settings`: ';'-separated
settings, each a ','-separated list of name=value ('default' or an empty
setting: the mode's defaults). A name is an EditConfig field, or one of
STREAM_KEYS (the pool and the stream's neuron margin), which go to the
runtime and the StreamConfig instead. No flags here, so any probe can
import it.

  defaults = runtime_defaults(runtime)         # once, before any setting
  config, stream_kwargs = apply("edit_margin=2,pool=32", "zsre", "fast",
                                runtime, defaults)
  stream.run(runtime, config, stream.StreamConfig(num_edits=100,
                                                  **stream_kwargs))
"""
from typing import Any, Dict, List, Tuple

# name -> type of the settings that are not EditConfig fields
STREAM_KEYS = {"pool": int, "word_drop": float, "pool_dropout": bool,
               "neuron_margin": float, "encoder_samples": int}
# those of them that are runtime attributes: name -> attribute
RUNTIME_KEYS = {"word_drop": "pool_word_drop", "pool_dropout": "pool_dropout",
                "encoder_samples": "pool_encoder_samples"}


def _items(text: str) -> List[Tuple[str, str]]:
  """The (name, value) items of a setting ('default' or '': none)."""
  if text.strip() == "default":
    return []
  out = []
  for item in (t.strip() for t in text.split(",")):
    if item:
      name, _, value = item.partition("=")
      out.append((name.strip(), value.strip()))
  return out


def parse_pool(text: str, defaults: Dict[str, Any]) -> Dict[str, Any]:
  """The STREAM_KEYS settings of `text` over `defaults`.

  Args:
    text: one setting ('pool=32,edit_margin=2').
    defaults: the values of the keys `text` does not set.

  Returns:
    `defaults` with the STREAM_KEYS `text` sets, typed.

  Example:
    >>> parse_pool("pool=32,edit_margin=2,pool_dropout=no", {"pool": 16})
    {'pool': 32, 'pool_dropout': False}
  """
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  items = [f"{n}={v}" for n, v in _items(text) if n in STREAM_KEYS]
  try:
    return {**defaults, **configs.parse_overrides(items, STREAM_KEYS,
                                                  "the stream keys")}
  except ValueError as e:
    raise ValueError(f"--settings: {e}") from None


def parse_setting(text: str, config):
  """`config` with the EditConfig fields `text` sets replaced.

  Args:
    text: one setting; its STREAM_KEYS are skipped here.
    config: an EditConfig.

  Returns:
    The new EditConfig (fields typed as the field).

  Raises:
    ValueError naming --settings: an unknown name or a bad value.

  Example:
    >>> from patcher_jax import configs
    >>> parse_setting("edit_margin=2,pool=32",
    ...               configs.get("zsre", "fast")).edit_margin
    2.0
  """
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  items = [f"{n}={v}" for n, v in _items(text) if n not in STREAM_KEYS]
  try:
    return config._replace(**configs.parse_overrides(items))
  except ValueError as e:
    raise ValueError(f"--settings: {e}") from None


def stream_keys(text: str) -> List[str]:
  """The STREAM_KEYS that `text` sets (probes without them reject them).

  Example:
    >>> stream_keys("pool=4,edit_margin=1")
    ['pool']
  """
  return [n for n, _ in _items(text) if n in STREAM_KEYS]


def runtime_defaults(runtime) -> Dict[str, Any]:
  """The runtime's own pool settings (RUNTIME_KEYS it has), read once
  before any setting changes them: what 'default' restores.

  Example:
    >>> class Runtime: pool_word_drop, pool_dropout = 0.25, True
    >>> runtime_defaults(Runtime())
    {'word_drop': 0.25, 'pool_dropout': True}
  """
  return {key: getattr(runtime, attr) for key, attr in RUNTIME_KEYS.items()
          if hasattr(runtime, attr)}


def apply(text: str, task: str, mode: str, runtime,
          defaults: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
  """One setting over the mode's defaults: the runtime's pool settings set,
  the edit and stream settings returned.

  Args:
    text: the setting.
    task, mode: whose defaults (`configs.get`, `configs.stream_settings`).
    runtime: gets the RUNTIME_KEYS (each one it has; setting one it does
      not have is an error).
    defaults: `runtime_defaults(runtime)`, read before the first setting.

  Returns:
    (EditConfig, StreamConfig keyword arguments).

  Example:
    >>> class Runtime: pool_word_drop, pool_dropout = 0.0, True
    >>> rt = Runtime()
    >>> defaults = runtime_defaults(rt)
    >>> config, kw = apply("pool=4,word_drop=0.2", "zsre", "fast", rt,
    ...                    defaults)
    >>> kw["noise_samples"], rt.pool_word_drop
    (4, 0.2)
    >>> _ = apply("default", "zsre", "fast", rt, defaults)
    >>> rt.pool_word_drop
    0.0
  """
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  config = parse_setting(text, configs.get(task, mode))
  missing = [n for n in stream_keys(text)
             if n in RUNTIME_KEYS and n not in defaults]
  if missing:
    raise ValueError(f"--settings: {', '.join(missing)}: not a setting of "
                     f"{type(runtime).__name__}")
  settings = configs.stream_settings(task, mode)
  pool = parse_pool(text, {"pool": settings.pop("noise_samples"),
                           "neuron_margin": settings.pop("neuron_margin"),
                           **defaults})
  for key in defaults:
    value = pool[key]
    if key == "encoder_samples" and value is not None and value < 0:
      value = None          # every sample runs the whole model (the default)
    setattr(runtime, RUNTIME_KEYS[key], value)
  return config, dict(settings, noise_samples=pool["pool"],
                      neuron_margin=pool["neuron_margin"])
