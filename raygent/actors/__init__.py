"""Coordinator actors: the agent loop (multi-agent messaging arrives with its own issue)."""

from raygent.actors.agent import Agent

__all__ = ["Agent"]
