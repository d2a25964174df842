"""The command line: `python -m patcher_jax <command> --flag=value ...`.

  edit    --task=T --requests=FILE --bank_dir=B [--model_dir=M] [--memory=F]
          [--mode=fast|parity] [--set=NAME=VALUE ...] [--cache_dir=C]
          requests as KILT / FEVER 1.0 jsonl (.jsonl) or EasyEdit-style json (.json: a
          list of {"prompt", "target_new", "rephrase_prompt",
          "locality_prompt"}; MEND's "src", "alt", "rephrase", "loc" too);
          edits them in order into the bank B (created, or continued), one
          JSON line per request on stdout
  predict --bank_dir=B --inputs=FILE   one JSON line per input: the input and
          its "prediction" (inputs: jsonl of {"input"} / {"prompt"} objects
          or strings, or plain text, one input a line)
  revert  --bank_dir=B --edit_id=ID
  export  --bank_dir=B --out=DIR       a standard transformers checkpoint
  split   ...                          patcher_jax.data.split_cli

A user's mistake prints one line, `error: <where>: <problem>`, and exits 2.
run.py stays the benchmark.
"""
import argparse
import json
import os
import sys
from typing import List, Optional

COMMANDS = ("edit", "predict", "revert", "export", "split")


class UserError(Exception):
  """A mistake of the user's: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    """argparse's messages as `<flag>: <problem>`."""
    if message.startswith("argument "):
      flag, _, problem = message[len("argument "):].partition(": ")
      raise UserError(f"{flag.split('/')[0]}: {problem}")
    for prefix, problem in (("the following arguments are required: ",
                             "required"),
                            ("unrecognized arguments: ", "unknown flag")):
      if message.startswith(prefix):
        raise UserError(f"{message[len(prefix):].split(',')[0].split()[0]}:"
                        f" {problem}")
    raise UserError(message)


def _parser(command: str) -> argparse.ArgumentParser:
  p = _Parser(prog=f"python -m patcher_jax {command}", add_help=True)
  if command == "edit":
    p.add_argument("--task", required=True, choices=["fever", "zsre"])
    p.add_argument("--requests", required=True)
    p.add_argument("--model_dir", default=None, help="a local model folder "
                   "(default: the task's cached base model)")
    p.add_argument("--memory", default=None, help="KILT jsonl of memory "
                   "records (with --model_dir; default: the embedded "
                   "benchmark's train split)")
    p.add_argument("--mode", default="fast", choices=["fast", "parity"])
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="an EditConfig setting over the mode's (repeatable; "
                   "a new bank only)")
  if command in ("predict",):
    p.add_argument("--inputs", required=True)
  if command == "revert":
    p.add_argument("--edit_id", required=True, type=int)
  if command == "export":
    p.add_argument("--out", required=True)
  p.add_argument("--bank_dir", required=True)
  p.add_argument("--cache_dir", default=None)
  return p


