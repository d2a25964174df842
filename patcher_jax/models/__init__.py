"""Base models: the MiniLM-initialised BERT classifier and BART seq2seq.

Modules (one concept each):
  minilm            locate / load MiniLM offline (config, params, tokenizer)
  bart_from_minilm  BERT -> BART warm start (pure function)
  qa_format         seq2seq data format, answer normalisation, greedy decoding
  train_classifier  fine-tune the FEVER classifier
  train_seq2seq     fine-tune the zsRE seq2seq
  train_utils       optimiser, length buckets, batching, progress metrics
  base_eval         split metrics (accuracy / exact match, edit mistakes)
  base_cache        Orbax cache: load_or_train_base(...) -> BaseModel
"""
