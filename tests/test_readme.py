"""Every code block of README.md runs, so a snippet cannot drift from the code.

- ```python blocks run in order, each in a fresh namespace, all in one
  temporary working directory (a block may use files an earlier one wrote).
  A block preceded by `<!-- readme-test: setup=NAME -->` first runs the setup
  NAME below (tiny random models standing in for the real ones: CI cannot
  train the default base models); the block's own text runs unchanged.
- ```json blocks parse.
- ```bash blocks parse (`bash -n`); each `python -m patcher_jax CMD` line
  answers `CMD --help`.
To add a setup for a new section, add a function (ns, workdir, monkeypatch)
to SETUPS.
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = re.compile(r"<!--\s*readme-test:\s*setup=(\w+)\s*-->\s*$")


def blocks(path=os.path.join(ROOT, "README.md")):
  """[(language, code, setup or None, line)] of the fenced blocks."""
  lines = open(path, encoding="utf-8").read().splitlines()
  out, i = [], 0
  while i < len(lines):
    m = re.match(r"^```(\w*)\s*$", lines[i])
    if not m or not m.group(1):
      i += 1
      continue
    j = i + 1
    while not lines[j].startswith("```"):
      j += 1
    tag = TAG.match(lines[i - 1]) if i else None
    out.append((m.group(1), "\n".join(lines[i + 1:j]),
                tag.group(1) if tag else None, i + 1))
    i = j + 1
  return out


# -- setups: names a block may use --------------------------------------------


def tiny_bert(ns, tmp, monkeypatch):
  """model, params, ids, mask, labels (all wrong), q_train: a tiny random
  BERT classifier and a batch."""
  del tmp, monkeypatch
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from conftest import TinyBert  # pylint: disable=g-import-not-at-top
  from patcher_jax.adapters import bert  # pylint: disable=g-import-not-at-top
  t = TinyBert()
  logits, _ = bert.forward(t.model, t.params, t.input_ids, t.attention_mask)
  other = jax.random.randint(jax.random.PRNGKey(7), (16, 8), 1, 100)
  ns.update(model=t.model, params=t.params, ids=t.input_ids,
            mask=t.attention_mask,
            labels=(logits[:, 0] <= 0).astype(jnp.int32),
            q_train=bert.queries(t.model, t.params, other,
                                 jnp.ones_like(other)))


def tiny_editor(ns, tmp, monkeypatch):
  """Editor.from_task(task) returns an Editor on a tiny random model of the
  task (50 steps at most per edit) instead of the trained default base."""
  del ns
  import patcher_jax  # pylint: disable=g-import-not-at-top
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  from helpers import tiny  # pylint: disable=g-import-not-at-top

  def from_task(task, cache_dir=None, **kwargs):
    del cache_dir, kwargs
    return tiny.tiny_editor(task, os.path.join(tmp, f"tiny_{task}"),
                            config=configs.get(task, max_steps=50))

  monkeypatch.setattr(patcher_jax.Editor, "from_task",
                      staticmethod(from_task))


SETUPS = {"tiny_bert": tiny_bert, "tiny_editor": tiny_editor}
BLOCKS = blocks()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("readme"))


def test_the_readme_has_blocks_and_known_setups():
  assert [b for b in BLOCKS if b[0] == "python"]
  for lang, _, setup, line in BLOCKS:
    assert setup is None or setup in SETUPS, f"README.md:{line}: {setup}"
    assert lang in ("python", "bash", "json"), f"README.md:{line}: {lang}"


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS)
                                   if b[0] == "python"])
def test_python_block_runs(index, workdir, monkeypatch):
  _, code, setup, line = BLOCKS[index]
  monkeypatch.chdir(workdir)
  ns = {"__name__": f"readme_block_{line}"}
  if setup:
    SETUPS[setup](ns, workdir, monkeypatch)   # undone after the block
  exec(compile(code, f"README.md:{line}", "exec"), ns)  # pylint: disable=exec-used


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS)
                                   if b[0] == "json"])
def test_json_block_parses(index):
  import json  # pylint: disable=g-import-not-at-top
  json.loads(BLOCKS[index][1])


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS)
                                   if b[0] == "bash"])
def test_bash_block_parses_and_commands_answer_help(index):
  _, code, _, line = BLOCKS[index]
  subprocess.run(["bash", "-n"], input=code, text=True, check=True)
  for cmd in re.findall(r"python -m patcher_jax (\w+)", code):
    if cmd == "split" and importlib.util.find_spec(
        "patcher_jax.data.split_cli") is None:
      continue            # written by another module's owner; not here yet
    out = subprocess.run([sys.executable, "-m", "patcher_jax", cmd, "--help"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"README.md:{line}: {cmd}: {out.stderr}"
