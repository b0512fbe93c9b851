"""`raygent chat --session ID` resumes a stored session; `raygent memory list|show|delete`."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

from raygent import cli
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.memory import SQLiteMemoryStore
from raygent.schema import Message
from raygent.toolhub.registry import ToolRegistry

_PRINT_EVENT = cli._print_event


def _chat(monkeypatch, capsys, lines: str, replies: list[str], *args: str) -> tuple[str, ScriptedChatModel]:
    llm = ScriptedChatModel(replies)
    # the embedded GGUF model is replaced by the scripted one; everything else is the real CLI path
    monkeypatch.setattr(cli, "_build_components", lambda a: (llm, ToolRegistry()))
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    # its default stream is bound at import; print to the captured one
    monkeypatch.setattr(cli, "_print_event", lambda event: _PRINT_EVENT(event, sys.stdout))
    assert cli.main(["chat", *args]) == 0
    return capsys.readouterr().out, llm


def test_chat_session_resumes_across_invocations(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "m.sqlite")
    out, _ = _chat(monkeypatch, capsys, "My name is Ada.\n/exit\n", ["Hello Ada."], "--session", "ada", "--memory", db)
    assert "(new session ada in" in out and "Hello Ada." in out
    out, llm = _chat(monkeypatch, capsys, "What is my name?\n/exit\n", ["Your name is Ada."],
                     "--session", "ada", "--memory", db)
    assert "(resumed session ada: 2 messages" in out and "user: My name is Ada." in out
    assert [m.content for m in llm.requests[0]["messages"][1:]] == ["My name is Ada.", "Hello Ada.", "What is my name?"]
    assert len(asyncio.run(SQLiteMemoryStore(db).load("ada"))) == 4


def test_chat_session_default_path_is_under_raygent_home(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAYGENT_MEMORY_DB", raising=False)
    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path / "home"))
    out, _ = _chat(monkeypatch, capsys, "hi\n/exit\n", ["hello"], "--session", "s1")
    assert str(tmp_path / "home" / "memory.sqlite") in out
    assert (tmp_path / "home" / "memory.sqlite").exists()


def test_chat_rejects_a_bad_session_id(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    try:
        cli.main(["chat", "--session", "../x"])
    except SystemExit as exc:
        assert "invalid session id" in str(exc)
    else:
        raise AssertionError("a bad session id must be refused")


def test_memory_list_show_delete_commands(tmp_path):
    db = str(tmp_path / "m.sqlite")
    asyncio.run(SQLiteMemoryStore(db).append_many("talk-1", [Message.user("hi"), Message.assistant("hello")]))
    env = {**os.environ, "RAYGENT_MEMORY_DB": db}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "raygent.cli", "memory", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    listed = run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(s["id"], s["message_count"]) for s in json.loads(listed.stdout)] == [("talk-1", 2)]
    shown = run("show", "talk-1")
    assert shown.returncode == 0 and "#0     user      hi" in shown.stdout and "assistant hello" in shown.stdout
    missing = run("show", "nope")
    assert missing.returncode == 1 and "no session 'nope'" in missing.stderr
    assert run("delete", "talk-1").returncode == 0
    assert json.loads(run("list", "--json").stdout) == []


def test_chat_long_term_facts_cross_sessions(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "m.sqlite")
    remember = '<tool_call>\n{"name": "remember", "arguments": {"fact": "The user\'s cat is called Miso."}}\n</tool_call>'
    recall = '<tool_call>\n{"name": "recall", "arguments": {"query": "name of the cat"}}\n</tool_call>'
    _chat(monkeypatch, capsys, "My cat is Miso.\n/exit\n", [remember, "Noted."], "--session", "a", "--memory", db,
          "--long-term")
    out, llm = _chat(monkeypatch, capsys, "What's my cat called?\n/exit\n", [recall, "Miso."],
                     "--session", "b", "--memory", db, "--long-term")
    assert "[tool_result] recall" in out and "The user's cat is called Miso." in out
    assert {"remember", "recall"} <= set(llm.requests[0]["tools"])
    assert "Miso" in llm.requests[1]["messages"][-1].content  # the fact came from long-term memory, not history
    assert all("Miso" not in (m.content or "") for m in llm.requests[1]["messages"][:-1])
