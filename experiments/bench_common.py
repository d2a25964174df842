"""Shared pieces of the benchmarks (bench_edit.py, bench_growth.py).

Loading a base model and its editing runtime exactly as run.py does, picking
a stream of mistakes, counting compiles and peak memory.
"""
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import patcher_jax as pj
from patcher_jax import losses
from patcher_jax import memory as memory_lib
from patcher_jax import stream as stream_lib
from patcher_jax import configs
from patcher_jax import tasks
# pylint: enable=g-import-not-at-top,wrong-import-position

flags.DEFINE_enum("task", "fever", ["fever", "zsre"], "Benchmark task.")
flags.DEFINE_enum("scale", "full", ["tiny", "small", "full"],
                  "Size of the embedded benchmark.")
flags.DEFINE_string("data_dir", None, "Benchmark dir instead of the embedded "
                    "benchmark.")
flags.DEFINE_string("cache_dir", None, "Base-model cache (as run.py).")
flags.DEFINE_string("base_path", None, "Use this cached base-model folder "
                    "as is (skips the fingerprint lookup).")
flags.DEFINE_integer("train_sub_size", 2000, "Train records for TrainR "
                     "(the rest is the memory set, as run.py).")
flags.DEFINE_integer("memory_size", 0, "Memory records (0: all the rest).")
flags.DEFINE_enum("model_size", "trained", ["trained", "paper"],
                  "trained: the cached base model. paper: TIMING ONLY, a "
                  "randomly initialised model of the paper's size with the "
                  "base model's tokenizer (fever: BERT-base, 12 layers, "
                  "d=768; zsre: BART-base, 6+6 layers, d=768, 50,265 words); "
                  "its mistakes are whatever the random model gets wrong.")
flags.DEFINE_integer("split_size", 0, "Cap on the edit, val and test "
                     "records (0: all; paper-size models need few: caching "
                     "their queries is slow).")
flags.DEFINE_integer("max_neurons", None, "Neurons per edit at most (zsRE; "
                     "as run.py: default configs.stream_settings of the mode).")
flags.DEFINE_integer("seed", 0, "Seed of the mistake order and the edits.")
flags.DEFINE_string("json", None, "Write the results here.")
FLAGS = flags.FLAGS


def forced(config):
  """The same work without an early stop: exactly `num_steps` steps. The
  parity rule's every-25-steps checks stay (they halve the rate)."""
  every = config.check_every if config.stop_rule == "val_plateau" else 10**9
  return config._replace(stop_rule="steps", check_every=every)


def memory_capacity(rows: int) -> int:
  """The buffer size stream.run preallocates for `rows` memory rows."""
  return stream_lib._memory_capacity(rows)  # pylint: disable=protected-access


def memory_loss_top(neurons, task, memory, config):
  """(l_m1, l_m2) of `neurons` as an edit step computes them (top rows)."""
  h, h_mask = memory_lib.top_pre_activations(
      memory, neurons.keys, neurons.biases, max(config.mem_k1, config.mem_k2))
  q_at = task.queries[task.neuron_pos]
  alpha = (jnp.einsum("nd,nd->n", q_at, neurons.keys) + neurons.biases)[None]
  alpha_mask = task.neuron_mask[None]
  return losses.memory_loss_top(
      h, h_mask & task.neuron_mask[:, None], alpha, alpha_mask,
      k1=config.mem_k1, k2=config.mem_k2, gamma=config.gamma, beta=config.beta)


def load_runtime(log=print, lean: bool = False, keep_rephrases=False):
  """(benchmark, base model, runtime) from the flags, as run.py builds them
  (`tasks.build_runtime`: its queries are cached next to the base model).

  lean: skip what edit latency does not use (test queries, rephrases unless
  `keep_rephrases`). The TrainR subset stays: it decides the memory set.
  """
  from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  bench = load_benchmark(FLAGS.task, data_dir=FLAGS.data_dir,
                         scale=FLAGS.scale)
  if FLAGS.base_path:
    base = base_cache.load_base(FLAGS.base_path)
  else:
    base = base_cache.load_or_train_base(
        FLAGS.task, bench, cache_dir=FLAGS.cache_dir,
        data_key=FLAGS.data_dir or f"embedded:{FLAGS.scale}",
        evaluate_splits=False)
  if FLAGS.model_size == "paper":
    base = paper_size(base)
  cap = lambda split: split[:FLAGS.split_size] if FLAGS.split_size else split
  edit = cap(bench.edit)
  if lean and not keep_rephrases:
    edit = [r._replace(rephrases=()) for r in edit]
  bench = bench._replace(edit=edit, val=cap(bench.val),
                         test=bench.test[:1] if lean else cap(bench.test))
  runtime = tasks.build_runtime(FLAGS.task, bench, base, seed=FLAGS.seed,
                                train_sub_size=FLAGS.train_sub_size,
                                memory_size=FLAGS.memory_size,
                                log=lambda *a: None)
  log(f"base {base.path or base.info['label']}: memory "
      f"{len(runtime.memory0)} rows, val memory {len(runtime.val_memory0)} "
      f"rows, stream {len(runtime.stream)}")
  return bench, base, runtime


