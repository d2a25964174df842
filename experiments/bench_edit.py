"""Edit latency: the cached-tail path against the faithful full-model path.

One process, one run: the same sequence of mistakes is edited twice from the
same bank, once on cached queries (the project's path) and once running the
whole model forward and backward at every step (the reference's cost, still
jitted). Both paths share the loop, losses and stop rule; the script checks
they take the same steps and produce the same patch, so the ratio compares
equal work.

  python experiments/bench_edit.py --task=fever --num_edits=20 --json=out.json

--model=minilm (default when no trained base model is cached) uses MiniLM's
encoder with a fresh one-logit head and labels flipped to its predictions, so
every claim is a mistake.
"""
import json
import os
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import patcher_jax as pj
from patcher_jax.adapters import bert

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "fever", ["fever"], "Task to benchmark.")
flags.DEFINE_enum("model", "minilm", ["minilm"],
                  "minilm: MiniLM encoder + fresh head, all claims mistakes.")
flags.DEFINE_integer("num_edits", 20, "Edits timed per path.")
flags.DEFINE_integer("memory_size", 2000, "Memory queries (train claims).")
flags.DEFINE_enum("mode", "fast", ["fast", "parity"], "Edit mode.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("json", None, "Write the results here.")

def _minilm_classifier():
  from patcher_jax.models import minilm as minilm_lib
  from patcher_jax.models import train_classifier
  config = minilm_lib.load_bert_config()
  config, params = train_classifier.init_classifier(
      minilm_lib.load_bert_params(config=config), config, seed=0)
  return (train_classifier.classifier_model(config), params,
          minilm_lib.load_tokenizer())


def _timed(fn, *args, **kwargs):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args, **kwargs))
  return out, time.perf_counter() - t0


def _summary(times):
  return {"median_s": statistics.median(times),
          "p90_s": float(np.percentile(times, 90)), "n": len(times)}


def main(argv):
  del argv
  from patcher_jax.data import load_benchmark
  bench = load_benchmark("fever", scale="small")
  rng = np.random.default_rng(FLAGS.seed)
  model, params, tok = _minilm_classifier()
  edit_claims = [bench.edit[i].input for i in rng.permutation(
      len(bench.edit))[:FLAGS.num_edits + 1]]
  memory_claims = [r.input for r in bench.train[:FLAGS.memory_size]]
  claims = edit_claims + memory_claims
  enc = tok(claims, padding="max_length", max_length=32, truncation=True,
            return_tensors="np")
  ids, mask = jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"])
  query_fn = jax.jit(lambda p, i, m: bert.forward(model, p, i, m))
  outs = [query_fn(params, ids[s:s + 256], mask[s:s + 256])
          for s in range(0, len(claims), 256)]
  logits = jnp.concatenate([o[0] for o in outs])
  q = jnp.concatenate([o[1] for o in outs])
  labels = (logits[:, 0] <= 0).astype(jnp.int32)         # all mistakes
  targets, tmask = bert.targets(labels)
  n_edit = FLAGS.num_edits + 1                            # +1: warm-up
  memory = pj.init_memory(q[n_edit:], FLAGS.memory_size)
  tail = bert.make_tail(model.config, params)
  config = (pj.fast_config() if FLAGS.mode == "fast"
            else pj.parity_config(noise=False))

  compiles = {"cached": 0, "full": 0}

  def counted(name):
    def fn(*args, config, full=None):
      compiles[name] += 1
      return pj.edit(*args, config=config, full=full)
    return jax.jit(fn, static_argnames="config")

  run_cached, run_full = counted("cached"), counted("full")
  make_task = jax.jit(pj.make_edit_task, static_argnames="max_neurons")
  results = {}
  for name, run in (("cached", run_cached), ("full", run_full)):
    bank = pj.init_bank(64, q.shape[-1])
    times, steps, banks, compile_s = [], [], [], None
    for i in range(n_edit):
      task = make_task(tail, bank, q[i:i + 1], targets[i], tmask[i],
                       max_neurons=1)
      full = (bert.full_model(model, params, bank, ids[i:i + 1],
                              mask[i:i + 1]) if name == "full" else None)
      (bank, stats), dt = _timed(run, tail, bank, task, memory, memory,
                                 jax.random.PRNGKey(i), i, config=config,
                                 full=full)
      if i == 0:
        compile_s = dt                                    # compile + one edit
        continue
      times.append(dt)
      steps.append(int(stats.steps))
      banks.append(bank)
    results[name] = dict(_summary(times), first_call_s=compile_s,
                         steps=steps, success=None)
    results[name]["_bank"] = bank
  same_steps = results["cached"]["steps"] == results["full"]["steps"]
  diff = float(jnp.max(jnp.abs(results["cached"]["_bank"].values
                               - results["full"]["_bank"].values)))
  for r in results.values():
    r.pop("_bank")
  out = {
      "task": FLAGS.task, "model": FLAGS.model, "mode": FLAGS.mode,
      "num_edits": FLAGS.num_edits, "memory_size": FLAGS.memory_size,
      "ratio": results["full"]["median_s"] / results["cached"]["median_s"],
      "cached": results["cached"], "full": results["full"],
      "steps_per_edit": statistics.median(results["cached"]["steps"]),
      "same_steps": same_steps, "max_value_diff": diff,
      "compiles": compiles,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "devices": [str(d) for d in jax.devices()],
  }
  print(json.dumps({k: v for k, v in out.items()
                    if k not in ("cached", "full")}, indent=1))
  for name in ("cached", "full"):
    r = results[name]
    print(f"{name:6s} median {r['median_s'] * 1e3:8.1f} ms  p90 "
          f"{r['p90_s'] * 1e3:8.1f} ms  first call {r['first_call_s']:.2f} s")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
