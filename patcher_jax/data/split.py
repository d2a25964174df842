"""One raw file (or a train file and a test file) to a benchmark directory.

`split_file` reads any format `formats.py` knows, drops what cannot be used
(counted: FEVER's NOT ENOUGH INFO claims, zsRE records without exactly one
answer, inputs longer than the model takes), groups the records by subject
and deals whole groups to the splits, so no subject (a Wikipedia page, a zsRE
subject, or failing those the question itself and its rephrases) is in two
splits. It writes train/val/edit/test.jsonl (KILT jsonl, what
`run.py --data_dir` reads) and split_indices.json (which source line went
where).

Sizes: the reference's ratios (FEVER train/val/edit 0.8/0.1/0.1, zsRE
0.9/0.075/0.025), scaled by 0.9 with test taking 0.1 when no test file is
given. Small files get floors, so a few hundred records still give a usable
edit split: edit >= min(200, 25%), val >= min(50, 5%), test >= min(200, 15%)
of the records kept. Groups are dealt in a seeded random order to edit, then
test, then val while they fit; the rest is train.
"""
import collections
import hashlib
import json
import os
import random
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from patcher_jax.data import filters, formats, kilt
from patcher_jax.data.errors import DataError
from patcher_jax.data.lengths import token_lengths

REFERENCE_RATIOS = {
    "fever": {"train": 0.8, "val": 0.1, "edit": 0.1},
    "zsre": {"train": 0.9, "val": 0.075, "edit": 0.025},
}
TEST_SHARE = 0.1                 # of the input, when no test file is given
FLOORS = {"edit": (200, 0.25), "val": (50, 0.05), "test": (200, 0.15)}
DEAL_ORDER = ("edit", "test", "val")
INDEX_FILE = "split_indices.json"
MAX_LEN = 32                     # the project's input length, MiniLM tokens


class SplitResult(NamedTuple):
  counts: Dict[str, int]         # records written per split
  subjects: Dict[str, int]       # subject groups per split
  index_path: str                # where the split indices were written
  table: str                     # the summary printed by the CLI


def default_ratios(task: str, with_test_file: bool) -> Dict[str, float]:
  """The reference ratios; without a test file, test takes TEST_SHARE."""
  kilt.check_task(task)
  ratios = dict(REFERENCE_RATIOS[task])
  if not with_test_file:
    ratios = {k: v * (1 - TEST_SHARE) for k, v in ratios.items()}
    ratios["test"] = TEST_SHARE
  return ratios


def split_sizes(n: int, ratios: Dict[str, float],
                fixed: Optional[Dict[str, int]] = None) -> Dict[str, int]:
  """Target records per split for `n` records kept.

  Args:
    n: records to split.
    ratios: train/val/edit (and test) shares, summing to 1.
    fixed: sizes given by the user (split -> records), overriding the rest.

  Returns:
    split -> records; train takes what the others leave.

  Example:
    >>> split_sizes(488, default_ratios("zsre", False))
    {'val': 32, 'edit': 122, 'test': 73, 'train': 261}
  """
  if abs(sum(ratios.values()) - 1.0) > 1e-6:
    raise ValueError(f"ratios must sum to 1, got {ratios}")
  sizes = {}
  for split in ("val", "edit", "test"):
    if split not in ratios:
      continue
    count, frac = FLOORS[split]
    sizes[split] = max(int(n * ratios[split]), min(count, int(n * frac)))
  sizes.update(fixed or {})
  rest = n - sum(sizes.values())
  if rest < 1:
    raise ValueError(f"sizes {sizes} leave no train records out of {n}")
  sizes["train"] = rest
  return sizes


def _norm(text: str) -> str:
  return " ".join(text.lower().split())