# The paper's models (Transformer-Patcher: BERT-base for FEVER, BART-base for
# zsRE), as config overrides of the cached base model's config.
PAPER_SIZES = {
    "bert": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
    "bart": dict(d_model=768, encoder_layers=6, decoder_layers=6,
                 encoder_attention_heads=12, decoder_attention_heads=12,
                 encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                 vocab_size=50265),
}


def paper_size(base):
  """`base` with its model replaced by a random one of the paper's size
  (same tokenizer, special tokens and head): for timing only."""
  config = base.config.__class__.from_dict(
      dict(base.config.to_dict(), **PAPER_SIZES[base.config.model_type]))
  model = base.model.__class__(config, seed=0)
  # no path: queries of a random model are not cached next to the base
  return base._replace(model=model, params=model.params, config=config,
                       path=None, info=dict(
                           base.info, label=f"random {config.model_type}, "
                           "paper size (timing only)"))


def find_mistakes(runtime, bank, count: int, seed: int, window: int = 64):
  """Up to `count` stream indices the unedited model gets wrong (seeded
  order, the way a stream meets them)."""
  order = np.random.default_rng(seed).permutation(len(runtime.stream))
  picks = []
  for start in range(0, len(order), window):
    idx = order[start:start + window]
    picks.extend(int(i) for i in idx[runtime.mistakes(bank, idx)])
    if len(picks) >= count:
      break
  return picks[:count]


def neuron_cap(runtime, mode: str) -> int:
  """Neurons per edit at most, as run.py sets it (the runtime's own cap:
  1 for FEVER)."""
  return min(runtime.max_neurons,
             configs.stream_settings(
                 FLAGS.task, mode, max_neurons=FLAGS.max_neurons)["max_neurons"])


def widest_task(runtime, seed: int, max_neurons: int, candidates: int = 40):
  """The edit task (from an empty bank) with the most neurons among the first
  `candidates` mistakes (FEVER: always 1)."""
  empty = pj.init_bank(8, runtime.dim)
  best = None
  for idx in find_mistakes(runtime, empty, candidates, seed):
    task = runtime.edit_task(empty, idx, jax.random.PRNGKey(0), 0,
                             max_neurons)
    if task is not None and (best is None or int(task.neuron_mask.sum())
                             > int(best.neuron_mask.sum())):
      best = task
  return best


def timeit(fn, repeats: int = 5) -> float:
  """Median seconds of fn() (blocked on), after one untimed call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


class CompileLog:
  """Backend compiles (count, seconds), attributed to the current phase."""

  def __init__(self):
    self.phase = "setup"
    self.events = []
    jax.monitoring.register_event_duration_secs_listener(self._on_event)

  def _on_event(self, name, seconds, **kwargs):
    del kwargs
    if name == "/jax/core/compile/backend_compile_duration":
      self.events.append((self.phase, seconds))

  def mark(self):
    return len(self.events)

  def since(self, mark: int):
    return self.events[mark:]

  def summary(self, phase_prefix: str = ""):
    ev = [s for p, s in self.events if p.startswith(phase_prefix)]
    return {"count": len(ev), "seconds": round(float(sum(ev)), 2)}


class Counter:
  """Counts traces of a function (= compiles of its jitted caller)."""

  def __init__(self, fn):
    self.fn, self.traces = fn, 0

  def __call__(self, *args, **kwargs):
    self.traces += 1
    return self.fn(*args, **kwargs)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(times):
  times = [t for t in times if t is not None]
  if not times:
    return {"median_s": float("nan"), "p90_s": float("nan"), "n": 0}
  return {"median_s": statistics.median(times),
          "p90_s": float(np.percentile(times, 90)),
          "mean_s": float(np.mean(times)), "n": len(times)}


def machine() -> dict:
  """What the numbers were measured on (load: other jobs share the CPU)."""
  cpu = platform.processor() or ""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((l.split(":", 1)[1].strip() for l in out.splitlines()
                if l.startswith("Model name")), cpu)
  except OSError:
    pass
  return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu,
          "cores": os.cpu_count(), "load_average": os.getloadavg(),
          "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
          "python": platform.python_version()}
