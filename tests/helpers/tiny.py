"""A tiny random BERT classifier runtime over the tiny embedded FEVER data
(the real MiniLM tokenizer, 2 layers of width 32): fast stream tests."""


def classification_runtime(num_stream: int = 60, memory_text=(),
                           numpy_params: bool = False):
  """`numpy_params`: hand the runtime numpy parameters (as a checkpoint
  restore gives them)."""
  import jax
  import numpy as np
  from transformers import BertConfig, FlaxBertForSequenceClassification
  from patcher_jax.data import load_benchmark
  from patcher_jax.models import minilm
  from patcher_jax.tasks.classification import ClassificationRuntime
  tok = minilm.load_tokenizer()
  config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, num_labels=1,
                      max_position_embeddings=64)
  model = FlaxBertForSequenceClassification(config, seed=0)
  bench = load_benchmark("fever", scale="tiny")
  train = list(bench.train)
  params = (jax.tree.map(np.asarray, model.params) if numpy_params
            else model.params)
  return ClassificationRuntime(model, params, tok,
                               bench.edit[:num_stream], train[:40],
                               bench.test[:40], train[40:120], bench.val[:20],
                               batch_size=32, memory_text=memory_text,
                               log=None)


def seq2seq_runtime(num_stream: int = 30, eos_bias: float = 0.0,
                    memory_text=(), numpy_params: bool = False):
  """A tiny random BART (width 32, 1+2 layers) over the tiny zsRE data.

  `eos_bias` is added to the eos logit: 0.2 makes every greedy answer stop
  at once (empty answer, drafts that are just eos); the random model never
  stops within 12 tokens otherwise. `numpy_params`: as
  `classification_runtime`'s.
  """
  import jax
  import numpy as np
  from transformers import BartConfig, FlaxBartForConditionalGeneration
  from patcher_jax.data import load_benchmark
  from patcher_jax.models import minilm
  from patcher_jax.tasks.seq2seq import Seq2SeqRuntime
  tok = minilm.load_tokenizer()
  config = BartConfig(
      vocab_size=tok.vocab_size, d_model=32, encoder_layers=1,
      decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
      encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
      pad_token_id=0, bos_token_id=101, eos_token_id=102,
      decoder_start_token_id=102, forced_bos_token_id=None,
      scale_embedding=False)
  model = FlaxBartForConditionalGeneration(config, seed=0)
  params = model.params
  if eos_bias:
    bias = np.array(params["final_logits_bias"])
    bias[:, config.eos_token_id] += eos_bias
    params = {**params, "final_logits_bias": bias}
  if numpy_params:
    params = jax.tree.map(np.asarray, params)
  bench = load_benchmark("zsre", scale="tiny")
  train = list(bench.train)
  return Seq2SeqRuntime(
      model, params, tok, bench.edit[:num_stream], train[:16],
      bench.test[:16], train[16:60], bench.val[:10], max_tgt_len=12,
      max_new_tokens=12, batch_size=16, memory_text=memory_text,
      log=lambda *_: None)


def save_tiny_model(task: str, directory: str, seed: int = 0) -> str:
  """A tiny random task model (as the runtimes above) saved as a standard
  transformers folder (safetensors-free Flax msgpack + tokenizer)."""
  from transformers import (BartConfig, BertConfig,
                            FlaxBartForConditionalGeneration,
                            FlaxBertForSequenceClassification)
  from patcher_jax.models import minilm
  tok = minilm.load_tokenizer()
  if task == "fever":
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1,
                        max_position_embeddings=64)
    model = FlaxBertForSequenceClassification(config, seed=seed)
  else:
    config = BartConfig(
        vocab_size=tok.vocab_size, d_model=32, encoder_layers=1,
        decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=101,
        eos_token_id=102, decoder_start_token_id=102,
        forced_bos_token_id=None, forced_eos_token_id=None,
        scale_embedding=False)
    model = FlaxBartForConditionalGeneration(config, seed=seed)
  model.save_pretrained(directory)
  tok.save_pretrained(directory)
  return directory


def tiny_editor(task: str, directory: str, **kwargs):
  """An Editor on `save_tiny_model(task, directory)` with a small memory
  (60 tiny train records, in `directory`/memory.jsonl)."""
  import os
  import patcher_jax as pj
  from patcher_jax.data import load_benchmark, write_kilt_jsonl
  bench = load_benchmark(task, scale="tiny")
  save_tiny_model(task, directory)
  memory = os.path.join(directory, "memory.jsonl")
  write_kilt_jsonl(list(bench.train)[:60], memory)
  return pj.Editor.from_pretrained(directory, task, memory_file=memory,
                                   **kwargs)
