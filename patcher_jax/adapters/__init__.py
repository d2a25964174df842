"""Model adapters: queries, tail and patched forward of each supported model."""
