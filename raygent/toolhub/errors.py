"""Errors that tools raise for the model to read (a registry turns them into ToolResult.error)."""

from __future__ import annotations


class ToolError(RuntimeError):
    """A tool call that failed for a reason the caller can act on (bad argument, service error,
    missing credentials or model); the message says what happened and what to do."""


class ToolUnavailableError(ToolError):
    """The tool cannot run here: a model, SDK, credential or endpoint is missing (the message says
    which, and how to provide it)."""
