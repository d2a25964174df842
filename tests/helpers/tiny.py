"""A tiny random BERT classifier runtime over the tiny embedded FEVER data
(the real MiniLM tokenizer, 2 layers of width 32): fast stream tests."""


def classification_runtime(num_stream: int = 60):
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
  return ClassificationRuntime(model, model.params, tok,
                               bench.edit[:num_stream], train[:40],
                               bench.test[:40], train[40:120], bench.val[:20],
                               batch_size=32, log=None)
