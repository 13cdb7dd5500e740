"""Operation kinds: the registry, and one module per family saying how a recorded operation is recognised and how relevance passes it."""
