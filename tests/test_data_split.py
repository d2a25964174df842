"""split_file: grouped by subject, seeded, sizes usable for small files."""
import json
import os

import pytest

from patcher_jax.data import DataError, load_benchmark, read_kilt_jsonl, split_file
from patcher_jax.data.split import default_ratios, split_sizes, subject_groups

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")


def _mend(tmp_path, n_subjects=120, per_subject=4, name="zsre.json"):
  """A MEND zsRE file: several questions per subject, some alt empty."""
  rows = []
  for s in range(n_subjects):
    for q in range(per_subject):
      rows.append({"subject": f"Subject {s}", "src": f"Question {q} about subject {s}?",
                   "rephrase": f"Rephrased question {q} about subject {s}?",
                   "answers": [f"answer {s}"], "alt": "" if q == 1 else f"alt {s}",
                   "loc": "nq question: x", "loc_ans": "y", "pred": "p"})
  path = tmp_path / name
  path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
  return str(path)


def _fever1(tmp_path, n=300, name="fever.jsonl"):
  with open(tmp_path / name, "w") as f:
    for i in range(n):
      label = ("SUPPORTS", "REFUTES", "NOT ENOUGH INFO")[i % 3]
      page = None if i % 3 == 2 else f"Page_{i // 6}"
      f.write(json.dumps({"id": i, "verifiable": "VERIFIABLE", "label": label,
                          "claim": f"Claim number {i} about page {i // 6}.",
                          "evidence": [[[i, i, page, 0 if page else None]]]})
              + "\n")
  return str(tmp_path / name)


def _subject(record_id_to_subject, recs):
  return {record_id_to_subject[r.id] for r in recs}


def test_small_file_sizes_give_a_usable_edit_split():
  # 488 zsRE records, the reference ratios alone give 12 edit records
  assert int(488 * 0.025) == 12
  sizes = split_sizes(488, default_ratios("zsre", with_test_file=False))
  assert sizes == {"val": 32, "edit": 122, "test": 73, "train": 261}
  sizes = split_sizes(488, default_ratios("zsre", with_test_file=True))
  assert sizes == {"val": 36, "edit": 122, "train": 330}
  # large files keep the reference ratios
  assert split_sizes(100_000, default_ratios("fever", True)) == {
      "val": 10_000, "edit": 10_000, "train": 80_000}
  with pytest.raises(ValueError, match="leave no train records"):
    split_sizes(100, default_ratios("fever", True), {"edit": 100})


def test_groups_join_shared_subjects_and_shared_texts():
  from patcher_jax.data import Record
  recs = [Record("a", "Q1?", ("x",), ("Q2?",)), Record("b", " q2?  ", ("x",)),
          Record("c", "Q3?", ("y",)), Record("d", "Q4?", ("y",))]
  groups = subject_groups(recs, [None, None, "S", "s"])
  assert groups[0] == groups[1] and groups[2] == groups[3]
  assert groups[0] != groups[2]


def test_mend_split_keeps_each_subject_in_one_split(tmp_path):
  res = split_file(_mend(tmp_path), str(tmp_path / "out"), "zsre", seed=1)
  subject_of = {f"zsre:{s * 4 + q}": s for s in range(120) for q in range(4)}
  seen = {}
  for split in ("train", "val", "edit", "test"):
    recs = read_kilt_jsonl(str(tmp_path / "out" / f"{split}.jsonl"), "zsre").records
    assert len(recs) == res.counts[split]
    for s in _subject(subject_of, recs):
      assert s not in seen, f"subject {s} in {seen.get(s)} and {split}"
      seen[s] = split
    assert res.subjects[split] == len(_subject(subject_of, recs))
  assert len(seen) == 120 and sum(res.counts.values()) == 480
  # 480 records: the edit split is the floor of 25% (not 0.025 * 480 = 12)
  assert res.counts["edit"] == 120 and res.counts["test"] >= 68
  assert "edit" in res.table and "subjects" in res.table


def test_split_is_seeded_and_recorded(tmp_path):
  raw = _mend(tmp_path)
  split_file(raw, str(tmp_path / "a"), "zsre", seed=3)
  split_file(raw, str(tmp_path / "b"), "zsre", seed=3)
  split_file(raw, str(tmp_path / "c"), "zsre", seed=4)
  for name in ("train.jsonl", "edit.jsonl", "test.jsonl", "split_indices.json"):
    a = (tmp_path / "a" / name).read_text()
    assert a == (tmp_path / "b" / name).read_text().replace(
        str(tmp_path / "b"), str(tmp_path / "a"))
  assert (tmp_path / "a" / "edit.jsonl").read_text() != (
      tmp_path / "c" / "edit.jsonl").read_text()
  index = json.loads((tmp_path / "a" / "split_indices.json").read_text())
  assert index["seed"] == 3 and index["input"]["format"] == "mend"
  lines = index["lines"]
  assert sorted(sum(lines.values(), [])) == list(range(2, 482))
  edit = read_kilt_jsonl(str(tmp_path / "a" / "edit.jsonl"), "zsre").records
  assert [int(r.id.split(":")[1]) + 2 for r in edit] == lines["edit"]


def test_fever1_split_drops_nei_and_loads_in_run_format(tmp_path):
  res = split_file(_fever1(tmp_path), str(tmp_path / "f"), "fever", seed=0)
  assert sum(res.counts.values()) == 200        # 100 NOT ENOUGH INFO dropped
  assert "dropped 100: NOT ENOUGH INFO claims" in res.table
  bench = load_benchmark("fever", data_dir=str(tmp_path / "f"))
  assert [len(s) for s in bench] == [res.counts[s] for s in
                                     ("train", "val", "edit", "test")]
  assert len(bench.edit) >= 40 and all(not r.rephrases for r in bench.edit)
  pages = lambda recs: {int(r.input.split()[-1].rstrip(".")) for r in recs}
  assert not pages(bench.edit) & pages(bench.train)


def test_test_input_becomes_the_test_split(tmp_path):
  res = split_file(_mend(tmp_path), str(tmp_path / "z"), "zsre",
                   test_path=os.path.join(FIXTURES, "zsre_mend_eval.json"))
  assert res.counts["test"] == 2
  assert sum(res.counts[s] for s in ("train", "val", "edit")) == 480
  assert "test input" in res.table


def test_length_check_drops_long_inputs_and_rephrases(tmp_path):
  raw = _mend(tmp_path, n_subjects=40)
  fake = lambda texts: [40 if ("subject 7?" in t or "Rephrased question 0 "
                                in t) else 10 for t in texts]
  res = split_file(raw, str(tmp_path / "o"), "zsre", tokenizer=fake, max_len=32)
  assert sum(res.counts.values()) == 156       # subject 7's 4 inputs dropped
  assert "dropped 4: input longer than 32 tokens" in res.table
  assert "rephrases longer than 32 tokens removed: 39" in res.table
  bench = load_benchmark("zsre", data_dir=str(tmp_path / "o"))
  assert sum(not r.rephrases for s in bench for r in s) == 39


def test_nothing_usable_is_an_error(tmp_path):
  path = tmp_path / "nei.jsonl"
  path.write_text(json.dumps({"id": 1, "label": "NOT ENOUGH INFO",
                              "claim": "c", "evidence": []}) + "\n")
  with pytest.raises(DataError, match=r"nei\.jsonl: no usable records"):
    split_file(str(path), str(tmp_path / "o"), "fever")
