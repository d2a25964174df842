"""Unlabeled text as memory: inputs the new neurons must stay silent on.

A memory row needs an input only, never its answer: a seq2seq runtime
teacher-forces the unedited model's own greedy answer (what locality asks
to keep), a classifier reads the input's query. So any text a user has (or
text the project ships) can protect locality when labeled data is scarce.

A memory-text file holds one input per line (UTF-8; blank lines and lines
starting with '#' are skipped; surrounding whitespace is stripped).

  texts, lines = memory_text.read_inputs("questions.txt")
  memory_text.check_lengths(texts, lines, tokenizer, 32, "questions.txt")
"""
from typing import List, Sequence, Tuple

from patcher_jax.data.errors import DataError


def read_inputs(path: str) -> Tuple[List[str], List[int]]:
  """The inputs of a memory-text file and the 1-based line of each.

  Args:
    path: the file (one input per line).

  Returns:
    (texts, lines).

  Raises:
    DataError: the file is missing, not UTF-8 (names the line), or holds no
      input.

  Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "q.txt")
    >>> _ = open(p, "w").write("What is the capital of Peru?\\n\\n# note\\n"
    ...                        "  Who wrote it?  \\n")
    >>> read_inputs(p)
    (['What is the capital of Peru?', 'Who wrote it?'], [1, 4])
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(path, f"cannot read the memory-text file ({e.strerror})"
                    ) from None
  texts, lines = [], []
  for number, line in enumerate(raw.splitlines(), start=1):
    try:
      text = line.decode("utf-8-sig" if number == 1 else "utf-8").strip()
    except UnicodeDecodeError:
      raise DataError(path, "not valid UTF-8", line=number) from None
    if text and not text.startswith("#"):
      texts.append(text)
      lines.append(number)
  if not texts:
    raise DataError(path, "no input in the memory-text file (one a line)")
  return texts, lines


def check_lengths(texts: Sequence[str], lines: Sequence[int], tokenizer,
                  max_len: int, source: str, truncate: bool = False) -> None:
  """Raises DataError naming the file and line of the first input longer
  than `max_len` tokens (unless `truncate`: the tokenizer then cuts it).

  Example:
    >>> check_lengths(["a b", "a b c d"], [1, 2], lambda t: [len(s.split())
    ...               for s in t], 3, "q.txt")
    Traceback (most recent call last):
    ...
    patcher_jax.data.errors.DataError: q.txt:2: input of record \
'memory_text:2' is 4 tokens, longer than the 3 the model takes; ...
  """
  from patcher_jax.data import lengths  # pylint: disable=g-import-not-at-top
  from patcher_jax.data.records import Record  # pylint: disable=g-import-not-at-top
  records = [Record(f"memory_text:{n}", t, ()) for t, n in zip(texts, lines)]
  lengths.check_lengths(records, tokenizer, max_len, truncate=truncate,
                        source=source, lines=list(lines), fields=("input",))
