"""Is every text short enough for the model? Say so instead of truncating.

The reference tokenizes with `max_length=32, truncation=True`, which silently
cuts long claims and questions. Here an over-long input is an error naming the
file, the line (or record index) and the record id, unless the caller opts in
to truncation (then the texts are only counted, and the model's tokenizer cuts
them as the reference does).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

from absl import logging

from patcher_jax.data.errors import DataError
from patcher_jax.data.records import Record

FIELDS = ("input", "rephrases", "answers")


class LengthReport(NamedTuple):
  texts: int        # how many texts were measured
  too_long: int     # how many exceed max_len (only non-zero with truncate=True)
  longest: int      # the longest, in tokens (special tokens included)


def token_lengths(tokenizer, texts: Sequence[str]) -> List[int]:
  """Token counts with special tokens, as the model sees them.

  `tokenizer` is a Hugging Face tokenizer (called on a batch) or any callable
  mapping a list of strings to a list of lengths.
  """
  if not texts:
    return []
  if hasattr(tokenizer, "model_input_names"):   # Hugging Face: lengths only
    out = tokenizer(list(texts), return_attention_mask=False,
                    return_token_type_ids=False, return_length=True)
    return [int(n) for n in out["length"]]
  out = tokenizer(list(texts))
  if isinstance(out, (list, tuple)):
    return [int(n) for n in out]
  return [len(ids) for ids in out["input_ids"]]


def check_lengths(records: Sequence[Record], tokenizer, max_len: int, *,
                  truncate: bool = False, source: str = "<records>",
                  lines: Optional[Sequence[int]] = None,
                  indices: Optional[Sequence[int]] = None,
                  fields: Tuple[str, ...] = ("input", "rephrases"),
                  ) -> LengthReport:
  """Raises DataError on the first text longer than `max_len` tokens.

  Args:
    records: the records to check.
    tokenizer: see `token_lengths`.
    max_len: the model's maximum length in tokens, special tokens included.
    truncate: if True, over-long texts are counted and logged, not an error.
    source: the file the records came from (named in the error).
    lines: the 1-based line of each record in `source`, if known.
    indices: else, each record's index in `source` (for JSON-list files);
      with neither, the error names the record's position in `records`.
    fields: which texts to check: "input", "rephrases" and/or "answers".
  """
  for f in fields:
    if f not in FIELDS:
      raise ValueError(f"fields must be among {FIELDS}, got {f!r}")
  owners, texts = [], []
  for i, rec in enumerate(records):
    if "input" in fields:
      owners.append((i, "input"))
      texts.append(rec.input)
    if "rephrases" in fields:
      for k, r in enumerate(rec.rephrases):
        owners.append((i, f"rephrases[{k}]"))
        texts.append(r)
    if "answers" in fields:
      for k, a in enumerate(rec.answers):
        owners.append((i, f"answers[{k}]"))
        texts.append(a)
  lengths = token_lengths(tokenizer, texts)
  too_long = 0
  for (i, what), n in zip(owners, lengths):
    if n <= max_len:
      continue
    if not truncate:
      if lines is not None:
        where = {"line": lines[i]}
      else:
        where = {"record": indices[i] if indices is not None else i}
      raise DataError(
          source,
          f"{what} of record {records[i].id!r} is {n} tokens, longer than the "
          f"{max_len} the model takes; shorten it, or allow truncation "
          f"(truncate=True / --truncate) to cut it as the reference does",
          **where)
    too_long += 1
  if too_long:
    logging.warning("data: %s: %d of %d texts are longer than %d tokens and "
                    "will be truncated", source, too_long, len(texts), max_len)
  return LengthReport(texts=len(texts), too_long=too_long,
                      longest=max(lengths, default=0))
