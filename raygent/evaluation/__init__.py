"""raygent.evaluation: see docs/architecture.md (arrives with its own issue)."""
