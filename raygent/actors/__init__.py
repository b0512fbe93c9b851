"""Coordinator actors: the agent loop, the message hub, coordinators and teams (docs/multi_agent.md)."""

from raygent.actors.agent import Agent
from raygent.actors.coordinator import AgentRole, Context, Coordinator, StructuredHandler, ToolHandler
from raygent.actors.hub import (
    EnvelopeTooLargeError,
    HubError,
    MailboxFullError,
    MessageHub,
    RoomCancelledError,
    UnknownRecipientError,
)
from raygent.actors.log import MessageLog, SQLiteLog
from raygent.actors.team import (
    HubShards,
    HumanInput,
    ModelChoice,
    ModeratorChoice,
    RoundRobin,
    SpeakerPolicy,
    Team,
    TeamCancelledError,
    TeamError,
    Turn,
    console_input,
)

__all__ = ["Agent", "AgentRole", "Context", "Coordinator", "EnvelopeTooLargeError", "HubError", "HubShards",
           "HumanInput", "MailboxFullError", "MessageHub", "MessageLog", "ModelChoice", "ModeratorChoice",
           "RoomCancelledError", "RoundRobin", "SQLiteLog", "SpeakerPolicy", "StructuredHandler", "Team", "TeamCancelledError", "TeamError",
           "ToolHandler", "Turn", "UnknownRecipientError", "console_input"]
