"""Question templates learned from a benchmark's own questions, for subject
negatives on data the geo templates do not know (a user's benchmark).

`data/geo/negatives.py` finds an edit's subject with hand-written templates
and asks it the way of the other relations of its kind. Here both come from
the questions themselves (the memory split's inputs: no answers needed):
  * a template is a head and a tail, cut at word boundaries, that at least
    `min_support` questions share around a non-empty middle ("What is the
    CAS registry number of " + s + "?");
  * a question's subject is its middle under the most specific (longest)
    template it matches;
  * two templates are related when at least `min_shared` subjects are asked
    both ways (a compound's formula and its CAS number).
An edit's negatives are its subject in every template related to its own.

  index = learn([r.input for r in memory])
  negative_questions(index, "What is the molecular formula of bisacodyl?")
  # -> ["What is the CAS registry number of bisacodyl?", ...]
"""
import collections
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

Template = Tuple[str, str]   # (head, tail): question = head + subject + tail


class TemplateIndex(NamedTuple):
  """Templates, most specific first, and each one's related templates."""
  templates: Tuple[Template, ...]
  related: Dict[Template, Tuple[Template, ...]]


def normalize(question: str) -> str:
  """The question with its whitespace runs made single spaces (how
  templates match).

  Example:
    >>> normalize("  Who  wrote Hamlet? ")
    'Who wrote Hamlet?'
  """
  return " ".join(question.split())


def _cuts(question: str):
  """Every (head, subject, tail) of a question cut at word boundaries, the
  end punctuation kept in the tail."""
  text = question.strip()
  end = text[-1] if text and text[-1] in "?.!" else ""
  words = text[:len(text) - len(end)].split()
  n = len(words)
  for i in range(1, n):
    for j in range(0, n - i):
      head = " ".join(words[:i]) + " "
      tail = (" " + " ".join(words[n - j:]) if j else "") + end
      yield head, " ".join(words[i:n - j]), tail


def subject_of(index: TemplateIndex, question: str
               ) -> Optional[Tuple[Template, str]]:
  """(template, subject) of `question` under its most specific template,
  or None if it matches none.

  Example:
    >>> idx = TemplateIndex(((("Who wrote ", "?")),), {})
    >>> subject_of(idx, "Who wrote Hamlet?")
    (('Who wrote ', '?'), 'Hamlet')
  """
  text = normalize(question)
  for head, tail in index.templates:
    if (len(text) > len(head) + len(tail) and text.startswith(head)
        and text.endswith(tail)):
      subject = text[len(head):len(text) - len(tail)].strip()
      if subject:
        return (head, tail), subject
  return None


def learn(questions: Sequence[str], min_support: int = 10,
          min_shared: int = 3) -> TemplateIndex:
  """The templates of `questions` and which are related (module docstring).

  Args:
    questions: input questions (e.g. the memory split's).
    min_support: questions a template must match.
    min_shared: subjects two templates must share to be related.

  Returns:
    The TemplateIndex (empty if no template has the support).
  """
  questions = list(dict.fromkeys(normalize(q) for q in questions))
  support = collections.Counter()
  for q in questions:
    support.update({(h, t) for h, _, t in _cuts(q)})
  kept = [k for k, c in support.items() if c >= min_support]
  # most specific first: the longest literal text, then the most support
  kept.sort(key=lambda k: (-(len(k[0]) + len(k[1])), -support[k], k))
  index = TemplateIndex(tuple(kept), {})
  asked = collections.defaultdict(set)       # subject -> templates
  for q in questions:
    found = subject_of(index, q)
    if found:
      asked[found[1]].add(found[0])
  shared = collections.Counter()
  for templates in asked.values():
    for a in templates:
      for b in templates:
        if a != b:
          shared[(a, b)] += 1
  related = collections.defaultdict(list)
  for (a, b), count in sorted(shared.items(),
                              key=lambda kv: (-kv[1], kv[0])):
    if count >= min_shared:
      related[a].append(b)
  return TemplateIndex(index.templates,
                       {k: tuple(v) for k, v in related.items()})


def negative_questions(index: TemplateIndex, question: str) -> List[str]:
  """The subject of `question` asked in every template related to its own
  ([] if it matches no template or its template has no relations).

  Example:
    >>> idx = learn([f"What is the formula of c{i}?" for i in range(30)]
    ...             + [f"What is the CAS number of c{i}?" for i in range(30)])
    >>> negative_questions(idx, "What is the formula of c7?")
    ['What is the CAS number of c7?']
  """
  found = subject_of(index, question)
  if found is None:
    return []
  template, subject = found
  return [head + subject + tail for head, tail in index.related.get(
      template, ())]
