"""Write the embedded benchmark to disk, or print its counts.

  .venv/bin/python -m patcher_jax.data.geo.export --scale=full        # counts
  .venv/bin/python -m patcher_jax.data.geo.export --out=/tmp/geo      # files

writes <out>/<task>/{train,val,edit,test}.jsonl (KILT format; `run.py
--data_dir=<out>/<task>` reads them back) and <out>/zsre/edit_mend.json (the
zsRE edit split in MEND's format, `alt` = a hard-negative counterfactual)
and <out>/zsre/memory_text.txt (`--memory_text` unlabeled questions about
facts and subjects no split uses, data/geo/unlabeled.py: `run.py
--memory_text=<out>/zsre/memory_text.txt`).
"""
import collections
import os
import time

from absl import app, flags

from patcher_jax.data.benchmark_dir import export_benchmark
from patcher_jax.data.filters import SPLITS
from patcher_jax.data.geo import generate
from patcher_jax.data.geo import unlabeled
from patcher_jax.data.mend import write_mend_json

_SCALE = flags.DEFINE_enum("scale", "full", ["tiny", "small", "full"], "Size.")
_SEED = flags.DEFINE_integer("seed", 0, "Split and negative-sampling seed.")
_OUT = flags.DEFINE_string("out", None, "Directory to write; none: counts only.")
_MEMORY_TEXT = flags.DEFINE_integer(
    "memory_text", 4000, "Unlabeled zsRE questions to write (0: none).")
_BY_RELATION = flags.DEFINE_bool("by_relation", False,
                                 "Also print facts per relation and split.")


def counts_table(scale: str, seed: int) -> str:
  """A markdown table of facts / records / relations per task and split."""
  rows = ["| task | split | facts | records | relations |",
          "|---|---|---|---|---|"]
  for task in ("zsre", "fever"):
    stats = generate.split_stats(task, scale, seed)
    for split in SPLITS:
      s = stats[split]
      rows.append(f"| {task} | {split} | {s['facts']} | {s['records']} | "
                  f"{s['relations']} |")
  return "\n".join(rows)


def relation_table(task: str, scale: str, seed: int) -> str:
  facts = generate.geo_facts(task, scale, seed)
  per = {s: collections.Counter(gf.fact.relation for gf in facts[s])
         for s in SPLITS}
  rows = [f"| {task} relation | " + " | ".join(SPLITS) + " |",
          "|---|" + "---|" * len(SPLITS)]
  for rel in sorted(set().union(*per.values())):
    rows.append(f"| {rel} | " + " | ".join(str(per[s][rel]) for s in SPLITS)
                + " |")
  return "\n".join(rows)


def main(argv):
  del argv
  start = time.time()
  for task in ("zsre", "fever"):
    generate.geo_benchmark(task, _SCALE.value, _SEED.value)
  print(f"generated both tasks (scale={_SCALE.value}, seed={_SEED.value}) in "
        f"{time.time() - start:.2f} s")
  print(counts_table(_SCALE.value, _SEED.value))
  if _BY_RELATION.value:
    for task in ("zsre", "fever"):
      print()
      print(relation_table(task, _SCALE.value, _SEED.value))
  if _OUT.value:
    for task in ("zsre", "fever"):
      bench = generate.geo_benchmark(task, _SCALE.value, _SEED.value)
      export_benchmark(bench, os.path.join(_OUT.value, task))
    write_mend_json(generate.geo_mend_items(_SCALE.value, _SEED.value),
                    os.path.join(_OUT.value, "zsre", "edit_mend.json"))
    if _MEMORY_TEXT.value:
      texts = unlabeled.unlabeled_questions(_MEMORY_TEXT.value, _SCALE.value,
                                            _SEED.value)
      with open(os.path.join(_OUT.value, "zsre", "memory_text.txt"), "w",
                encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in texts))
    print(f"wrote {_OUT.value}/{{zsre,fever}}/")


if __name__ == "__main__":
  app.run(main)