def main(argv: Optional[List[str]] = None) -> int:
  """Run one command; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    if not argv or argv[0] not in COMMANDS:
      if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
      raise UserError(f"command: expected one of {', '.join(COMMANDS)}, got "
                      f"{argv[0] if argv else 'nothing'}")
    if argv[0] == "split":
      return _split(argv[1:])
    args = _parser(argv[0]).parse_args(argv[1:])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from patcher_jax import xla_cache  # pylint: disable=g-import-not-at-top
    xla_cache.enable(args.cache_dir)   # each command compiles the same edits
    return {"edit": _edit, "predict": _predict, "revert": _revert,
            "export": _export}[argv[0]](args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def _split(argv) -> int:
  try:
    from patcher_jax.data import split_cli  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("split: patcher_jax.data.split_cli is not installed in "
                    "this version") from None
  return split_cli.main(argv)


# -- the commands -------------------------------------------------------------


def _load(args):
  """The Editor saved in --bank_dir."""
  from patcher_jax import api, bank_io  # pylint: disable=g-import-not-at-top
  try:
    return api.Editor.load(args.bank_dir, cache_dir=args.cache_dir)
  except (bank_io.BankError, api.BaseMismatchError) as e:
    raise UserError(f"--bank_dir: {e}") from None
  except FileNotFoundError as e:
    raise UserError(f"--bank_dir: {e}") from None


def _edit(args) -> int:
  from patcher_jax import api, bank_io  # pylint: disable=g-import-not-at-top
  from patcher_jax import configs  # pylint: disable=g-import-not-at-top
  requests = read_requests(args.requests, args.task)
  try:
    config = configs.get(args.task, args.mode,
                         **configs.parse_overrides(args.set))
  except ValueError as e:
    raise UserError(f"--set: {e}") from None
  if os.path.isfile(os.path.join(args.bank_dir, bank_io.META)):
    ed = _load(args)
    if ed.task != args.task:
      raise UserError(f"--task: the bank in {args.bank_dir} is a {ed.task} "
                      f"bank, not {args.task}")
    if args.set:
      raise UserError(f"--set: the bank in {args.bank_dir} keeps the "
                      "settings it was made with")
  elif args.model_dir:
    if not os.path.isdir(args.model_dir):
      raise UserError(f"--model_dir: {args.model_dir}: no such folder")
    if args.memory and not os.path.isfile(args.memory):
      raise UserError(f"--memory: {args.memory}: no such file")
    ed = api.Editor.from_pretrained(args.model_dir, args.task, mode=args.mode,
                                    memory_file=args.memory, config=config)
  else:
    ed = api.Editor.from_task(args.task, args.cache_dir, mode=args.mode,
                              config=config)
  try:
    results = ed.edit(**requests)
  except ValueError as e:
    raise UserError(f"{args.requests}: {e}") from None
  for r in results:
    print(json.dumps(r), flush=True)
  ed.save(args.bank_dir)
  return 0


def _predict(args) -> int:
  inputs = read_inputs(args.inputs)
  ed = _load(args)
  preds = ed.predict([text for text, _ in inputs])
  for (_, obj), pred in zip(inputs, preds):
    print(json.dumps({**obj, "prediction": pred}), flush=True)
  return 0


def _revert(args) -> int:
  ed = _load(args)
  try:
    ed.revert(args.edit_id)
  except KeyError as e:
    raise UserError(f"--edit_id: {e.args[0]}") from None
  ed.save(args.bank_dir)
  import numpy as np  # pylint: disable=g-import-not-at-top
  print(json.dumps({"reverted": args.edit_id, "live_edits": ed.live_edits,
                    "neurons": int(np.asarray(ed.bank.live).sum())}))
  return 0


def _export(args) -> int:
  ed = _load(args)
  out = ed.export(args.out)
  print(json.dumps({"exported": out, "edits": ed.live_edits}))
  return 0


# -- input files --------------------------------------------------------------


def _read_text(path: str, flag: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except FileNotFoundError:
    raise UserError(f"{flag}: {path}: no such file") from None
  except UnicodeDecodeError as e:
    raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_requests(path: str, task: str) -> dict:
  """Edit requests as Editor.edit keyword arguments, from KILT jsonl or an
  EasyEdit-style json list; UserError naming the file and line otherwise."""
  text = _read_text(path, "--requests")
  if path.endswith(".jsonl"):
    # KILT or FEVER 1.0 lines (patcher_jax.data.formats tells them apart)
    from patcher_jax.data import DataError, read_records  # pylint: disable=g-import-not-at-top
    try:
      records = read_records(path, task, target="new").records
    except DataError as e:
      raise UserError(str(e)) from None
    return {"prompts": [r.input for r in records],
            "target_new": [r.answers[0] for r in records],
            "rephrase_prompts": [list(r.rephrases) for r in records]}
  items = _json_list(text, path)
  out = {"prompts": [], "target_new": [], "rephrase_prompts": [],
         "locality": []}
  for line, obj in items:
    if not isinstance(obj, dict):
      raise UserError(f"{path}:{line}: a request must be an object, got "
                      f"{type(obj).__name__}")
    for key, names in (("prompts", ("prompt", "src")),
                       ("target_new", ("target_new", "alt"))):
      value = next((obj[n] for n in names if n in obj), None)
      if not isinstance(value, str) or not value:
        raise UserError(f"{path}:{line}: missing or empty "
                        f"\"{names[0]}\" (a string)")
      out[key].append(value)
    _check_target(task, out["target_new"][-1], f"{path}:{line}")
    for key, names in (("rephrase_prompts", ("rephrase_prompt",
                                             "rephrase_prompts", "rephrase")),
                       ("locality", ("locality_prompt", "loc"))):
      value = next((obj[n] for n in names if n in obj), [])
      value = [value] if isinstance(value, str) else value
      if not isinstance(value, list) or not all(isinstance(v, str)
                                                for v in value):
        raise UserError(f"{path}:{line}: \"{names[0]}\" must be a string "
                        "or a list of strings")
      out[key].append(value)
  local = out.pop("locality")
  if any(local):
    out["locality_inputs"] = {"neighborhood": {"prompt": local}}
  return out


def _check_target(task: str, target: str, where: str) -> None:
  from patcher_jax.data import FEVER_LABELS  # pylint: disable=g-import-not-at-top
  if task == "fever" and target not in FEVER_LABELS:
    raise UserError(f"{where}: target_new {target!r}: fever targets are "
                    f"{' or '.join(FEVER_LABELS)}")


def _json_list(text: str, path: str):
  """[(line, item)] of a JSON list, each item with the line it starts on."""
  try:
    json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{path}:{e.lineno}: {e.msg}") from None
  start = len(text) - len(text.lstrip())
  if not text[start:].startswith("["):
    raise UserError(f"{path}:1: expected a JSON list of requests")
  dec, i, items = json.JSONDecoder(), start + 1, []
  while True:
    while text[i] in " \t\r\n,":
      i += 1
    if text[i] == "]":
      break
    obj, end = dec.raw_decode(text, i)
    items.append((text.count("\n", 0, i) + 1, obj))
    i = end
  if not items:
    raise UserError(f"{path}:1: no requests")
  return items


def read_inputs(path: str):
  """[(text, json object to echo)] from jsonl ({"input"} / {"prompt"} /
  {"src"} objects, or strings) or plain text (one input a line)."""
  text = _read_text(path, "--inputs")
  out = []
  for n, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    if not path.endswith(".jsonl"):
      out.append((line, {"input": line}))
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f"{path}:{n}: {e.msg}") from None
    if isinstance(obj, str):
      obj = {"input": obj}
    value = next((obj[k] for k in ("input", "prompt", "src")
                  if isinstance(obj, dict) and k in obj), None)
    if not isinstance(value, str):
      raise UserError(f"{path}:{n}: expected a string or an object with an "
                      "\"input\" string")
    out.append((value, obj))
  if not out:
    raise UserError(f"{path}: no inputs")
  return out
