"""The causal-LM facts runtime on a tiny random Llama: every answer it reads
off cached teacher-forced queries equals real greedy decoding of the patched
model, for banks that change answers; mistakes, edits and metrics run."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.tiny_llama import tiny_llama
from patcher_jax import patch as patch_lib
from patcher_jax.adapters import llama
from patcher_jax.data import Record
from patcher_jax.tasks import lm_facts


class CharTokenizer:
  """One token per character but spaces (ids 3..60), enough for the
  runtime."""

  def __call__(self, text, add_special_tokens=False):
    del add_special_tokens
    return {"input_ids": [3 + ord(c) % 58 for c in text if c != " "]}

  def decode(self, ids):
    return "".join(chr(55 + int(t)) for t in ids)


def _records(rng, n, prefix):
  words = ["ab", "cd", "ef", "gh", "ij"]
  out = []
  for i in range(n):
    subj = "".join(rng.choice(list("klmnopqrst"), 3))
    ans = str(rng.choice(words)) + str(rng.choice(words))[:rng.integers(1, 3)]
    out.append(Record(f"{prefix}{i}", f"the {subj} is", (ans,),
                      (f"a {subj} is", f"{subj} has")))
  return out


def _own_answers(model, params, records, k=3):
  """Records whose answer is (every other one) the unedited model's greedy
  continuation where the tokenizer can spell it (right before any edit, so
  a bank can make them wrong)."""
  enc = lm_facts.encode(CharTokenizer(), [r.input for r in records],
                        ["x"] * len(records), k)
  lens = enc["prompt_len"]
  ids = np.zeros((len(records), int(lens.max())), np.int32)
  for i, r in enumerate(records):
    ids[i, :lens[i]] = CharTokenizer()(r.input)["input_ids"]
  got = np.asarray(llama.greedy_fn(model, k)(
      params, patch_lib.init_bank(8, 32), llama.identity_map(32), ids, lens))
  out = []
  for i, (r, toks) in enumerate(zip(records, got)):
    if i % 2 == 0 and (toks >= 3).all():   # id t <- chr(55 + t): ord % 58 == t - 3
      r = r._replace(answers=("".join(chr(55 + int(t)) for t in toks),))
    out.append(r)
  return out


@pytest.fixture(scope="module")
def runtime():
  model, params, _ = tiny_llama()
  rng = np.random.default_rng(0)
  stream, train, test = (_own_answers(model, params, _records(rng, n, p))
                         for n, p in ((12, "s"), (8, "t"), (8, "x")))
  return lm_facts.LMFactsRuntime(
      model, params, CharTokenizer(), stream, train, test,
      _records(rng, 16, "m"), _records(rng, 4, "v"), max_answer_tokens=4,
      batch_size=8, log=None)


def _decoded(rt, bank, split, own=False):
  """Real greedy decoding of every record of a split: right (`own`: the
  unedited model's continuation, as far as its draft goes) or not."""
  enc = rt.enc[split]
  tokens, mask = ((rt.base[split].tokens, rt.base[split].mask) if own
                  else (enc["ans"], enc["ans_mask"]))
  return rt._decode_correct(bank, enc, np.arange(len(enc["ans"])), tokens,  # pylint: disable=protected-access
                            mask)


def _banks(rt):
  rng = np.random.default_rng(3)
  q = rt.q_stream[rt.enc["stream"]["ans_mask"]]
  for scale in (0.0, 2.0, 8.0):
    pick = rng.choice(len(q), 4, replace=False)
    neurons = patch_lib.init_neurons(jnp.asarray(q[pick]),
                                     jax.random.PRNGKey(int(scale)))
    neurons = neurons._replace(values=neurons.values * scale)
    yield patch_lib.add_neurons(patch_lib.init_bank(8, rt.dim), neurons,
                                jnp.ones(4, bool), 0)


def test_checks_equal_real_greedy_decoding(runtime):
  rt = runtime
  changed = 0
  base = _decoded(rt, patch_lib.init_bank(8, rt.dim), "stream")
  for bank in _banks(rt):
    for split in ("stream", "train", "test", "reph"):
      enc = rt.enc[split]
      rows = np.arange(len(enc["ans"]))
      with_base = rt._correct(bank, rt.queries[split], enc, rows,  # pylint: disable=protected-access
                              rt.base[split])
      settled = lm_facts.settle(rt.tail, bank, rt.queries[split], enc["ans"],
                                enc["ans_mask"])
      truth = _decoded(rt, bank, split)
      np.testing.assert_array_equal(with_base, truth)
      np.testing.assert_array_equal(settled[settled >= 0],
                                    truth[settled >= 0])
    changed += int((_decoded(rt, bank, "stream") != base).sum())
  assert base.any()        # some answers right before the banks
  assert changed > 0       # some bank changed some answers
  assert rt.counts["settled"] > 0


def test_locality_is_keeping_the_unedited_continuation(runtime):
  """split_correct asks for the unedited model's own answer: all of it with
  an empty bank, and exactly what real decoding keeps with banks."""
  rt = runtime
  empty = patch_lib.init_bank(8, rt.dim)
  for split in ("train", "test"):
    assert rt.split_correct(empty, split).all()
    assert rt.accuracy(empty, split) == 1.0
  kept = []
  for bank in _banks(rt):
    for split in ("train", "test"):
      got = rt.split_correct(bank, split)
      np.testing.assert_array_equal(got, _decoded(rt, bank, split, own=True))
      kept.append(got)
  assert not np.concatenate(kept).all()    # some bank changed some output


def test_base_drafts_are_the_unedited_answers(runtime):
  rt = runtime
  truth = _decoded(rt, patch_lib.init_bank(8, rt.dim), "test")
  np.testing.assert_array_equal(rt.base["test"].correct, truth)


def test_edit_fixes_a_mistake(runtime):
  """Some mistake of the stream gets fixed (a random tiny model cannot make
  every token the argmax), and the runtime then reads it as right."""
  import patcher_jax as pj  # pylint: disable=g-import-not-at-top
  from patcher_jax import memory as memory_lib  # pylint: disable=g-import-not-at-top
  rt = runtime
  bank = patch_lib.init_bank(16, rt.dim)
  wrong = np.flatnonzero(rt.mistakes(bank, np.arange(len(rt.stream))))
  assert len(wrong)
  mem = memory_lib.init_memory(rt.memory0, 1024)
  val = memory_lib.init_memory(rt.val_memory0, 1024)
  fixed = 0
  for i in wrong[:4]:
    task = rt.edit_task(bank, int(i), jax.random.PRNGKey(0), 0, 4)
    new, stats = pj.edit(rt.tail, bank, task, mem, val,
                         jax.random.PRNGKey(1), 0, pj.fast_config(lr=0.05))
    ok, r_ok, r_n = rt.after_edit(new, int(i))
    assert r_n == 2 and 0 <= r_ok <= 2
    # the cached rephrase checks are real decoding of the rephrases
    rows = rt.reph_rows[int(i)]
    enc = {k: v[rows] for k, v in rt.enc["reph"].items()}
    assert r_ok == int(rt._decode_correct(  # pylint: disable=protected-access
        new, enc, np.arange(2), enc["ans"], enc["ans_mask"]).sum())
    assert ok == (not rt.mistakes(new, [int(i)])[0])
    if bool(stats.success):
      assert ok
      fixed += 1
  assert fixed
  assert rt.memory_rows(int(wrong[0])).shape == (
      int(rt.enc["stream"]["ans_mask"][wrong[0]].sum()), rt.dim)
  assert 0.0 <= rt.accuracy(bank, "test") <= 1.0


def test_stream_runs_and_records_what_each_edit_did(runtime):
  """stream.run drives the runtime (every call the stream makes exists);
  a record's answers and GR_before agree with the runtime's own checks."""
  from patcher_jax import configs, stream  # pylint: disable=g-import-not-at-top
  rt = runtime
  cfg = stream.StreamConfig(num_edits=2, max_neurons=4, checkpoint_every=0,
                            curve_every=1)
  out = stream.run(rt, configs.get("zsre", "fast", lr=0.05, max_steps=300),
                   cfg, log=lambda *_: None)
  recs = out["records"]
  assert recs, "the tiny stream made no edit"
  for r in recs:
    assert r["target"] == rt.stream[r["stream_index"]].answers[0]
    assert r["answer_before"] != r["target"]     # only mistakes are edited
    assert (r["answer_after"] == r["target"]) == r["success"]
    assert 0 <= r["rephrase_correct_before"] <= r["rephrase_total"]
  summary = stream.summarize(out)["summary"]
  assert summary["TrainR_flips"]["total"] == len(rt.train_sub)


def test_pool_hides_prompt_words_only(runtime):
  """The edit's pool: with nothing hidden every copy is the clean query;
  with words hidden the copies differ, and only at answer positions."""
  rt = runtime
  i = int(np.flatnonzero(rt.mistakes(patch_lib.init_bank(8, rt.dim),
                                     np.arange(len(rt.stream))))[0])
  bank = patch_lib.init_bank(8, rt.dim)
  rng = jax.random.PRNGKey(4)
  try:
    rt.pool_word_drop = 0.0
    clean = rt.edit_task(bank, i, rng, noise_samples=3)
    np.testing.assert_allclose(
        clean.noisy_queries, np.broadcast_to(clean.queries,
                                             clean.noisy_queries.shape),
        atol=1e-4)
    rt.pool_word_drop = 0.9
    rt.prefetch_pool([i], rng, 3)          # drawn ahead: the same arrays
    noisy = rt.edit_task(bank, i, rng, noise_samples=3)
    again = rt.edit_task(bank, i, rng, noise_samples=3)
  finally:
    rt.pool_word_drop = 0.25
  chex.assert_trees_all_close(noisy.noisy_queries, again.noisy_queries)
  m = np.asarray(noisy.target_mask)
  assert np.abs(np.asarray(noisy.noisy_queries - noisy.queries)[:, m]).max() > 1e-3
  assert not np.asarray(noisy.noisy_queries)[:, ~m].any()


class DecodingTokenizer(CharTokenizer):
  """... with `decode`'s skip_special_tokens (predict passes it)."""

  def decode(self, ids, skip_special_tokens=False):
    del skip_special_tokens
    return super().decode(ids)


def _request_runtime(rt):
  """A runtime on rt's model over no stream (as the Editor builds one)."""
  return lm_facts.LMFactsRuntime(
      rt.model, rt.params, DecodingTokenizer(), [], [], [],
      _records(np.random.default_rng(0), 16, "m"),
      _records(np.random.default_rng(1), 4, "v"), max_answer_tokens=4,
      batch_size=8, log=None)


def test_requests_join_an_empty_stream(runtime):
  """The Editor's path: a runtime over no stream takes records later; their
  checks are real decoding, and predict is the greedy continuation."""
  rt = runtime
  empty_rt = _request_runtime(rt)
  idx = empty_rt.add_to_stream(rt.stream[:3])
  idx2 = empty_rt.add_to_stream(rt.stream[3:5])
  np.testing.assert_array_equal(np.concatenate([idx, idx2]), np.arange(5))
  bank = next(iter(_banks(rt)))
  for i in range(5):
    ok, r_ok, r_n = empty_rt.after_edit(bank, i)
    ok0, r_ok0, r_n0 = rt.after_edit(bank, i)
    assert (ok, r_ok, r_n) == (ok0, r_ok0, r_n0)
  right = np.flatnonzero(rt.base["stream"].correct[:5])
  assert len(right)
  got = empty_rt.predict(patch_lib.init_bank(8, rt.dim),
                         [rt.stream[j].input for j in right])
  for j, text in zip(right, got):
    assert len(text) == 4 and text.startswith(rt.stream[j].answers[0])


def test_editor_makes_target_new_edits_on_a_causal_lm(runtime, tmp_path):
  """The Editor on a (tiny) causal LM: a counterfactual target_new edit is
  reliable when the editor says so, predict shows it, a saved bank loads
  back, revert undoes it."""
  import patcher_jax as pj  # pylint: disable=g-import-not-at-top
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  from patcher_jax.models.smollm2 import LoadedLM  # pylint: disable=g-import-not-at-top
  rt = runtime
  fresh = _request_runtime(rt)
  base = LoadedLM(rt.model, rt.params, fresh.tokenizer, rt.model.config)
  ed = pj.Editor("lm_complete", base, fresh,
                 config=configs.get("lm_complete", max_steps=300))
  prompt = rt.stream[1].input
  before = ed.predict([prompt])[0]
  target = "".join(chr(55 + 3 + (ord(c) % 58 + 7) % 58) for c in "zq")
  out = ed.edit(prompts=[prompt], target_new=[target],
                rephrase_prompts=[["a " + prompt]],
                locality_inputs={"x": {"prompt": [rt.stream[2].input]}})[0]
  assert out["pre"]["reliability"] == 0.0 and out["edited"]
  assert out["post"]["reliability"] == 1.0
  assert ed.predict([prompt])[0].startswith(target)
  assert out["post"]["locality"] in (0.0, 1.0)
  ed.save(str(tmp_path / "bank"))
  again = pj.Editor.load(str(tmp_path / "bank"), base=pj.Editor(
      "lm_complete", base, fresh, config=ed.config))
  assert again.predict([prompt]) == ed.predict([prompt])
  ed.revert(out["edit_id"])
  assert ed.predict([prompt])[0] == before
  with pytest.raises(NotImplementedError, match="save"):
    ed.export("/nonexistent")


def test_cached_queries_and_drafts_read_back(runtime, tmp_path):
  """A second runtime over the same records reads queries and the unedited
  answers from the cache: equal arrays, equal checks."""
  rt = runtime
  def build():
    return lm_facts.LMFactsRuntime(
        rt.model, rt.params, CharTokenizer(), rt.stream[:4], rt.train_sub[:3],
        rt.test[:3], _records(np.random.default_rng(0), 16, "m"),
        _records(np.random.default_rng(1), 4, "v"), max_answer_tokens=4,
        batch_size=8, cache_dir=str(tmp_path), log=None)
  first, second = build(), build()
  assert len(list(tmp_path.glob("*.npz"))) == 2    # queries, drafts
  for k in first.base:
    chex.assert_trees_all_equal(tuple(first.base[k]), tuple(second.base[k]))
  bank = next(iter(_banks(rt)))
  np.testing.assert_array_equal(first.split_correct(bank, "train"),
                                second.split_correct(bank, "train"))
