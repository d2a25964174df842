"""Task runtimes: a base model + benchmark turned into cached queries, memory
and the checks a sequential-editing stream asks for.

Both runtimes answer the same calls (duck-typed): `mistakes(bank, idxs)`,
`edit_task(bank, i, rng, noise_samples)`, `after_edit(bank, i)`,
`memory_rows(i)`, `accuracy(bank, split)`, `stream_accuracy(bank, idxs)`,
plus `tail`, `dim`, `max_neurons`, `memory0`, `val_memory0`.
"""