def subject_groups(records, subjects: Sequence[Optional[str]]) -> List[int]:
  """A group id per record: records sharing a subject, or a question / claim
  text (inputs and rephrases, case and spacing ignored), share a group."""
  parent: Dict[str, str] = {}

  def find(k):
    while parent.setdefault(k, k) != k:
      parent[k] = parent[parent[k]]
      k = parent[k]
    return k

  keys = []
  for rec, subject in zip(records, subjects):
    ks = [f"t:{_norm(t)}" for t in (rec.input,) + tuple(rec.rephrases)]
    if subject:
      ks.append(f"s:{_norm(subject)}")
    for k in ks[1:]:
      parent[find(k)] = find(ks[0])
    keys.append(ks[0])
  ids: Dict[str, int] = {}
  return [ids.setdefault(find(k), len(ids)) for k in keys]


def deal_groups(groups: Sequence[int], sizes: Dict[str, int],
                seed: int) -> Dict[str, List[int]]:
  """Record indices per split, whole groups at a time (seeded order)."""
  members = collections.defaultdict(list)
  for i, g in enumerate(groups):
    members[g].append(i)
  order = sorted(members)
  random.Random(seed).shuffle(order)
  out = {s: [] for s in ("train", "val", "edit", "test")}
  for g in order:
    dest = next((s for s in DEAL_ORDER if s in sizes
                 and len(out[s]) + len(members[g]) <= sizes[s]), "train")
    out[dest].extend(members[g])
  return out


def length_filter(source, tokenizer, max_len: int):
  """Drops records whose input is longer than `max_len` tokens and removes
  over-long rephrases from the others (both counted)."""
  texts, owner = [], []
  for i, r in enumerate(source.records):
    for k, t in enumerate((r.input,) + tuple(r.rephrases)):
      texts.append(t)
      owner.append((i, k))
  too_long = collections.defaultdict(set)
  for (i, k), n in zip(owner, token_lengths(tokenizer, texts)):
    if n > max_len:
      too_long[i].add(k)
  keep = [0 not in too_long[i] for i in range(len(source.records))]
  removed = sum(len(ks) for i, ks in too_long.items() if keep[i])
  records = tuple(r._replace(rephrases=tuple(
      t for k, t in enumerate(r.rephrases, start=1) if k not in too_long[i]))
                  for i, r in enumerate(source.records))
  why = f"input longer than {max_len} tokens"
  out = filters.keep_only(source._replace(records=records), keep,
                          {why: keep.count(False)} if keep.count(False) else {})
  if removed:
    notes = dict(out.report.notes)
    notes[f"rephrases longer than {max_len} tokens removed"] = removed
    out = out._replace(report=out.report._replace(notes=notes))
  return out


def read_usable(path: str, task: str, *, tokenizer=None,
                max_len: int = MAX_LEN, target: str = "gold"):
  """A file's records with everything unusable dropped and counted."""
  source = formats.read_records(path, task, target=target)
  source = filters.reference_filter(source, task, "train")
  if tokenizer is not None and max_len:
    source = length_filter(source, tokenizer, max_len)
  if not source.records:
    raise DataError(path, f"no usable records ({source.report.summary()})")
  return source


def split_file(input_path: str, out_dir: str, task: str, *, seed: int = 0,
               test_path: Optional[str] = None,
               ratios: Optional[Dict[str, float]] = None,
               sizes: Optional[Dict[str, int]] = None, tokenizer=None,
               max_len: int = MAX_LEN, target: str = "gold") -> SplitResult:
  """Reads, filters, groups and splits; writes the benchmark directory.

  Args:
    input_path: the raw file (any format of `formats.py`).
    out_dir: the benchmark directory to write (created; our five files in
      it are replaced).
    task: "fever" or "zsre".
    seed: the shuffle seed of the subject groups.
    test_path: a separate test file (e.g. KILT dev); else test is carved
      from the input.
    ratios / sizes: see `split_sizes` (default: `default_ratios`).
    tokenizer: counts tokens (a HF tokenizer or a callable, see
      lengths.token_lengths); None skips the length check.
    max_len: the model's input length in tokens (0: no check).
    target: "gold" or "new" (MEND / EasyEdit counterfactual targets).

  Raises:
    DataError: a malformed file (file, line, problem) or nothing usable.
    ValueError: sizes that leave no train records.
  """
  main = read_usable(input_path, task, tokenizer=tokenizer, max_len=max_len,
                     target=target)
  test = (read_usable(test_path, task, tokenizer=tokenizer, max_len=max_len,
                      target=target) if test_path else None)
  ratios = dict(ratios or default_ratios(task, test is not None))
  if test is not None:
    ratios.pop("test", None)
  targets = split_sizes(len(main.records), ratios, sizes)
  groups = subject_groups(main.records, main.subjects)
  chosen = deal_groups(groups, targets, seed)
  picked = {s: [(main, i) for i in idx] for s, idx in chosen.items()}
  if test is not None:
    picked["test"] = [(test, i) for i in range(len(test.records))]
  os.makedirs(out_dir, exist_ok=True)
  counts = {}
  for split, items in picked.items():
    counts[split] = _write_atomic(
        [src.records[i] for src, i in items],
        os.path.join(out_dir, f"{split}.jsonl"))
  subjects = {s: len({groups[i] for i in chosen[s]}) for s in chosen}
  if test is not None:
    subjects["test"] = len(set(subject_groups(test.records, test.subjects)))
  index_path = _write_index(out_dir, task, seed, ratios, targets, main, test,
                            picked, counts, input_path, test_path)
  table = summary_table(task, out_dir, main, test, picked, subjects)
  return SplitResult(counts, subjects, index_path, table)


