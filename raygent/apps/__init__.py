"""Multi-agent apps built on raygent.actors."""
