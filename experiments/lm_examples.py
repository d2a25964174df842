"""Example edits of a finished lm_* run: the model's answers before and after.

Reads a run's folder (run.py --task=lm_complete --model=smollm2 --out_dir=DIR),
restores its last checkpointed bank and decodes, for the first edits, the
edit prompt and its first rephrases with the unedited and the patched model
(real greedy decoding, `llama.greedy_fn`), and GR split by rephrase form
(completion prompts vs chat-template questions) over every edit of the run.

  python experiments/lm_examples.py --out_dir=runs/lm_complete --num=6
"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "A finished lm_* run's folder.")
flags.DEFINE_integer("num", 6, "Edits to show.")
flags.DEFINE_integer("rephrases", 2, "Rephrases shown per edit.")
flags.DEFINE_integer("tokens", 6, "Tokens decoded per answer.")
flags.DEFINE_string("cache_dir", None, "Base-model cache (as run.py).")


def main(argv):
  del argv
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from patcher_jax import checkpoint as ck  # pylint: disable=g-import-not-at-top
  from patcher_jax import patch as patch_lib  # pylint: disable=g-import-not-at-top
  from patcher_jax import tasks  # pylint: disable=g-import-not-at-top
  from patcher_jax.adapters import llama  # pylint: disable=g-import-not-at-top
  from patcher_jax.models import smollm2  # pylint: disable=g-import-not-at-top
  from patcher_jax.tasks import lm_facts  # pylint: disable=g-import-not-at-top
  with open(os.path.join(FLAGS.out_dir, "results.json")) as f:
    results = json.load(f)
  header = results.get("header", results)
  task = header["task"]
  lm = smollm2.load(FLAGS.cache_dir, log=None)
  rt = tasks.build_lm_runtime(task, lm, scale=header.get("scale", "full"),
                              seed=header.get("seed", 0),
                              train_sub_size=header.get("train_sub_size",
                                                        2000),
                              num_edits=header["num_edits"],
                              log=lambda *_: None)
  _, arrays, _ = ck.restore_latest(ck.manager(os.path.join(FLAGS.out_dir,
                                                           "checkpoint")))
  bank = patch_lib.PatchBank(**{k: jnp.asarray(v)[0]
                                for k, v in arrays["bank"].items()})
  empty = patch_lib.init_bank(8, rt.dim)
  greedy = llama.greedy_fn(lm.model, FLAGS.tokens, act=rt.neuron_act)

  def generate(b, prompts):
    enc = lm_facts.encode(lm.tokenizer, prompts, ["x"] * len(prompts), 1)
    lens = np.ones(8, np.int32)
    lens[:len(prompts)] = enc["prompt_len"]
    ids = np.zeros((8, int(enc["prompt_len"].max())), np.int32)
    for j, p in enumerate(prompts):
      toks = lm.tokenizer(p, add_special_tokens=False)["input_ids"]
      ids[j, :len(toks)] = toks
    got = np.asarray(greedy(lm.params, b, rt.query_map, ids, lens))
    return [lm.tokenizer.decode(g.tolist()) for g in got[:len(prompts)]]

  with open(os.path.join(FLAGS.out_dir, "edits.jsonl")) as f:
    records = [json.loads(line) for line in f]
  for r in records[:FLAGS.num]:
    rec = rt.stream[r["stream_index"]]
    prompts = [rec.input] + list(rec.rephrases)[:FLAGS.rephrases]
    before, after = generate(empty, prompts), generate(bank, prompts)
    print(f"- target {rec.answers[0]!r} (edit {r['edit']}, success "
          f"{r['success']}, rephrases {r['rephrase_correct']}/"
          f"{r['rephrase_total']})")
    for p, b0, a0 in zip(prompts, before, after):
      print(f"    ...{p[-50:]!r}: before {b0!r} -> after {a0!r}")
  # GR by rephrase form, from the final bank (chat-template ones hold the
  # template's first special token)
  split = collections.defaultdict(lambda: [0, 0])
  chat_mark = lm.tokenizer.bos_token or "<|im_start|>"
  for r in records:
    i = r["stream_index"]
    rows = rt.reph_rows[i]
    right = rt._correct(bank, rt.queries["reph"], rt.enc["reph"], rows,  # pylint: disable=protected-access
                        rt.base["reph"])
    for row, ok in zip(rows, right):
      form = "chat" if chat_mark in rt.stream[i].rephrases[
          row - rows[0]] else "completion"
      split[form][0] += int(ok)
      split[form][1] += 1
  for form, (ok, n) in sorted(split.items()):
    print(f"GR on {form} rephrases (final bank): {ok}/{n} = {ok / n:.3f}")


if __name__ == "__main__":
  flags.mark_flag_as_required("out_dir")
  app.run(main)