def _write_atomic(records, path: str) -> int:
  tmp = path + ".tmp"
  n = kilt.write_kilt_jsonl(records, tmp)
  os.replace(tmp, path)
  return n


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _describe(path: str, source) -> Dict:
  return {"path": os.path.abspath(path), "sha256": _sha256(path),
          "format": source.format, "read": source.report.read,
          "kept": source.report.kept, "dropped": dict(source.report.dropped)}


def _write_index(out_dir, task, seed, ratios, targets, main, test, picked,
                 counts, input_path, test_path) -> str:
  index = {
      "task": task, "seed": seed, "ratios": ratios, "target_sizes": targets,
      "counts": counts, "input": _describe(input_path, main),
      "test_input": _describe(test_path, test) if test is not None else None,
      "note": "1-based line each record starts on in its source file (test: "
              "the test input if given), in the written order",
      "lines": {s: [src.lines[i] for src, i in items]
                for s, items in picked.items()},
  }
  path = os.path.join(out_dir, INDEX_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(index, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(path + ".tmp", path)
  return path


def _source_lines(name: str, source) -> List[str]:
  r = source.report
  lines = [f"{name} {r.source} ({formats.NAMES[source.format]}): read "
           f"{r.read}, kept {r.kept}"]
  lines += [f"  dropped {n}: {why}" for why, n in sorted(r.dropped.items()) if n]
  lines += [f"  note: {why}: {n}" for why, n in sorted(r.notes.items()) if n]
  return lines


def summary_table(task: str, out_dir: str, main, test,
                  picked: Dict[str, List[Tuple[object, int]]],
                  subjects: Dict[str, int]) -> str:
  """What was read and dropped, then records / subjects / rephrases per
  split (and the SUPPORTS share for FEVER)."""
  lines = _source_lines("input", main)
  if test is not None:
    lines += _source_lines("test input", test)
  extra = "  supports" if task == "fever" else ""
  lines.append(f"{'split':<6} {'records':>8} {'subjects':>9} "
               f"{'w/ rephrases':>13}{extra}  file")
  for split in filters.SPLITS:
    recs = [src.records[i] for src, i in picked.get(split, [])]
    reph = sum(bool(r.rephrases) for r in recs)
    col = ""
    if task == "fever":
      share = sum(r.answers[0] == "SUPPORTS" for r in recs) / max(len(recs), 1)
      col = f"  {share:8.0%}"
    lines.append(f"{split:<6} {len(recs):>8} {subjects.get(split, 0):>9} "
                 f"{reph:>13}{col}  {os.path.join(out_dir, split + '.jsonl')}")
  if test is not None:
    shared = ({_norm(s) for s in main.subjects if s}
              & {_norm(s) for s in test.subjects if s})
    if shared:
      lines.append(f"note: {len(shared)} subjects of the test input also occur "
                   f"in the input (the reference's KILT dev split shares them "
                   f"too)")
  return "\n".join(lines)
