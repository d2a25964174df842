"""Facts as prompts for a causal LM: the answer completes the prompt.

Completion prompts come from the claim templates that end with the object
("The capital of {s} is {o}." -> "The capital of {s} is", answer " {o}").
The chat form asks a question template through the model's chat template and
begins the assistant's answer with the relation's first completion prompt
("<|im_start|>user\\nWhat is the capital of Peru?<|im_end|>\\n
<|im_start|>assistant\\nThe capital of Peru is"), so the object is again the
continuation.

Two record forms (`FORMS`):
- "complete": input = the first completion prompt; rephrases = the other
  completion prompts, then chat forms of the question templates, 5 in all;
- "chat": input = the chat form of the first question template; rephrases =
  the chat forms of the other question templates.
The splits are the zsRE splits of the embedded benchmark (split by fact).
"""
from typing import Callable, Dict, List, Sequence, Tuple

from patcher_jax.data.geo import generate
from patcher_jax.data.geo import templates
from patcher_jax.data.records import Benchmark, Record

FORMS = ("complete", "chat")
NUM_REPHRASES = 5


def completion_prompts(relation: str) -> Tuple[str, ...]:
  """Claim templates of `relation` that end with " {o}." cut before it."""
  out = []
  for claim in templates.templates(relation, "fever"):
    if claim.endswith(" {o}.") and claim.count("{o}") == 1:
      out.append(claim[:-len(" {o}.")])
  if not out:
    raise ValueError(f"relation {relation!r} has no completion template")
  return tuple(out)


def chat_prompt(apply_chat: Callable[[str], str], question: str,
                answer_start: str) -> str:
  """The chat template around `question`, the answer begun."""
  return apply_chat(question) + answer_start


def tokenizer_chat(tokenizer) -> Callable[[str], str]:
  """question -> the chat template's text up to the assistant's turn."""
  def apply(question: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False,
        add_generation_prompt=True)
  return apply


def fact_record(gf: generate.GeoFact, form: str,
                apply_chat: Callable[[str], str]) -> Record:
  f = gf.fact
  comp = [c.format(s=f.subject) for c in completion_prompts(f.relation)]
  questions = [q.format(s=f.subject)
               for q in templates.templates(f.relation, "zsre")]
  chats = [chat_prompt(apply_chat, q, comp[0]) for q in questions]
  if form == "complete":
    inp, reph = comp[0], (comp[1:] + chats[1:])[:NUM_REPHRASES]
  elif form == "chat":
    inp, reph = chats[0], chats[1:1 + NUM_REPHRASES]
  else:
    raise ValueError(f"form must be one of {FORMS}, got {form!r}")
  return Record(f"geo:lm_{form}:{f.relation}:{gf.row}", inp, (f.object,),
                tuple(reph))


def lm_benchmark(form: str, apply_chat: Callable[[str], str],
                 scale: str = "full", seed: int = 0,
                 limits: Dict[str, int] | None = None) -> Benchmark:
  """The zsRE facts of the embedded benchmark as LM prompts.

  Args:
    form: "complete" or "chat".
    apply_chat: question -> chat text before the answer (`tokenizer_chat`).
    scale, seed: as for the embedded benchmark.
    limits: at most this many records per split (after the seeded order).

  Example:
    >>> b = lm_benchmark("complete", lambda q: q + " ", "tiny")
    >>> len(b.edit[0].rephrases)
    5
  """
  splits = {}
  bench = generate.geo_benchmark("zsre", scale, seed)
  facts = generate.geo_facts("zsre", scale, seed)
  for name in ("train", "val", "edit", "test"):
    by_id = {generate.record_id("zsre", gf): gf for gf in facts[name]}
    # the benchmark's seeded record order, rendered in the LM form
    recs: List[Record] = [fact_record(by_id[r.id], form, apply_chat)
                          for r in getattr(bench, name)]
    if limits and name in limits:
      recs = recs[:limits[name]]
    splits[name] = tuple(recs)
  return Benchmark(**splits)
