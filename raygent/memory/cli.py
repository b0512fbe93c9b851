"""Command-line side of memory: `raygent chat --session ID` and `raygent memory list|show|delete`.

Kept here so raygent/cli.py only registers options and dispatches. The store is the SQLite file
at `--memory PATH`, else RAYGENT_MEMORY_DB, else <RAYGENT_HOME>/memory.sqlite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from raygent.memory.sqlite_store import SQLiteMemoryStore, default_memory_path
from raygent.memory.store import check_session_id


def add_session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", default=None, metavar="ID",
                   help="persist the conversation as session ID and resume it if it exists")
    p.add_argument("--memory", default=None, metavar="PATH",
                   help=f"SQLite file of the memory store (default: {default_memory_path()})")
    p.add_argument("--long-term", action="store_true",
                   help="give the model remember/recall tools: facts kept across sessions (needs wordllama)")


async def chat_memory(args: argparse.Namespace, out: Any = None) -> dict[str, Any]:
    """Agent keyword arguments for `raygent chat`: `memory` and `session_id` when --session is given."""
    out = out or sys.stdout
    if not getattr(args, "session", None):
        return {}
    try:
        session_id = check_session_id(args.session)
    except ValueError as exc:
        raise SystemExit(f"raygent: error: --session: {exc}") from None
    store = SQLiteMemoryStore(args.memory) if args.memory else SQLiteMemoryStore()
    info = await store.get_session(session_id)
    if info is None:
        out.write(f"(new session {session_id} in {store.path})\n")
    else:
        messages = await store.load(session_id)
        out.write(f"(resumed session {session_id}: {info.message_count} messages, last written "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(info.updated_at))})\n")
        for m in [m for m in messages if m.role in ("user", "assistant") and m.content][-4:]:
            out.write(f"  {m.role}: {_one_line(m.content or '')}\n")
    out.flush()
    return {"memory": store, "session_id": session_id}


async def chat_tools(args: argparse.Namespace, tools: Any, session: dict[str, Any]) -> Any:
    """With --long-term, register `remember` / `recall` (facts in the same SQLite file) on the chat's tools."""
    if not getattr(args, "long_term", False):
        return tools
    import inspect

    from raygent.memory.embed import wordllama_files
    from raygent.memory.longterm import LongTermMemory, memory_tools

    wordllama_files()  # fail now, with the install hint, rather than at the first recall
    ltm = LongTermMemory(args.memory or default_memory_path())
    for t in memory_tools(ltm, session.get("session_id")):
        registered = tools.register(t, replace=True)  # a registry here, or its actor proxy with --remote
        if inspect.isawaitable(registered):
            await registered
    return tools


def add_memory_command(sub: Any) -> None:
    mem = sub.add_parser("memory", help="list, show or delete stored chat sessions")
    msub = mem.add_subparsers(dest="memory_command", required=True)
    for name, text in (("list", "sessions, most recent first"), ("show", "the messages of one session"),
                       ("delete", "delete one session")):
        p = msub.add_parser(name, help=text)
        if name != "list":
            p.add_argument("session")
        p.add_argument("--memory", default=None, metavar="PATH", help="SQLite file of the memory store")
        p.add_argument("--json", action="store_true")


async def memory_command(args: argparse.Namespace) -> int:
    store = SQLiteMemoryStore(args.memory) if args.memory else SQLiteMemoryStore()
    try:
        if args.memory_command == "list":
            sessions = await store.list_sessions(limit=1000)
            if args.json:
                print(json.dumps([s.model_dump() for s in sessions], ensure_ascii=False))
            else:
                for s in sessions:
                    print(f"{s.id:40s} {s.message_count:6d} messages  "
                          f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(s.updated_at))}")
            return 0
        session_id = check_session_id(args.session)
        if await store.get_session(session_id) is None:
            print(f"raygent: error: no session {session_id!r} in {store.path}", file=sys.stderr)
            return 1
        if args.memory_command == "delete":
            await store.delete_session(session_id)
            print(json.dumps({"deleted": session_id}) if args.json else f"deleted session {session_id}")
            return 0
        records = await store.records(session_id)
        if args.json:
            print(json.dumps([r.model_dump(mode="json") for r in records], ensure_ascii=False))
        else:
            for r in records:
                m = r.message
                body = m.content or "; ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})"
                                              for c in m.tool_calls or [])
                print(f"#{r.seq:<5d} {m.role:9s} {_one_line(body, 160)}")
        return 0
    finally:
        await store.close()


def _one_line(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
