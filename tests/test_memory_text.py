"""Unlabeled memory text: the file reader, the rows a runtime adds for it,
the Editor and run.py options, and the questions the project ships."""
import os
import subprocess
import sys

import numpy as np
import pytest

from patcher_jax import memory_text
from patcher_jax.data import DataError, Record
from helpers import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(tmp_path, data: bytes, name="q.txt"):
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def test_read_inputs_skips_blanks_and_comments(tmp_path):
  path = _write(tmp_path, b"\xef\xbb\xbfWhere is Lima?\r\n\n  # a note\n"
                b"  Who wrote it?  \n")
  assert memory_text.read_inputs(path) == (["Where is Lima?",
                                             "Who wrote it?"], [1, 4])


@pytest.mark.parametrize("data,problem", [
    (b"ok\n\xff\xfe bad\n", "q.txt:2: not valid UTF-8"),
    (b"\n  \n# only a comment\n", "no input"),
])
def test_bad_files_name_file_line_and_problem(tmp_path, data, problem):
  path = _write(tmp_path, data)
  with pytest.raises(DataError, match=problem):
    memory_text.read_inputs(path)


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match="cannot read"):
    memory_text.read_inputs(str(tmp_path / "none.txt"))


def test_too_long_input_names_its_line():
  words = lambda texts: [len(t.split()) for t in texts]
  memory_text.check_lengths(["a b", "c"], [1, 3], words, 2, "q.txt")
  with pytest.raises(DataError, match="q.txt:3: .* 3 tokens"):
    memory_text.check_lengths(["a b", "c d e"], [1, 3], words, 2, "q.txt")


TEXTS = ["Which country is the city of Oslo in?",
         "What is the capital of Peru?", "Which US state is Kent County in?"]


def test_seq2seq_rows_follow_the_unedited_models_own_answers():
  plain = tiny.seq2seq_runtime(num_stream=4, eos_bias=0.1)
  extra = tiny.seq2seq_runtime(num_stream=4, eos_bias=0.1, memory_text=TEXTS)
  n0 = len(plain.memory0)
  np.testing.assert_array_equal(extra.memory0[:n0], plain.memory0)
  # the rows: the unedited model's greedy answer to each text, along that
  # answer, every position through its eos but the first
  d = plain._base_drafts([Record("t", t, ("?",)) for t in TEXTS])  # pylint: disable=protected-access
  mask, queries = d.mask.copy(), d.queries
  mask[:, 0] = False
  assert mask.sum() > 0
  np.testing.assert_allclose(extra.memory0[n0:], queries[mask], atol=1e-5)


def test_classification_rows_are_the_texts_queries():
  plain = tiny.classification_runtime(num_stream=4)
  extra = tiny.classification_runtime(num_stream=4, memory_text=TEXTS)
  n0 = len(plain.memory0)
  assert len(extra.memory0) == n0 + len(TEXTS)
  np.testing.assert_array_equal(extra.memory0[:n0], plain.memory0)
  np.testing.assert_allclose(extra.memory0[n0:], plain._encode(TEXTS),
                             atol=1e-5)


def test_editor_memory_text_file_is_recorded_and_rebuilt(tmp_path):
  import patcher_jax as pj
  path = _write(tmp_path, "\n".join(TEXTS).encode())
  plain = tiny.tiny_editor("fever", str(tmp_path / "m"))
  ed = tiny.tiny_editor("fever", str(tmp_path / "m"), memory_text_file=path)
  assert int(ed.memory.size) == int(plain.memory.size) + len(TEXTS)
  assert ed.source["memory_text_file"] == path
  ed.save(str(tmp_path / "bank"))
  again = pj.Editor.load(str(tmp_path / "bank"))
  assert int(again.memory.size) == int(ed.memory.size)
  with pytest.raises(ValueError, match="not both"):
    tiny.tiny_editor("fever", str(tmp_path / "m"), memory_text_file=path,
                     memory_text=TEXTS)


def test_run_py_bad_memory_text_is_one_error_line(tmp_path):
  path = _write(tmp_path, b"ok\n\xff\n")
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "run.py"), "--task=zsre",
       "--scale=tiny", "--progress=false", f"--memory_text={path}",
       f"--cache_dir={tmp_path / 'cache'}", f"--out_dir={tmp_path / 'out'}"],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      f"error: --memory_text: {path}:2: not valid UTF-8")
  assert "Traceback" not in out.stderr


def test_shipped_questions_avoid_every_benchmark_subject():
  from patcher_jax.data.filters import SPLITS
  from patcher_jax.data.geo import generate, templates, unlabeled
  qs = unlabeled.unlabeled_questions(300, scale="tiny")
  assert len(qs) == 300 == len(set(qs))
  assert qs == unlabeled.unlabeled_questions(300, scale="tiny")
  bench = generate.geo_benchmark("zsre", "tiny")
  used = {r.input for s in SPLITS for r in getattr(bench, s)}
  used |= {t for s in SPLITS for r in getattr(bench, s) for t in r.rephrases}
  assert not used & set(qs)
  subjects = {gf.fact.subject.lower() for s in SPLITS
              for gf in generate.geo_facts("zsre", "tiny")[s]}
  inputs = [t.questions[0] for t in templates.RELATIONS]
  for q in qs:
    # the input template of some relation, about a subject no split uses
    subject = next(_subject(t, q) for t in inputs if _subject(t, q))
    assert subject.lower() not in subjects


def _subject(template: str, text: str):
  head, tail = template.split("{s}")
  if text.startswith(head) and text.endswith(tail):
    return text[len(head):len(text) - len(tail)]
  return None
