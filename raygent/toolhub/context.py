"""Per-call context (session, user) that a hub hands to the tools it runs.

Tools keep the plain `call(**arguments)` signature; the few that need to know who is calling (the
code interpreter keeps one kernel per session) read `current_context()`, which the hub sets for
the duration of each call. The context travels through `asyncio` tasks and `asyncio.to_thread`.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, Field


class ToolContext(BaseModel):
    """Who a tool call is for: the session whose state (kernels, files) the tool may use."""

    session_id: str = "default"
    user_id: str | None = None
    call_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


#: (the caller's context, the call id) of the call running now; the ToolContext itself is built only
#: when a tool asks for it (few do), which keeps ~4 us off every call a hub runs
_CURRENT: ContextVar[tuple[ToolContext, str | None] | None] = ContextVar("raygent_tool_context", default=None)


def current_context() -> ToolContext:
    """The context of the tool call running now (a default one outside a hub)."""
    current = _CURRENT.get()
    if current is None:
        return ToolContext()
    base, call_id = current
    if base.call_id == call_id:
        return base
    # already validated: skip pydantic's checks
    return ToolContext.model_construct(session_id=base.session_id, user_id=base.user_id, call_id=call_id,
                                       metadata=base.metadata)


def as_context(context: ToolContext | dict[str, Any] | str | None) -> ToolContext:
    """A ToolContext from a context, a dict of its fields, or a bare session id."""
    if context is None:
        return ToolContext()
    if isinstance(context, ToolContext):
        return context
    if isinstance(context, str):
        return ToolContext(session_id=context)
    return ToolContext(**context)
