"""Decoding a data file's bytes into records, each with the line it starts on.

Two containers hold the public benchmark files: JSON lines (KILT, FEVER 1.0)
and one JSON list (MEND and EasyEdit zsRE). Both are decoded here into
`(line, index, object)` items, so every later error can name the file, the
line and, for a list, the record's index.
"""
import json
from typing import Iterator, List, NamedTuple

from patcher_jax.data.errors import DataError
from patcher_jax.data.validate import type_name

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = " \t\r\n"


class Item(NamedTuple):
  line: int    # 1-based line the record starts on
  index: int   # 0-based position among the file's records
  value: object


def decode_text(data: bytes, source: str) -> str:
  """UTF-8 text without a BOM; a DataError names the line of a bad byte."""
  if data.startswith(_BOM):
    data = data[len(_BOM):]
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    col = e.start - (data.rfind(b"\n", 0, e.start) + 1)
    raise DataError(source, f"invalid UTF-8 at byte {col} of the line",
                    line=line) from None


def first_char(text: str) -> str:
  """The first non-whitespace character ('' for a blank file)."""
  stripped = text.lstrip(_WHITESPACE)
  return stripped[:1]


def jsonl_items(text: str, source: str, blank_lines: List[int]) -> Iterator[Item]:
  """One JSON value per line; blank lines are skipped (their numbers are
  appended to `blank_lines`)."""
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()   # the final newline ends the last line
  index = 0
  for line_no, line in enumerate(lines, start=1):
    if not line.strip():
      blank_lines.append(line_no)
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(source, f"not JSON: {e.msg} (column {e.colno})",
                      line=line_no) from None
    yield Item(line_no, index, value)
    index += 1


def list_items(text: str, source: str) -> Iterator[Item]:
  """The elements of one JSON list, each with the line it starts on."""
  decoder = json.JSONDecoder()
  lines = _LineCounter(text)
  pos = _skip(text, 0)
  if text[pos:pos + 1] != "[":
    raise DataError(source, "expected a JSON list of records",
                    line=lines.at(pos))
  pos = _skip(text, pos + 1)
  index = 0
  if text[pos:pos + 1] == "]":
    return
  while True:
    try:
      value, end = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as e:
      raise DataError(source, f"not JSON: {e.msg} (column {e.colno})",
                      line=e.lineno) from None
    yield Item(lines.at(pos), index, value)
    index += 1
    pos = _skip(text, end)
    sep = text[pos:pos + 1]
    if sep == "]":
      break
    if sep != ",":
      raise DataError(source, f"not JSON: expected ',' or ']' after record "
                      f"{index - 1}", line=lines.at(pos))
    pos = _skip(text, pos + 1)
  if _skip(text, pos + 1) != len(text):
    raise DataError(source, "not JSON: extra data after the list",
                    line=lines.at(_skip(text, pos + 1)))


def whole_value_kind(text: str) -> str:
  """The JSON type of the whole text if it is one JSON value, else ''."""
  try:
    return type_name(json.loads(text))
  except json.JSONDecodeError:
    return ""


def _skip(text: str, pos: int) -> int:
  n = len(text)
  while pos < n and text[pos] in _WHITESPACE:
    pos += 1
  return pos


class _LineCounter:
  """Line numbers of increasing positions in one pass over the text."""

  def __init__(self, text: str):
    self.text, self.pos, self.line = text, 0, 1

  def at(self, pos: int) -> int:
    if pos < self.pos:   # never happens when scanning forward
      self.pos, self.line = 0, 1
    self.line += self.text.count("\n", self.pos, pos)
    self.pos = pos
    return self.line
