"""The Editor on tiny random models: edit / predict / revert, banks saved
and loaded exactly, a different base refused; revert over random banks."""
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import api, configs
from patcher_jax import patch as patch_lib
from patcher_jax.data import load_benchmark
from helpers import tiny


def _fever_requests(ed, n=3):
  """n tiny-FEVER claims with the label the model does not give."""
  claims = [r.input for r in load_benchmark("fever", scale="tiny").edit[:n]]
  flip = {"SUPPORTS": "REFUTES", "REFUTES": "SUPPORTS"}
  return claims, [flip[p] for p in ed.predict(claims)]


@pytest.fixture(scope="module")
def fever(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("fever_model"))
  # A tiny random BERT's queries all look alike: a neuron that fires on
  # the edit cannot keep every memory row below fast mode's -5 there, so
  # this asks for the reference's bound (-3).
  ed = tiny.tiny_editor("fever", d,
                        config=configs.get("fever", max_steps=1000,
                                           beta=-3.0))
  claims, targets = _fever_requests(ed)
  results = ed.edit(claims, targets, rephrase_prompts=[[c + " Indeed."]
                                                       for c in claims],
                    locality_inputs={"neighborhood": {"prompt": [
                        ["The city of Paris is in France."]] * 3}})
  return ed, d, claims, targets, results


def test_edit_reports_each_request_and_fixes_it(fever):
  ed, _, claims, targets, results = fever
  assert [r["edit_id"] for r in results] == [0, 1, 2]
  # the targets were wrong on the unedited model (later requests may have
  # been fixed by earlier edits: pre is measured just before each edit)
  assert results[0]["pre"]["reliability"] == 0.0
  for r in results:
    assert r["edited"] == (r["pre"]["reliability"] == 0.0
                           and r["neurons"] > 0)
    assert set(r["post"]) == {"reliability", "generality", "locality"}
    assert 0.0 <= r["post"]["locality"] <= 1.0
  edited = [r for r in results if r["edited"]]
  assert edited, results
  assert all(r["post"]["reliability"] == 1.0 for r in edited)
  assert int(ed.bank.size) == sum(r["neurons"] for r in results)
  assert ed.predict(claims) != [None] * 3


def test_bad_requests_raise(fever):
  ed = fever[0]
  with pytest.raises(ValueError, match="target_new"):
    ed.edit(["a claim"], ["MAYBE"])
  with pytest.raises(ValueError, match="2 prompts but 1"):
    ed.edit(["a", "b"], ["SUPPORTS"])


def test_save_and_load_restore_exactly(fever, tmp_path):
  ed, model_dir, claims, _, _ = fever
  out = ed.save(str(tmp_path / "bank"))
  assert sorted(os.listdir(out)) == ["bank.json", "bank.safetensors"]
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
  fresh = tiny.tiny_editor("fever", model_dir)
  got = pj.Editor.load(out, base=fresh)
  chex.assert_trees_all_equal(got.bank, ed.bank)
  chex.assert_trees_all_equal(got.memory, ed.memory)
  assert got.edits == ed.edits and got.config == ed.config
  assert got.predict(claims) == ed.predict(claims)
  ed.save(out)                                  # overwriting is atomic too
  assert sorted(os.listdir(tmp_path)) == ["bank"]


def test_load_refuses_another_base(fever, tmp_path):
  ed, _, _, _, _ = fever
  out = ed.save(str(tmp_path / "bank"))
  other_dir = str(tmp_path / "other")
  tiny.save_tiny_model("fever", other_dir, seed=1)
  other = pj.Editor.from_pretrained(
      other_dir, "fever",
      memory=list(load_benchmark("fever", scale="tiny").train)[:8])
  with pytest.raises(api.BaseMismatchError) as e:
    pj.Editor.load(out, base=other)
  assert ed.fingerprint in str(e.value) and other.fingerprint in str(e.value)


def test_revert_removes_exactly_that_edit(fever):
  ed, _, claims, _, results = fever
  kept = [r["edit_id"] for r in results if r["edited"]]
  before = patch_lib.live_neurons(ed.bank)
  ed.revert(kept[0])
  after = patch_lib.live_neurons(ed.bank)
  assert kept[0] not in after["edit_ids"]
  others = before["edit_ids"] != kept[0]
  np.testing.assert_array_equal(after["keys"], before["keys"][others])
  np.testing.assert_array_equal(after["values"], before["values"][others])
  with pytest.raises(KeyError):
    ed.revert(kept[0])


def _random_bank(rng, sizes, dim=8, capacity=32, skip=None):
  """Edits e with sizes[e] random neurons each (edit `skip` never added)."""
  bank = patch_lib.init_bank(capacity, dim)
  for e, n in enumerate(sizes):
    k = jax.random.fold_in(rng, e)
    neurons = patch_lib.Neurons(*(jax.random.normal(jax.random.fold_in(k, j),
                                                     s) for j, s in
                                  enumerate([(4, dim), (4,), (4, dim),
                                             (4, dim)])))
    if e != skip:
      bank = patch_lib.add_neurons(bank, neurons, jnp.arange(4) < n, e)
  return bank


@pytest.mark.parametrize("seed", range(6))
def test_revert_equals_a_bank_that_never_had_the_edit(seed):
  rs = np.random.default_rng(seed)
  sizes = [int(s) for s in rs.integers(1, 5, size=rs.integers(2, 7))]
  drop = int(rs.integers(len(sizes)))
  rng = jax.random.PRNGKey(seed)
  full = _random_bank(rng, sizes)
  never = _random_bank(rng, sizes, skip=drop)
  reverted = patch_lib.compact(patch_lib.drop_edit(full, drop))
  chex.assert_trees_all_equal(reverted, never)
  x = jax.random.normal(jax.random.PRNGKey(99), (16, 8))
  chex.assert_trees_all_equal(patch_lib.bank_output(reverted, x),
                              patch_lib.bank_output(never, x))


def test_zsre_editor_edits_and_answers(tmp_path):
  ed = tiny.tiny_editor("zsre", str(tmp_path / "m"),
                        config=configs.get("zsre", max_steps=50))
  rec = load_benchmark("zsre", scale="tiny").edit[0]
  (r,) = ed.edit([rec.input], [rec.answers[0]])
  assert r["pre"]["reliability"] == 0.0 and r["steps"] <= 50
  (answer,) = ed.predict([rec.input])
  assert isinstance(answer, str)
  got = pj.Editor.load(ed.save(str(tmp_path / "bank")))   # base from source
  assert got.predict([rec.input]) == [answer]
  chex.assert_trees_all_equal(got.bank, ed.bank)
