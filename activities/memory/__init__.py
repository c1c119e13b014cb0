"""Incident memory and learning: similar past incidents (Qdrant), the verified action record,
flapping. Nothing heavy is imported here: qdrant-client, scikit-learn and litellm load on first use,
in a thread, so neither the worker's start nor the CLI pays for them."""
