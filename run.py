"""Sequential Model Editing with Transformer-Patcher: the main job.

  python run.py --task=zsre --num_edits=1000      # QA, BART, embedded data
  python run.py --task=fever --num_edits=1000     # fact checking, BERT
  python run.py --task=lm_complete --model=smollm2   # pretrained causal LM

Loads the benchmark (the embedded geography default, or --data_dir), trains or
reuses the cached base model, caches the queries the editor needs, then walks
the edit split fixing each mistake with new neurons in the last FFN layer.
Writes results.json, edits.jsonl and curves.png to --out_dir; --resume picks up
an interrupted run from its Orbax checkpoint.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "zsre", ["zsre", "fever", "lm_complete", "lm_chat"],
                  "Benchmark task (lm_*: facts completed by a pretrained "
                  "causal LM, with --model=smollm2).")
flags.DEFINE_enum("model", "trained", ["trained", "smollm2"],
                  "trained: the task's BERT/BART base model (trained once, "
                  "cached); smollm2: SmolLM2-135M-Instruct (lm_* tasks).")
flags.DEFINE_integer("num_edits", 1000, "Edits to make per fold.")
flags.DEFINE_integer("num_folds", 1, "Independent streams (vmapped).")
flags.DEFINE_enum("mode", "fast", ["fast", "parity"],
                  "fast: stop when the edit and margins hold; parity: the "
                  "reference's 8 noisy copies and val-memory stop rule.")
flags.DEFINE_string("data_dir", None,
                    "Benchmark dir with train/val/edit/test.jsonl "
                    "(default: the embedded geography benchmark).")
flags.DEFINE_enum("scale", "full", ["tiny", "small", "full"],
                  "Size of the embedded benchmark.")
flags.DEFINE_string("model_dir", None, "Use this local model folder as the "
                    "base model instead of training one.")
flags.DEFINE_string("cache_dir", None, "Base-model cache "
                    "(default $PATCHER_JAX_CACHE or ~/.cache/patcher_jax).")
flags.DEFINE_string("out_dir", None, "Output dir (default runs/<task>).")
flags.DEFINE_bool("resume", False, "Continue the run saved in --out_dir.")
flags.DEFINE_integer("checkpoint_every", 10, "Edit rounds between "
                     "checkpoints (0: no checkpoints).")
flags.DEFINE_integer("seed", 0, "Seed of the stream order and the edits.")
flags.DEFINE_integer("train_sub_size", 2000, "Train records for TrainR.")
flags.DEFINE_integer("memory_size", 0, "Train records whose queries form the "
                     "memory (0: every train record not in the TrainR subset).")
flags.DEFINE_string("memory_text", None, "A file of unlabeled inputs, one a "
                    "line, whose rows join the memory (the new neurons stay "
                    "silent on them; no answers needed: zsRE uses the "
                    "unedited model's own answers). zsre/fever only.")
flags.DEFINE_bool("keep_failed", None, "Merge a failed edit's neurons anyway "
                  "(default: parity keeps them, fast discards them).")
flags.DEFINE_bool("truncate", False, "Truncate over-long inputs instead of "
                  "failing.")
flags.DEFINE_integer("curve_every", 0, "Edit rounds between curve points "
                     "(0: about 10 points over the run).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string("coordinator", None, "host:port of the jax.distributed "
                    "coordinator (multi-process runs; folds are split over "
                    "processes).")
flags.DEFINE_integer("max_neurons", None, "Neurons per edit at most, one per "
                     "wrong answer token (zsRE). Default: 5 in parity mode "
                     "(the reference's), 16 in fast mode (long answers "
                     "otherwise cannot be fixed).")
flags.DEFINE_float("neuron_margin", None, "Answer tokens the model gets right "
                   "by less than this logit lead get a neuron too (0: wrong "
                   "tokens only, the reference's rule). Default: the task's "
                   "and mode's (configs; zsRE fast mode 2, else 0).")
flags.DEFINE_integer("pool", None, "Fast mode: dropout samples of each edit "
                     "input whose pre-activations join the activation and "
                     "memory losses (more generality; 0: none, the earlier "
                     "fast mode). Default: the task's (configs).")
flags.DEFINE_integer("subject_negatives", None, "zsRE: questions per other "
                     "relation asking about the edit's subject (geo records: "
                     "their templates; other data: with --learned_negatives "
                     "only) whose rows join the memory before its edit; 0: "
                     "none. Default: the task and mode's (zsRE fast: 1).")
flags.DEFINE_bool("learned_negatives", False, "zsRE on a benchmark of your "
                  "own: subject negatives from question templates learned "
                  "from the memory's questions (the geo templates only know "
                  "the embedded benchmark). Other domain, 1000 edits: a "
                  "little locality for some generality (BUILD.md).")
flags.DEFINE_bool("negatives_in_memory", None, "The subject negatives stay "
                  "in memory for later edits (else only the edit's own, held "
                  "below --negative_beta). Default: the mode's.")
flags.DEFINE_float("negative_beta", None, "Pre-activation bound of an edit's "
                   "own subject negatives (EditConfig.negative_beta).")
flags.DEFINE_integer("num_processes", 1, "Processes in a distributed run.")
flags.DEFINE_integer("process_id", 0, "This process's index.")


def _progress(total):
  if not FLAGS.progress:
    return None
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, desc="edits", unit="edit", dynamic_ncols=True)


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def write_outputs(out_dir, result, header):
  """results.json, edits.jsonl and curves.png of a run; returns the results
  (main adds the wall time and its split)."""
  from patcher_jax import stream  # pylint: disable=g-import-not-at-top
  recs = result["records"]
  times = [r["edit_time_s"] for r in recs] or [float("nan")]
  summarized = stream.summarize(result)
  summary = summarized["summary"]
  results = dict(header)
  results.update({k: summary[k] for k in ("SR", "GR", "ER", "TrainR", "TestR")})
  for k in ("GR_per_edit_mean", "GR_before", "TrainR_flips", "TestR_flips",
            "edits_without_rephrases"):
    results[k] = summary[k]
  folds = result["folds"]
  results["base"] = {"train_acc": float(np.mean([f["base_train_acc"]
                                                 for f in folds])),
                     "test_acc": float(np.mean([f["base_test_acc"]
                                                for f in folds]))}
  results["final"] = {"train_acc": float(np.mean([f["train_acc"]
                                                  for f in folds])),
                      "test_acc": float(np.mean([f["test_acc"]
                                                 for f in folds]))}
  results["edits_made"] = len(recs)
  results["edit_time_s"] = {"median": statistics.median(times),
                            "p90": float(np.percentile(times, 90)),
                            "total": float(np.sum(times))}
  results["steps_per_edit"] = {
      "median": statistics.median([r["steps"] for r in recs] or [0]),
      "max": max([r["steps"] for r in recs] or [0])}
  results["neurons_per_edit"] = float(np.mean([r["neurons"] for r in recs]
                                              or [0]))
  results["failed_edits"] = sum(not r["train_success"] for r in recs)
  results["skipped_no_wrong_token"] = len(result["skipped"])
  results["exhausted_folds"] = sorted(int(k) for k, e in
                                     result["exhausted"].items() if e)
  results["folds"] = folds
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "edits.jsonl"), "w") as f:
    for r in recs:
      f.write(json.dumps(r) + "\n")
  results["curve"] = summarized["curve"]
  _write_json(os.path.join(out_dir, "results.json"), results)
  if summarized["curve"]:
    from patcher_jax import plots  # pylint: disable=g-import-not-at-top
    plots.plot_curves(summarized["curve"], os.path.join(out_dir, "curves.png"),
                      title=f"{header['task']} ({header['mode']})")
  return results


def _lm_runtime(tasks):
  """A pretrained causal LM on the embedded facts: (runtime, time ready)."""
  from patcher_jax.models import smollm2  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  lm = smollm2.load(FLAGS.cache_dir)
  t_base = time.perf_counter()
  print(f"base model ({FLAGS.model}) ready in {t_base - t0:.0f} s")
  runtime = tasks.build_lm_runtime(FLAGS.task, lm, scale=FLAGS.scale,
                                   seed=FLAGS.seed,
                                   train_sub_size=FLAGS.train_sub_size,
                                   memory_size=FLAGS.memory_size,
                                   num_edits=FLAGS.num_edits)
  return runtime, t_base


def _check_flags():
  """Flag combinations absl cannot check: one error line, exit status 2."""
  lm_task = FLAGS.task.startswith("lm_")
  problem = None
  if lm_task and FLAGS.model == "trained":
    problem = f"--task={FLAGS.task} needs a pretrained LM: --model=smollm2"
  elif not lm_task and FLAGS.model != "trained":
    problem = (f"--model={FLAGS.model} runs the lm_* tasks, not "
               f"--task={FLAGS.task}")
  elif lm_task and (FLAGS.data_dir or FLAGS.model_dir or FLAGS.memory_text):
    problem = (f"--task={FLAGS.task} takes no --data_dir / --model_dir / "
               "--memory_text")
  elif FLAGS.pool is not None and (FLAGS.mode != "fast" or FLAGS.pool < 0):
    problem = ("--pool: a sample count >= 0, in fast mode only (parity "
               "draws the reference's noisy copies itself)")
  elif FLAGS.subject_negatives is not None and FLAGS.subject_negatives < 0:
    problem = "--subject_negatives: a question count >= 0"
  elif FLAGS.learned_negatives and FLAGS.task != "zsre":
    problem = "--learned_negatives: zsRE only (subject negatives are QA's)"
  if problem:
    print(f"error: flags: {problem}", file=sys.stderr)
    sys.exit(2)


def _memory_text(tokenizer):
  """The inputs of --memory_text (checked like the benchmark's inputs); a
  bad file stops with one line naming it, the line and the problem."""
  if not FLAGS.memory_text:
    return []
  from patcher_jax import memory_text  # pylint: disable=g-import-not-at-top
  from patcher_jax.data import DataError  # pylint: disable=g-import-not-at-top
  try:
    texts, lines = memory_text.read_inputs(FLAGS.memory_text)
    memory_text.check_lengths(texts, lines, tokenizer, 32, FLAGS.memory_text,
                              truncate=FLAGS.truncate)
  except DataError as e:
    print(f"error: --memory_text: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"memory text: {len(texts)} unlabeled inputs from {FLAGS.memory_text}")
  return texts


def main(argv):
  del argv
  _check_flags()
  t_start = time.perf_counter()
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.num_processes > 1:
    jax.distributed.initialize(FLAGS.coordinator, FLAGS.num_processes,
                               FLAGS.process_id)
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  from patcher_jax import stream  # pylint: disable=g-import-not-at-top
  from patcher_jax import tasks  # pylint: disable=g-import-not-at-top
  from patcher_jax.data import load_benchmark_and_report  # pylint: disable=g-import-not-at-top
  from patcher_jax.data import report as data_report  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import minilm  # pylint: disable=g-import-not-at-top

  out_dir = FLAGS.out_dir or os.path.join("runs", FLAGS.task)
  print(f"patcher_jax | task={FLAGS.task} mode={FLAGS.mode} "
        f"num_edits={FLAGS.num_edits} folds={FLAGS.num_folds} "
        f"devices={jax.device_count()} out={out_dir}")
  from patcher_jax.timing import Timings  # pylint: disable=g-import-not-at-top
  timings = Timings()
  timings.count_compiles()
  from patcher_jax import xla_cache  # pylint: disable=g-import-not-at-top
  xla_cache.enable(FLAGS.cache_dir)
  t_data = time.perf_counter()
  texts = []
  if FLAGS.task in tasks.LM_TASKS:
    runtime, t_base = _lm_runtime(tasks)
    timings.add("setup.base", t_base - t_data)
  else:
    tok = minilm.load_tokenizer(FLAGS.model_dir) if FLAGS.model_dir else (
        minilm.load_tokenizer())
    bench, loaded = load_benchmark_and_report(
        FLAGS.task, data_dir=FLAGS.data_dir, scale=FLAGS.scale, tokenizer=tok,
        max_len=32, truncate=FLAGS.truncate)
    print(loaded.table())   # per split: read, kept, dropped per reason
    texts = _memory_text(tok)
    timings.add("setup.data", time.perf_counter() - t_data)
    # The split metrics of a base model (experiments/train_base.py) are not
    # needed here: the runtime below answers what the stream needs.
    base = base_cache.load_or_train_base(
        FLAGS.task, bench, cache_dir=FLAGS.cache_dir, model_dir=FLAGS.model_dir,
        data_key=FLAGS.data_dir or f"embedded:{FLAGS.scale}",
        evaluate_splits=False)
    t_base = time.perf_counter()
    timings.add("setup.base", t_base - t_data - timings.seconds["setup.data"])
    print(f"base model ready in {t_base - t_start:.0f} s")
    runtime = tasks.build_runtime(
        FLAGS.task, bench, base, seed=FLAGS.seed,
        train_sub_size=FLAGS.train_sub_size, memory_size=FLAGS.memory_size,
        memory_text=texts,
        **({"learned_negatives": True} if FLAGS.learned_negatives else {}))
    mistakes = (runtime.base_mistakes() if hasattr(runtime, "base_mistakes")
                else base.info.get("metrics", {}).get("edit_mistakes"))
    print(data_report.base_mistakes_line(
        None if mistakes is None else {"edit_mistakes": mistakes,
                                       "num_edit": len(runtime.stream)},
        FLAGS.num_edits))
  pool = {} if FLAGS.pool is None else {"pool_alpha": FLAGS.pool > 0}
  edit_config = configs.get(FLAGS.task, FLAGS.mode,
                            keep_failed=FLAGS.keep_failed,
                            negative_beta=FLAGS.negative_beta, **pool)
  curve_every = FLAGS.curve_every or max(1, FLAGS.num_edits // 10)
  config = stream.StreamConfig(
      num_edits=FLAGS.num_edits, num_folds=FLAGS.num_folds, seed=FLAGS.seed,
      **configs.stream_settings(FLAGS.task, FLAGS.mode,
                                max_neurons=FLAGS.max_neurons,
                                neuron_margin=FLAGS.neuron_margin,
                                noise_samples=FLAGS.pool,
                                subject_negatives=FLAGS.subject_negatives,
                                negatives_in_memory=FLAGS.negatives_in_memory),
      checkpoint_every=FLAGS.checkpoint_every, curve_every=curve_every)
  rank, nproc = jax.process_index(), jax.process_count()
  folds = stream.local_folds(FLAGS.num_folds, rank, nproc)
  # the likely edits' rephrase drafts are a query cache too
  stream.plan(runtime, config, folds)
  t_queries = time.perf_counter()
  timings.add("setup.queries", t_queries - t_base)
  print(f"queries cached in {t_queries - t_base:.0f} s "
        f"(memory {len(runtime.memory0)}, val memory "
        f"{len(runtime.val_memory0)})")

  bar = _progress(FLAGS.num_edits * FLAGS.num_folds)
  done = {"n": 0, "ok": 0, "t0": time.perf_counter()}

  def on_edit(rec):
    done["n"] += 1
    done["ok"] += int(rec["success"])
    if bar is not None:
      rate = done["n"] / max(time.perf_counter() - done["t0"], 1e-9)
      bar.set_postfix(SR=f"{done['ok'] / done['n']:.3f}",
                      rate=f"{rate:.1f}/s", steps=rec["steps"])
      bar.update(1)

  ckpt_dir = os.path.join(out_dir, "checkpoint")
  if nproc > 1:
    ckpt_dir = os.path.join(ckpt_dir, f"process_{rank}")
  result = stream.run(runtime, edit_config, config, folds=folds,
                      checkpoint_dir=ckpt_dir, resume=FLAGS.resume,
                      on_edit=on_edit, timings=timings)
  if bar is not None:
    bar.close()
  result.pop("state")
  if nproc > 1:
    from patcher_jax import distributed  # pylint: disable=g-import-not-at-top
    result = distributed.gather_results(out_dir, result, rank, nproc)
    if result is None:      # not process 0: process 0 writes the outputs
      return
  header = {"task": FLAGS.task, "model": FLAGS.model,
            "num_edits": FLAGS.num_edits,
            "num_folds": FLAGS.num_folds, "mode": FLAGS.mode,
            "seed": FLAGS.seed, "data": FLAGS.data_dir or "embedded:"
            + FLAGS.scale, "memory_size": FLAGS.memory_size,
            "memory_text": FLAGS.memory_text and {
                "file": FLAGS.memory_text, "inputs": len(texts)},
            "memory_rows": int(len(runtime.memory0)),
            "subject_negatives": config.subject_negatives,
            "neuron_margin": config.neuron_margin,
            "learned_negatives": bool(getattr(runtime, "learned_negatives",
                                              False)),
            "negatives_in_memory": config.negatives_in_memory,
            "negative_beta": edit_config.negative_beta,
            "setup_time_s": {"base": round(t_base - t_start, 1),
                             "queries": round(t_queries - t_base, 1)}}
  if hasattr(runtime, "counts"):   # answers read off drafts vs decoded
    header["answer_checks"] = dict(runtime.counts)
  with timings.phase("outputs"):
    results = write_outputs(out_dir, result, header)
  # the wall time and its split, the outputs included
  results["wall_time_s"] = time.perf_counter() - t_start
  results["time_split_s"] = timings.as_dict()
  _write_json(os.path.join(out_dir, "results.json"), results)
  if any(result["exhausted"].values()):
    print(f"note: the edit split ran out of mistakes before {FLAGS.num_edits} "
          f"edits in folds {results['exhausted_folds']}")
  rate = lambda k: "n/a" if results[k] is None else f"{results[k]:.3f}"
  print(f"\n| SR | GR | ER | TrainR | TestR |\n|---|---|---|---|---|\n"
        f"| {rate('SR')} | {rate('GR')} | {rate('ER')} "
        f"| {rate('TrainR')} | {rate('TestR')} |")
  if results["edits_without_rephrases"]:
    print(f"GR counts only edits with rephrases; "
          f"{results['edits_without_rephrases']} of {results['edits_made']} "
          f"edited records had none")
  flips = lambda f: f"-{f['lost']}/+{f['gained']} of {f['total']}"
  print(f"GR before the edits {rate('GR_before')}; answers flipped "
        f"(lost/gained): train {flips(results['TrainR_flips'])}, test "
        f"{flips(results['TestR_flips'])}")
  print(f"GR per-edit mean {rate('GR_per_edit_mean')}; "
        f"{results['edits_made']} edits, median edit "
        f"{results['edit_time_s']['median'] * 1e3:.0f} ms, wall "
        f"{results['wall_time_s']:.0f} s; results in {out_dir}/results.json")
  logging.flush()
  sys.stdout.flush()


def _parse_flags(argv):
  """absl's flag parsing, but a mistyped or ill-valued flag is one error line
  and exit status 2 (absl prints "FATAL Flags parsing error" and exits 1)."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: flags: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  from patcher_jax import host_malloc  # pylint: disable=g-import-not-at-top
  host_malloc.reexec()     # malloc that reuses XLA's freed buffers
  app.run(main, flags_parser=_parse_flags)
