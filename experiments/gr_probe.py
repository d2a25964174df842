"""Why do zsRE rephrases fail? Edit the first mistakes of a stream and sort
each failed rephrase by cause (scratch diagnostic, not a benchmark).

For each edit: the new neurons' pre-activation on the edit query (alpha), on
each rephrase at the same answer position, and the largest memory
pre-activation; each failed rephrase is put in one class:
  * other_pos: teacher forced, it is wrong at a position without a neuron;
  * silent:    wrong at a neuron's position where that neuron's pre-act < 0;
  * weak:      wrong at a neuron's position although the neuron fires;
  * free_gen:  teacher forcing is right but greedy decoding is not.

  python experiments/gr_probe.py --num_edits=100 --settings="edit_margin=6"
"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import setting_text  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_edits", 100, "Edits.")
flags.DEFINE_string("settings", "", "EditConfig overrides (as sweep.py).")
flags.DEFINE_integer("seed", 0, "Stream seed.")
flags.DEFINE_integer("pool", 16, "Pool samples per edit (0: none).")
flags.DEFINE_float("neuron_margin", None, "Barely right tokens get a neuron "
                   "too (StreamConfig.neuron_margin; default: zsRE's).")
flags.DEFINE_float("word_drop", 0.0, "Pool: hide input words (0: dropout).")
flags.DEFINE_bool("pool_dropout", True, "Pool: dropout on.")
flags.DEFINE_string("json", None, "Write per-edit rows here.")
flags.DEFINE_string("data_dir", None, "Benchmark dir (as run.py).")
flags.DEFINE_string("cache_dir", None, "Base-model cache (as run.py).")


def main(argv):
  del argv
  if setting_text.stream_keys(FLAGS.settings):
    raise app.UsageError(
        f"--settings: {', '.join(setting_text.stream_keys(FLAGS.settings))}"
        ": use --pool, --word_drop, --pool_dropout, --neuron_margin here")
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from patcher_jax import editor, memory as memory_lib, patch as patch_lib  # pylint: disable=g-import-not-at-top
  from patcher_jax import stream, tasks  # pylint: disable=g-import-not-at-top
  from patcher_jax.data import load_benchmark  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import base_cache, qa_format  # pylint: disable=g-import-not-at-top
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  margin = (configs.stream_settings("zsre")["neuron_margin"]
            if FLAGS.neuron_margin is None else FLAGS.neuron_margin)
  bench = load_benchmark("zsre", data_dir=FLAGS.data_dir)
  base = base_cache.load_or_train_base(
      "zsre", bench, cache_dir=FLAGS.cache_dir,
      data_key=FLAGS.data_dir or "embedded:full")
  rt = tasks.build_runtime("zsre", bench, base, seed=FLAGS.seed,
                           train_sub_size=2000, pool_word_drop=FLAGS.word_drop,
                           pool_dropout=FLAGS.pool_dropout)
  config = setting_text.parse_setting(FLAGS.settings,
                                      configs.get("zsre", "fast"))
  edit_fn = jax.jit(editor.edit, static_argnames="config")
  bank = patch_lib.init_bank(4096, rt.dim)
  mem = memory_lib.init_memory(rt.memory0, len(rt.memory0) + 40 * FLAGS.num_edits)
  order = stream.fold_orders(len(rt.stream), 1, FLAGS.seed)[0]
  key = jax.random.PRNGKey(FLAGS.seed)
  counts, rows, e = collections.Counter(), [], 0
  for idx in order:
    if e >= FLAGS.num_edits:
      break
    if not rt.mistakes(bank, [idx])[0]:
      continue
    k = jax.random.fold_in(key, e)
    task = rt.edit_task(bank, int(idx), k, FLAGS.pool, 16, margin)
    if task is None:
      continue
    new_bank, st = edit_fn(rt.tail, bank, task, mem, mem, k, e, config=config)
    r = rt.stream[idx]
    reph = list(r.rephrases)[:5]
    enc = qa_format.encode_qa(rt.tokenizer, reph, [r.answers[0]] * len(reph),
                              rt.max_src_len, rt.max_tgt_len)
    w = task.queries.shape[0]
    qr = rt._teacher_forced(enc, 8)[:, :w]                    # [R, w, d]
    pos = np.asarray(task.neuron_pos)[np.asarray(task.neuron_mask)]
    live = np.asarray(new_bank.edit_ids) == e
    keys = np.asarray(new_bank.keys)[live]
    bias = np.asarray(new_bank.biases)[live]
    alpha = np.einsum("nd,nd->n", np.asarray(task.queries)[pos], keys) + bias
    a_reph = np.einsum("rnd,nd->rn", qr[:, pos], keys) + bias  # [R, n]
    h = np.asarray(mem.queries)[np.asarray(mem.mask)] @ keys.T + bias
    ok, r_ok, _ = rt.after_edit(new_bank, int(idx))
    right = rt._correct(new_bank, [r] * len(reph), (), reph)
    for j in range(len(reph)):
      held_out = j >= len(reph) - 2
      wrong = np.asarray(editor.wrong_positions(
          rt.tail, new_bank, qr[j], enc["labels"][j][:w],
          enc["label_mask"][j][:w].astype(bool)).wrong)
      if right[j]:
        cls = "ok"
      elif not wrong.any():
        cls = "free_gen"
      elif wrong[[p for p in range(w) if p not in set(pos)]].any():
        cls = "other_pos"
      elif (a_reph[j][wrong[pos]] < 0).any():
        cls = "silent"
      else:
        cls = "weak"
      counts[(cls, "held_out" if held_out else "seen")] += 1
    rows.append({"edit": e, "idx": int(idx), "steps": int(st.steps),
                 "alpha": alpha.tolist(), "max_h": h.max(0).tolist(),
                 "a_reph": a_reph.tolist(), "right": right.tolist()})
    bank = new_bank
    mrows = memory_lib.deduplicate(rt.memory_rows(int(idx)))
    mem = memory_lib.append(mem, jax.numpy.asarray(mrows),
                            jax.numpy.ones(len(mrows), bool))
    e += 1
  total = sum(counts.values())
  print(json.dumps({f"{a}/{b}": v for (a, b), v in sorted(counts.items())}))
  print("GR", sum(v for (a, _), v in counts.items() if a == "ok") / total)
  a = np.concatenate([np.asarray(x["a_reph"]).ravel() for x in rows])
  print("reph pre-act quantiles", np.quantile(a, [.05, .1, .25, .5]).round(2))
  print("edit alpha median", np.median(np.concatenate([x["alpha"] for x in rows])),
        "max_h median", np.median(np.concatenate([x["max_h"] for x in rows])))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(rows, f)


if __name__ == "__main__":
  app.run(main)
