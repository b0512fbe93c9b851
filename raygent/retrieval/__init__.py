"""raygent.retrieval: see docs/architecture.md (arrives with its own issue)."""
