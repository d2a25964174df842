"""Export: stock transformers models loaded from the exported folder (in a
subprocess that never imports patcher_jax) reproduce the patched model."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patcher_jax import patch as patch_lib
from patcher_jax.adapters import bart, bert
from patcher_jax.data import load_benchmark
from helpers import tiny

STOCK = r'''
import json, sys
import numpy as np
from transformers import (AutoTokenizer, FlaxBartForConditionalGeneration,
                          FlaxBertForSequenceClassification)
task, model_dir, inputs, out = sys.argv[1:]
x = dict(np.load(inputs))
tok = AutoTokenizer.from_pretrained(model_dir)
res = {}
if task == "fever":
  m = FlaxBertForSequenceClassification.from_pretrained(model_dir)
  res["logits"] = np.asarray(m(x["ids"], x["mask"]).logits).tolist()
else:
  m = FlaxBartForConditionalGeneration.from_pretrained(model_dir)
  res["logits"] = np.asarray(m(x["ids"], x["mask"],
                               decoder_input_ids=x["dec"]).logits).tolist()
  seqs = np.asarray(m.generate(x["ids"], attention_mask=x["mask"]).sequences)
  answers = []
  for row in seqs[:, 1:].tolist():
    if tok.sep_token_id in row:
      row = row[:row.index(tok.sep_token_id)]
    answers.append(tok.decode(row, skip_special_tokens=True))
  res["answers"] = answers
assert not any(k.startswith("patcher_jax") for k in sys.modules)
json.dump(res, open(out, "w"))
'''


def _stock(task, model_dir, arrays, tmp_path):
  np.savez(tmp_path / "in.npz", **arrays)
  env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             PYTHONPATH="")
  subprocess.run([sys.executable, "-c", STOCK, task, model_dir,
                  str(tmp_path / "in.npz"), str(tmp_path / "out.json")],
                 check=True, cwd=tmp_path, env=env, timeout=600)
  with open(tmp_path / "out.json") as f:
    return json.load(f)


def _random_bank(rng, n, dim, capacity=16):
  """n live neurons that fire on typical inputs (plus a dropped edit)."""
  bank = patch_lib.init_bank(capacity, dim)
  k1, k2, k3 = jax.random.split(rng, 3)
  neurons = patch_lib.Neurons(jax.random.normal(k1, (n, dim)) * 0.3,
                              jax.random.normal(k2, (n,)),
                              jax.random.normal(k3, (n, dim)),
                              jnp.ones((n, dim)))
  bank = patch_lib.add_neurons(bank, neurons, jnp.ones(n, bool), 0)
  bank = patch_lib.add_neurons(bank, neurons, jnp.ones(n, bool), 1)
  return patch_lib.drop_edit(bank, 0)          # dead slots are not exported


@pytest.mark.parametrize("task", ["fever", "zsre"])
def test_stock_model_reproduces_the_patched_model(task, tmp_path):
  ed = tiny.tiny_editor(task, str(tmp_path / "model"))
  ed.bank = _random_bank(jax.random.PRNGKey(0), 3, ed.runtime.dim)
  texts = [r.input for r in load_benchmark(task, scale="tiny").test[:4]]
  enc = ed.base.tokenizer(texts, padding="max_length", max_length=32,
                          truncation=True, return_tensors="np")
  ids = enc["input_ids"].astype(np.int32)
  mask = enc["attention_mask"].astype(np.int32)
  arrays = {"ids": ids, "mask": mask}
  out = ed.export(str(tmp_path / "export"))
  assert "model.safetensors" in os.listdir(out)
  if task == "fever":
    want, _ = bert.forward(ed.base.model, ed.base.params, ids, mask,
                           bank=ed.bank)
  else:
    dec = np.full((len(texts), 5), ed.base.config.decoder_start_token_id,
                  np.int32)
    dec[:, 1:] = ids[:, 1:5]
    arrays["dec"] = dec
    want, _ = bart.forward(ed.base.model, ed.base.params, ids, mask, dec,
                           np.ones_like(dec), bank=ed.bank)
  # the bank changes the outputs, so the comparison can fail
  unpatched = (bert.forward(ed.base.model, ed.base.params, ids, mask)[0]
               if task == "fever" else bart.forward(
                   ed.base.model, ed.base.params, ids, mask, dec,
                   np.ones_like(dec))[0])
  assert float(jnp.max(jnp.abs(want - unpatched))) > 1e-3
  got = _stock(task, out, arrays, tmp_path)
  np.testing.assert_allclose(np.asarray(got["logits"]), np.asarray(want),
                             atol=1e-5, rtol=0)
  if task == "zsre":
    assert got["answers"] == ed.predict(texts)
