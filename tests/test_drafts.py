"""Draft checks: an answer read off a certified draft equals real greedy
decoding of the patched model (tiny random BART, real tokenizer)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import drafts as drafts_lib
from patcher_jax import stream

from helpers import tiny


@pytest.fixture(scope="module")
def runtime():
  return tiny.seq2seq_runtime()


def _random_bank(runtime, n, scale, seed, quantile=0.97):
  """n neurons on random directions, each firing sharply on the top 3% of
  the test drafts' queries (the queries of a tiny random model are nearly
  parallel, so keys on a query would fire everywhere): with large values
  they change some answers and leave the rest exactly alone."""
  k_dir, k_val = jax.random.split(jax.random.PRNGKey(seed))
  d = runtime.base_drafts["test"]
  dirs = np.asarray(jax.random.normal(k_dir, (n, runtime.dim)))
  proj = d.queries[d.mask] @ dirs.T
  sharp = 1e3 / proj.std(0)
  keys = jnp.asarray(dirs * sharp[:, None])
  biases = jnp.asarray(-sharp * np.quantile(proj, quantile, axis=0))
  values = scale * jax.random.normal(k_val, (n, runtime.dim))
  neurons = pj.Neurons(keys, biases, values, jnp.ones_like(values))
  return pj.add_neurons(pj.init_bank(64, runtime.dim), neurons,
                        jnp.ones(n, bool), jnp.int32(0))


def _by_decoding(runtime, bank, records):
  return runtime._correct(bank, records)  # pylint: disable=protected-access


def test_empty_bank_certifies_the_base_drafts(runtime):
  bank = pj.init_bank(8, runtime.dim)
  d = runtime.base_drafts["test"]
  got = drafts_lib.check(runtime.tail, bank, d, runtime._max_new_tokens)  # pylint: disable=protected-access
  assert (got >= 0).mean() > 0.8     # ties below the margin may decode
  np.testing.assert_array_equal(got[got >= 0], d.correct[got >= 0])


@pytest.mark.parametrize("scale,seed", [(3.0, 1), (30.0, 2)])
def test_drafted_answers_equal_decoded_answers(runtime, scale, seed):
  # Records whose gold answer is the unedited model's own output: a random
  # model is otherwise always wrong, and the check could not tell anything.
  empty = pj.init_bank(8, runtime.dim)
  records = list(runtime.test) + list(runtime.train_sub)
  own = [r._replace(answers=(a,)) for r, a in zip(
      records, runtime.generate(empty, [r.input for r in records], 16))]
  base = [runtime.base_drafts[s] for s in ("test", "train")]
  drafts = drafts_lib.Drafts(*(np.concatenate(a) for a in zip(*base)))
  drafts = drafts._replace(correct=np.ones(len(own), bool))
  bank = _random_bank(runtime, 2, scale, seed)
  before = dict(runtime.counts)
  drafted = runtime._correct(bank, own, (drafts,))  # pylint: disable=protected-access
  decoded = _by_decoding(runtime, bank, own)
  np.testing.assert_array_equal(drafted, decoded)
  assert runtime.counts["certified"] > before["certified"]
  assert runtime.counts["decoded"] > before["decoded"] + len(own)
  assert not decoded.all()          # the bank changed some answers


def test_after_edit_by_drafts_equals_decoding(runtime):
  cfg = stream.StreamConfig(num_edits=3, seed=0, checkpoint_every=0)
  # no memory loss: with it no edit of the tiny random model is fixed, and
  # the bank would stay empty
  out = stream.run(runtime, pj.fast_config(mem_weight=0.0, max_steps=400),
                   cfg, log=lambda *_: None)
  bank = jax.tree.map(lambda a: a[0], out["state"].bank)
  assert int(bank.size) > 0
  for rec in out["records"]:
    r = runtime.stream[rec["stream_index"]]
    questions = [r.input] + list(r.rephrases)[:5]
    right = runtime._correct(bank, [r] * len(questions), (),  # pylint: disable=protected-access
                             questions)
    assert runtime.after_edit(bank, rec["stream_index"]) == (
        bool(right[0]), int(right[1:].sum()), len(questions) - 1)


def test_a_wrong_draft_token_is_never_certified(runtime):
  # The base drafts certify on the unedited model (the gold ones never do on
  # a random model); one wrong token anywhere must leave a draft unknown,
  # through the exact check and the cheap one (with the changed tokens'
  # own leads).
  from patcher_jax.adapters import bart
  bank = pj.init_bank(8, runtime.dim)
  d = runtime.base_drafts["test"]
  base = drafts_lib.check(runtime.tail, bank, d, runtime._max_new_tokens)  # pylint: disable=protected-access
  assert np.sum(base >= 0) >= 0.8 * len(base)
  rng = np.random.default_rng(0)
  n, t = d.tokens.shape
  where = rng.integers(0, d.mask.sum(-1))       # one position per draft
  tokens = d.tokens.copy()
  tokens[np.arange(n), where] = (tokens[np.arange(n), where] + 1) % 1000
  lead, spread = drafts_lib.leads(runtime.tail, d.queries, tokens, d.mask)
  flipped = d._replace(tokens=tokens, lead=lead, spread=spread)
  for head_norm in (np.inf, bart.head_norm(runtime.tail)):
    got = drafts_lib.check(runtime.tail, bank, flipped,
                           runtime._max_new_tokens, head_norm)  # pylint: disable=protected-access
    np.testing.assert_array_equal(got, -1)


@pytest.mark.parametrize("scale", [0.0, 0.3, 3.0, 30.0])
def test_the_cheap_certificate_is_sound(runtime, scale):
  """Wherever the bound says a draft holds, the exact check agrees."""
  from patcher_jax.adapters import bart
  d = runtime.base_drafts["test"]
  bank = _random_bank(runtime, 2, scale, 3)
  args = [jnp.asarray(a) for a in (d.queries, d.lead, d.spread, d.mask)]
  bound = np.asarray(drafts_lib.bound_holds(
      runtime.tail, bank, *args, jnp.float32(bart.head_norm(runtime.tail)),
      margin=drafts_lib.MARGIN))
  exact = np.asarray(drafts_lib.holds(
      runtime.tail, bank, jnp.asarray(d.queries), jnp.asarray(d.tokens),
      jnp.asarray(d.mask), margin=drafts_lib.MARGIN))
  assert not np.any(bound & ~exact)
  if scale == 0.0:
    np.testing.assert_array_equal(bound, exact)   # nothing moved


def test_drafts_that_end_in_eos_are_checked_through_it():
  """The base drafts of a model that stops at once are just eos: read off
  such a draft, an answer is right only if the patched model still stops
  there (the eos position is checked like any other)."""
  rt = tiny.seq2seq_runtime(num_stream=4, eos_bias=0.2)
  eos = rt.model.config.eos_token_id
  d = rt.base_drafts["test"]
  lengths = d.mask.sum(-1)
  assert np.all(lengths == 1) and np.all(d.tokens[:, 0] == eos)
  empty = pj.init_bank(8, rt.dim)
  np.testing.assert_array_equal(
      drafts_lib.check(rt.tail, empty, d, rt._max_new_tokens), d.correct)  # pylint: disable=protected-access
  records = list(rt.test)
  for seed in (1, 2):
    # fires on about half of the first-position queries, moving the eos
    bank = _random_bank(rt, 2, 30.0, seed, quantile=0.5)
    drafted = rt._correct(bank, records, (d,), texts=True)[1]  # pylint: disable=protected-access
    decoded = rt._correct(bank, records, texts=True)[1]  # pylint: disable=protected-access
    assert drafted == decoded
    assert 0 < sum(a != "" for a in decoded) < len(decoded)


def test_base_drafts_from_decoding_equal_teacher_forcing(runtime):
  # `_base_drafts` reads each step's query and lead off the greedy decoding
  # itself; a second, teacher-forced pass along the answer must agree.
  from patcher_jax.models import qa_format
  records = list(runtime.test)[:24]
  d = runtime._base_drafts(records)  # pylint: disable=protected-access
  empty = pj.init_bank(8, runtime.dim)
  ids = runtime._generate_ids(empty, [r.input for r in records], 8)  # pylint: disable=protected-access
  np.testing.assert_array_equal(d.tokens, ids)
  enc = qa_format.encode_sources(runtime.tokenizer,
                                 [r.input for r in records],
                                 runtime.max_src_len)
  start = np.full((len(records), 1),
                  runtime.model.config.decoder_start_token_id, np.int32)
  enc["decoder_input_ids"] = np.concatenate([start, ids[:, :-1]], 1)
  enc["decoder_attention_mask"] = d.mask.astype(np.int32)
  queries = runtime._teacher_forced(enc, 8)  # pylint: disable=protected-access
  lead, spread = drafts_lib.leads(runtime.tail, queries, ids, d.mask)
  m = d.mask
  assert m.sum() > len(records)
  np.testing.assert_allclose(d.queries[m], queries[m], atol=1e-4)
  np.testing.assert_allclose(d.lead[m], lead[m], atol=1e-3)
  np.testing.assert_allclose(d.spread[m], spread[m], rtol=1e-4)
  assert np.isneginf(d.lead[~m]).all()


def test_packed_drafts_unpack_to_the_same_checks(runtime):
  d = runtime.base_drafts["test"]
  packed = drafts_lib.pack([d.take(np.arange(5)), d.take(np.arange(5, 12))])
  assert packed["queries"].shape == (d.mask[:12].sum(), runtime.dim)
  part = drafts_lib.unpack(packed, 3, 9)
  want = d.take(np.arange(3, 9))
  for field in drafts_lib.Drafts._fields[1:]:
    np.testing.assert_array_equal(getattr(part, field), getattr(want, field))
  np.testing.assert_array_equal(part.queries[part.mask],
                                want.queries[want.mask])
  assert not part.queries[~part.mask].any()
  # zeros off the drafts' positions change no check
  bank = _random_bank(runtime, 2, 30.0, 2)
  np.testing.assert_array_equal(
      drafts_lib.check(runtime.tail, bank, part, runtime._max_new_tokens),  # pylint: disable=protected-access
      drafts_lib.check(runtime.tail, bank, want, runtime._max_new_tokens))  # pylint: disable=protected-access


def _likely_edit(runtime):
  wrong = ~runtime.base_drafts["stream"].correct
  return next(k for k, r in enumerate(runtime.stream)
              if len(r.rephrases) > 1 and wrong[k])


def test_planned_rephrase_drafts_equal_the_ones_computed_ahead(runtime):
  # A stream's likely edits get their rephrase drafts from the runtime's
  # cache (`plan_edits`); any other record from `prefetch`: the two agree.
  i = _likely_edit(runtime)
  runtime.plan_edits([np.array([i])], 1)
  assert runtime._cached_rephrases(i)  # pylint: disable=protected-access
  cached = runtime._rephrase_drafts(i, pop=False)  # pylint: disable=protected-access
  store = runtime._reph_store  # pylint: disable=protected-access
  runtime._reph_store = (np.full(len(runtime.stream), -1),) + store[1:]  # pylint: disable=protected-access
  try:
    assert not runtime._cached_rephrases(i)  # pylint: disable=protected-access
    ahead = runtime._rephrase_drafts(i, pop=True)  # pylint: disable=protected-access
  finally:
    runtime._reph_store = store  # pylint: disable=protected-access
  assert len(cached[0].correct) == min(len(runtime.stream[i].rephrases), 5)
  for got, want in zip(cached, ahead):
    for field in ("tokens", "mask", "correct"):
      np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    np.testing.assert_allclose(got.queries[got.mask], want.queries[want.mask],
                               atol=1e-5)


def test_a_plan_drafts_the_first_mistakes_of_each_order(runtime):
  from patcher_jax.tasks import seq2seq
  wrong = ~runtime.base_drafts["stream"].correct
  n = len(runtime.stream)
  orders = [np.arange(n), np.arange(n)[::-1]]
  want = int(np.ceil(seq2seq.PLAN_SLACK * 2)) + 8
  assert 0 < want < wrong.sum()     # the plan must leave some out
  runtime.plan_edits(orders, 2)
  expect = set(np.flatnonzero(wrong)[:want]) | set(
      np.flatnonzero(wrong)[::-1][:want])
  drafted = {i for i in range(n) if runtime._cached_rephrases(i)}  # pylint: disable=protected-access
  assert drafted == expect
  store = runtime._reph_store  # pylint: disable=protected-access
  runtime.plan_edits(orders, 2)     # the same plan again: nothing redone
  assert runtime._reph_store is store  # pylint: disable=protected-access


def test_prefetch_leaves_out_what_the_unedited_model_gets_right(runtime):
  runtime._reph_drafts.clear()  # earlier tests' blocks  # pylint: disable=protected-access
  # the tiny model gets every record wrong: say it gets the even ones right
  base = runtime.base_drafts["stream"]
  right = np.arange(len(runtime.stream)) % 2 == 0
  runtime.base_drafts["stream"] = base._replace(correct=right)
  runtime.plan_edits([np.zeros(0, int)], 0)     # nothing cached
  try:
    idxs = np.arange(len(runtime.stream))
    runtime.prefetch(idxs)
    started = set(runtime._reph_drafts)  # pylint: disable=protected-access
    assert started == {int(i) for i in idxs if not right[i]}
    # an edit of a record it got right still gets its drafts
    k = _likely_edit(runtime) // 2 * 2
    assert right[k] and len(runtime.stream[k].rephrases)
    got = runtime._rephrase_drafts(k, pop=True)  # pylint: disable=protected-access
    assert len(got[0].correct) == min(len(runtime.stream[k].rephrases), 5)
  finally:
    runtime.base_drafts["stream"] = base
    runtime._reph_drafts.clear()  # pylint: disable=protected-access


def test_doctests():
  import doctest
  assert doctest.testmod(drafts_lib).failed == 0
