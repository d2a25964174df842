"""Questions an edit must leave alone: its subject asked about otherwise.

An edit of (subject s, relation r) adds neurons that fire on s asked the r
way; the answers it most often breaks are s asked about another relation
("What is the currency of France?" after editing France's capital). The
subject is read from the edit's own record, never from its rephrases: the
relation from a geo record id ("geo:zsre:<relation>:<row>"), the subject by
matching the record's input against that relation's question templates.
A record without both (a user's own question) has no subject and so no
negative questions.

Other relations are those whose subject is of the same kind: the part of
the relation name before its first "_" ("country_capital" and
"country_currency" ask about countries; "city_country" about cities).

  negative_questions(record, per_relation=1)   # -> list of questions
"""
import functools
import re
from typing import List, Optional, Tuple

from patcher_jax.data.geo import templates as templates_lib
from patcher_jax.data.records import Record

ID_PREFIX = "geo:zsre:"


def subject_kind(relation: str) -> str:
  """The kind of subject a relation asks about (its name's first part).

  Example:
    >>> subject_kind("country_capital"), subject_kind("city_admin1")
    ('country', 'city')
  """
  return relation.split("_", 1)[0]


@functools.lru_cache(maxsize=None)
def _template_regex(template: str) -> "re.Pattern":
  head, _, tail = template.partition("{s}")
  return re.compile(re.escape(head) + "(?P<s>.+?)" + re.escape(tail) + r"\Z")


def subject_of(record: Record) -> Optional[Tuple[str, str]]:
  """(relation, subject) of a zsRE geo record, or None if it has none.

  Args:
    record: a record; only its id and input are read.

  Returns:
    The relation named by the id and the subject its input names in one of
    the relation's question templates; None for any other record.

  Example:
    >>> subject_of(Record("geo:zsre:country_capital:7",
    ...                   "What is the capital of Peru?", ("Lima",)))
    ('country_capital', 'Peru')
    >>> subject_of(Record("q1", "What is the capital of Peru?", ("Lima",)))
  """
  if not record.id.startswith(ID_PREFIX):
    return None
  relation = record.id[len(ID_PREFIX):].split(":", 1)[0]
  rel = templates_lib.BY_NAME.get(relation)
  if rel is None:
    return None
  text = record.input.strip()
  for template in rel.questions:
    m = _template_regex(template).match(text)
    if m:
      return relation, m.group("s")
  return None


def negative_questions(record: Record, per_relation: int = 1) -> List[str]:
  """The record's subject in the first `per_relation` question templates of
  every other relation with the same kind of subject ([] if the record has
  no subject or `per_relation` is 0).

  Args:
    record: the edit's record (id and input).
    per_relation: templates per other relation (a relation's held-out
      templates are never used).

  Returns:
    The questions, relation by relation in the table's order.

  Example:
    >>> qs = negative_questions(Record("geo:zsre:country_capital:7",
    ...                                "What is the capital of Peru?", ()))
    >>> qs[:2]
    ['On which continent is Peru?', 'What is the currency of Peru?']
    >>> len(qs)
    6
  """
  found = subject_of(record)
  if found is None or per_relation <= 0:
    return []
  relation, subject = found
  kind = subject_kind(relation)
  out = []
  for rel in templates_lib.RELATIONS:
    if rel.name == relation or subject_kind(rel.name) != kind:
      continue
    usable = rel.questions[:len(rel.questions) - rel.held_out_questions]
    out.extend(t.format(s=subject) for t in usable[:per_relation])
  return out
