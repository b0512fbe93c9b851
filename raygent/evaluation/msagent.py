"""MSAgent-Bench records: read, validate, write, and convert to and from raygent messages.

MSAgent-Bench (ModelScope dataset `damo/MSAgent-Bench`, arXiv 2309.00986) is JSON lines; each record
holds a `conversations` list of turns `{"from": "system" | "user" | "assistant", "value": str}`: a
system turn first (it lists the tools), then user and assistant turns in alternation. An assistant
turn is the whole trajectory of one answer: free text, tool calls as

    <|startofthink|>```JSON\\n{"api_name": NAME, "parameters": {...}}\\n```<|endofthink|>

each followed by the tool's output as `<|startofexec|>```JSON\\n...\\n```<|endofexec|>`, and the final
answer after the last result. Tool outputs are kept as raw text (the dataset's are not always
strict JSON). `conversations` stored as a string (as some dataset splits do) is decoded, and the
ShareGPT roles `human` / `gpt` are read as user / assistant.

raygent's side is a list of `Message`s as the agent and the memory store keep them: a user message,
then assistant messages (text and/or `tool_calls`) and `tool` messages (one per call, linked by
`tool_call_id`), until the next user message. `messages_to_record` and `record_to_messages` convert
between the two; `sessions_to_msagent` / `export_sessions` turn stored sessions into training data.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from raygent.llm_pool.formats.msagent import EXEC_CLOSE, EXEC_OPEN, THINK_CLOSE, THINK_OPEN
from raygent.schema import Message, ToolCall, ToolSpec

__all__ = [
    "MSAgentFormatError",
    "MSAgentTurn",
    "MSAgentRecord",
    "PredictionRecord",
    "MSAgentCall",
    "ParsedTurn",
    "parse_assistant_turn",
    "render_call",
    "render_result",
    "render_assistant_turn",
    "render_system",
    "messages_to_record",
    "record_to_messages",
    "assistant_turn_to_messages",
    "iter_msagent",
    "read_msagent",
    "read_predictions",
    "write_msagent",
    "dumps_record",
    "sessions_to_msagent",
    "export_sessions",
    "DEFAULT_SYSTEM",
]

#: the system turn of an exported session that stored none (the agent's default system prompt)
DEFAULT_SYSTEM = ("You are a helpful assistant. Call a tool when the request needs one; after a tool returns, "
                  "answer the user directly from its result, quoting the relevant values. Otherwise answer directly.")

#: the agent's own follow-up after an unreadable call (raygent/actors/agent.py); not part of a trajectory
_REPAIR_PREFIX = "Your tool call could not be read:"
_ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant"}

# tags as MSAgent-Bench writes them, tolerating the usual variants in model output (missing "|", "_")
_THINK_OPEN = re.compile(r"<\|?\s*start_?of_?think\s*\|?>", re.I)
_THINK_CLOSE = re.compile(r"<\|?\s*/?\s*end_?of_?think\s*\|?>", re.I)
_EXEC_OPEN = re.compile(r"<\|?\s*start_?of_?exec\s*\|?>", re.I)
_EXEC_CLOSE = re.compile(r"<\|?\s*/?\s*end_?of_?exec\s*\|?>", re.I)
_FENCE_OPEN = re.compile(r"^\s*```[A-Za-z]*[ \t]*\n?")
_FENCE_CLOSE = re.compile(r"\n?```\s*$")


class MSAgentFormatError(ValueError):
    """A record (or a turn of one) that is not valid MSAgent-Bench data; says where."""

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None):
        self.line = line
        self.source = source
        self.detail = message
        where = ":".join(str(p) for p in (source, f"line {line}" if line is not None else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class MSAgentTurn(BaseModel):
    """One turn: `{"from": "system" | "user" | "assistant", "value": str}`."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    role: Literal["system", "user", "assistant"] = Field(alias="from")
    value: str

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in _ROLE_ALIASES:
            return _ROLE_ALIASES[v.strip().lower()]
        raise ValueError(f"unknown role {v!r}: use system, user or assistant")

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, v: Any) -> Any:
        return "" if v is None else v


def _decode_conversations(v: Any) -> Any:
    if isinstance(v, str):  # some dataset splits store the list as a string (JSON or a Python literal)
        try:
            return json.loads(v)
        except ValueError:
            try:
                return ast.literal_eval(v)
            except (ValueError, SyntaxError) as exc:
                raise ValueError(f"conversations is a string that is neither JSON nor a Python list: {exc}") from None
    return v


def _id(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _predictions(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class _RecordFields(BaseModel):
    """What records and prediction lines share: an id (integers read as strings), predictions (a
    lone string read as one turn), conversations (stored as a JSON string in some dataset splits),
    unknown fields kept, and the line they were read from."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    predictions: list[str] | None = None
    _line: int | None = PrivateAttr(default=None)

    @field_validator("id", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        return _id(v)

    @field_validator("conversations", mode="before", check_fields=False)
    @classmethod
    def _conv(cls, v: Any) -> Any:
        return _decode_conversations(v)

    @field_validator("predictions", mode="before")
    @classmethod
    def _preds(cls, v: Any) -> Any:
        return _predictions(v)

    @property
    def line(self) -> int | None:
        """The line (JSONL) or position (JSON list) the record was read from, counting from 1."""
        return self._line


class MSAgentRecord(_RecordFields):
    """One MSAgent-Bench record. Unknown fields are kept and written back.

    `predictions` (not part of MSAgent-Bench) holds a model's assistant turns for this record, one
    string per assistant turn of `conversations`, in the same think/exec format; see
    `raygent.evaluation.trajectories` for how they are scored.
    """

    conversations: list[MSAgentTurn]

    @field_validator("conversations")
    @classmethod
    def _shape(cls, turns: list[MSAgentTurn]) -> list[MSAgentTurn]:
        if not turns:
            raise ValueError("conversations is empty")
        for i, t in enumerate(turns):
            if t.role == "system" and i != 0:
                raise ValueError(f"turn {i + 1} is a system turn; only the first turn may be one")
        if not any(t.role == "user" for t in turns):
            raise ValueError("conversations has no user turn")
        return turns

    @property
    def system(self) -> str | None:
        return self.conversations[0].value if self.conversations[0].role == "system" else None

    def rounds(self) -> list[tuple[str, str]]:
        """(user text, assistant turn) pairs in order; consecutive user turns are joined, and a user
        turn with no assistant turn after it pairs with ""."""
        out: list[tuple[str, str]] = []
        user: list[str] = []
        for t in self.conversations:
            if t.role == "user":
                user.append(t.value)
            elif t.role == "assistant":
                out.append(("\n\n".join(user), t.value))
                user = []
        if user:
            out.append(("\n\n".join(user), ""))
        return out

    def assistant_turns(self) -> list[str]:
        return [t.value for t in self.conversations if t.role == "assistant"]

    def validate_turns(self) -> None:
        """Parse every assistant turn strictly (raises ValueError naming the turn and call)."""
        for i, t in enumerate(self.conversations):
            if t.role == "assistant":
                try:
                    parse_assistant_turn(t.value, strict=True)
                except ValueError as exc:
                    raise ValueError(f"turn {i + 1} (assistant): {exc}") from None


class PredictionRecord(_RecordFields):
    """A line of a predictions file: an id (optional) and either `predictions` (assistant turns)
    or a whole predicted `conversations` whose assistant turns are taken as the predictions."""

    conversations: list[MSAgentTurn] | None = None

    def turns(self) -> list[str]:
        if self.predictions is not None:
            return list(self.predictions)
        return [t.value for t in self.conversations or [] if t.role == "assistant"]


# -- one assistant turn ----------------------------------------------------------------------------------
class MSAgentCall(BaseModel):
    """A tool call read from a think block; `error` says why it could not be read (name is then "")."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw: str = ""
    error: str | None = None


class Segment(BaseModel):
    kind: Literal["text", "call", "exec"]
    text: str = ""
    call: MSAgentCall | None = None


class ParsedTurn(BaseModel):
    """An assistant turn split into text, calls and tool outputs, in order."""

    segments: list[Segment]

    @property
    def calls(self) -> list[MSAgentCall]:
        return [s.call for s in self.segments if s.call is not None]

    @property
    def results(self) -> list[str]:
        return [s.text for s in self.segments if s.kind == "exec"]

    @property
    def answer(self) -> str:
        """The final answer: the text after the last call or tool output (all of it when there is none)."""
        tail: list[str] = []
        for s in reversed(self.segments):
            if s.kind != "text":
                break
            tail.append(s.text)
        return "\n".join(reversed(tail)).strip()


def _unfence(body: str) -> str:
    body = _FENCE_OPEN.sub("", body, count=1)
    return _FENCE_CLOSE.sub("", body, count=1).strip()


def _decode_call(body: str, strict: bool) -> MSAgentCall:
    text = _unfence(body)
    obj: Any = None
    error: str | None = None
    try:  # strict=False: the dataset has raw newlines inside strings
        obj = json.loads(text, strict=False)
    except ValueError as exc:
        error = f"not valid JSON ({exc})"
    if obj is None and not strict:
        from raygent.llm_pool.formats.jsonrepair import JSONRepairError, loads_lenient

        try:
            obj, error = loads_lenient(text), None
        except JSONRepairError as exc:
            error = f"not valid JSON ({exc})"
    if obj is not None:
        error = None
        if not isinstance(obj, dict):
            error = f"expected a JSON object with api_name and parameters, got {type(obj).__name__}"
        else:
            name = next((obj[k] for k in ("api_name", "name") if isinstance(obj.get(k), str) and obj[k].strip()), None)
            args: Any = next((obj[k] for k in ("parameters", "arguments") if k in obj), {})
            if isinstance(args, str):  # parameters given as a JSON string
                try:
                    args = json.loads(args) if args.strip() else {}
                except ValueError:
                    pass
            if args is None:
                args = {}
            if name is None:
                error = "the call has no api_name"
            elif not isinstance(args, dict):
                error = f"parameters must be a JSON object, got {type(args).__name__}"
            else:
                return MSAgentCall(name=name.strip(), arguments=args, raw=text)
    snippet = text if len(text) <= 80 else text[:77] + "..."
    if strict:
        raise ValueError(f"tool call {snippet!r}: {error}")
    return MSAgentCall(name="", raw=text, error=error)


def parse_assistant_turn(value: str, *, strict: bool = False) -> ParsedTurn:
    """Split an assistant turn into text, call and exec segments.

    `strict` (references): a call whose JSON cannot be read raises ValueError. Otherwise
    (predictions) it becomes an `MSAgentCall` with `error` set, so it still takes its place when
    calls are compared by position. A think block cut off at the end of the text is still read.
    """
    segments: list[Segment] = []
    i, n = 0, len(value)

    def text(upto: int) -> None:
        chunk = value[i:upto].strip()
        if chunk:
            segments.append(Segment(kind="text", text=chunk))

    while i < n:
        think = _THINK_OPEN.search(value, i)
        exe = _EXEC_OPEN.search(value, i)
        first = min((m for m in (think, exe) if m), key=lambda m: m.start(), default=None)
        if first is None:
            break
        text(first.start())
        if first is think:
            close = _THINK_CLOSE.search(value, first.end())
            # a call ends at its closing tag, else at the next open tag (a cut-off call), else at the end
            following = (_THINK_OPEN.search(value, first.end()), _EXEC_OPEN.search(value, first.end()))
            nxt = min((m.start() for m in following if m), default=n)
            end, resume = (close.start(), close.end()) if close and close.start() <= nxt else (nxt, nxt)
            segments.append(Segment(kind="call", call=_decode_call(value[first.end():end], strict)))
        else:
            close = _EXEC_CLOSE.search(value, first.end())
            end, resume = (close.start(), close.end()) if close else (n, n)
            segments.append(Segment(kind="exec", text=_unfence(value[first.end():end])))
        i = resume
    text(n)
    return ParsedTurn(segments=segments)


# -- rendering -------------------------------------------------------------------------------------------
def render_call(name: str, arguments: dict[str, Any]) -> str:
    body = json.dumps({"api_name": name, "parameters": arguments}, ensure_ascii=False, default=str)
    return f"{THINK_OPEN}```JSON\n{body}\n```{THINK_CLOSE}"


def render_result(content: str | None) -> str:
    return f"{EXEC_OPEN}```JSON\n{(content or '').strip()}\n```{EXEC_CLOSE}"


def render_assistant_turn(messages: Sequence[Message]) -> str:
    """Assistant and tool messages (one answer's trajectory) -> one MSAgent assistant turn."""
    parts: list[str] = []
    for m in messages:
        if m.role == "assistant":
            if m.content and m.content.strip():
                parts.append(m.content.strip() + ("\n" if m.tool_calls else "\n\n"))
            for c in m.tool_calls or []:
                parts.append(render_call(c.name, c.arguments) + "\n\n")
        elif m.role == "tool":
            parts.append(render_result(m.content) + "\n")
    return "".join(parts).strip()


def render_system(system: str | None, tools: Sequence[ToolSpec] | None = None) -> str:
    """A system turn: the text, then the tools numbered as MSAgent-Bench lists them
    (`1. {"name", "description", "parameters"}`)."""
    text = (system if system is not None else DEFAULT_SYSTEM).strip()
    if tools:
        listed = "\n\n".join(
            f"{i}. " + json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters},
                                  ensure_ascii=False)
            for i, t in enumerate(tools, 1))
        text = f"{text}\n\n{listed}" if text else listed
    return text


def _is_summary(m: Message) -> bool:
    from raygent.memory.history import memory_kind

    return memory_kind(m) == "summary"


def _clean(messages: Sequence[Message], keep_repairs: bool) -> list[Message]:
    """Drop what is not part of the conversation: memory summaries, empty assistant messages, and
    (unless `keep_repairs`) the agent's "your tool call could not be read" follow-ups."""
    out: list[Message] = []
    for m in messages:
        if _is_summary(m):
            continue
        if m.role == "assistant" and not (m.content and m.content.strip()) and not m.tool_calls:
            continue
        if not keep_repairs and m.role == "user" and (m.content or "").startswith(_REPAIR_PREFIX):
            continue
        out.append(m)
    return out


def messages_to_record(messages: Sequence[Message], *, id: str | None = None, system: str | None = None,
                       tools: Sequence[ToolSpec] | None = None, keep_repairs: bool = False) -> MSAgentRecord:
    """raygent messages -> an MSAgent record.

    The system turn is `system` if given, else the messages' own system message(s), else
    DEFAULT_SYSTEM; `tools` are listed in it. Consecutive user messages form one user turn;
    everything between two user turns (assistant and tool messages) forms one assistant turn.
    Messages before the first user message are dropped, and so are memory summaries.
    """
    msgs = _clean(messages, keep_repairs)
    own_system = [m.content for m in msgs if m.role == "system" and m.content]
    turns: list[MSAgentTurn] = [MSAgentTurn(role="system", value=render_system(
        system if system is not None else ("\n\n".join(own_system) if own_system else None), tools))]
    user: list[str] = []
    answer: list[Message] = []

    def flush() -> None:
        if user:
            turns.append(MSAgentTurn(role="user", value="\n\n".join(user)))
            user.clear()
        if answer:
            turns.append(MSAgentTurn(role="assistant", value=render_assistant_turn(answer)))
            answer.clear()

    for m in msgs:
        if m.role == "system":
            continue
        if m.role == "user":
            if answer:
                flush()
            user.append(m.content or "")
        elif user or answer or any(t.role == "user" for t in turns):
            answer.append(m)
    flush()
    if len(turns) == 1:
        raise ValueError("no user message: a record needs at least one user turn")
    return MSAgentRecord(id=id, conversations=turns)


def assistant_turn_to_messages(value: str, *, strict: bool = True) -> list[Message]:
    """One MSAgent assistant turn -> assistant and tool messages.

    Text followed by calls becomes one assistant message with those `tool_calls`; each exec block a
    `tool` message answering the oldest call still without a result; the text after the last result
    the final assistant message. Unreadable calls raise with `strict`, and are dropped otherwise.
    """
    out: list[Message] = []
    pending: list[ToolCall] = []
    text: str | None = None
    calls: list[ToolCall] = []

    def flush() -> None:
        nonlocal text, calls
        if text is not None or calls:
            out.append(Message.assistant(text, tool_calls=calls or None))
        text, calls = None, []

    for seg in parse_assistant_turn(value, strict=strict).segments:
        if seg.kind == "text":
            if calls:
                flush()
            text = seg.text if text is None else f"{text}\n{seg.text}"
        elif seg.kind == "call":
            assert seg.call is not None
            if seg.call.error:
                continue
            call = ToolCall(name=seg.call.name, arguments=seg.call.arguments)
            calls.append(call)
            pending.append(call)
        else:
            flush()
            answered = pending.pop(0) if pending else None
            out.append(Message(role="tool", content=seg.text, tool_call_id=answered.id if answered else None,
                               name=answered.name if answered else None))
    flush()
    return out


def record_to_messages(record: MSAgentRecord, *, include_system: bool = True, strict: bool = True) -> list[Message]:
    """An MSAgent record -> raygent messages (system, user, assistant with tool_calls, tool)."""
    out: list[Message] = []
    for t in record.conversations:
        if t.role == "system":
            if include_system:
                out.append(Message.system(t.value))
        elif t.role == "user":
            out.append(Message.user(t.value))
        else:
            out.extend(assistant_turn_to_messages(t.value, strict=strict))
    return out


# -- files -----------------------------------------------------------------------------------------------
def _first_error(exc: ValidationError) -> str:
    problems = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(problems)


def _iter_objects(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or position, decoded value) for a JSONL file, or a JSON file holding one list."""
    src = str(path)
    with open(path, encoding="utf-8-sig") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith("["):
            try:
                data = json.load(f)
            except ValueError as exc:
                raise MSAgentFormatError(f"not valid JSON: {exc}", source=src) from None
            for i, obj in enumerate(data, 1):
                yield i, obj
            return
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except ValueError as exc:
                raise MSAgentFormatError(f"not valid JSON: {exc}", line=i, source=src) from None


def iter_msagent(path: str | Path, *, strict: bool = True) -> Iterator[MSAgentRecord]:
    """Records of a JSONL file (or a JSON list), each with `.line` set. With `strict` every assistant
    turn is parsed too, so a malformed tool call fails here with its line rather than later."""
    path = Path(path)
    for line, obj in _iter_objects(path):
        if not isinstance(obj, dict):
            raise MSAgentFormatError(f"expected a JSON object, got {type(obj).__name__}", line=line, source=str(path))
        try:
            record = MSAgentRecord.model_validate(obj)
            if strict:
                record.validate_turns()
        except ValidationError as exc:
            raise MSAgentFormatError(_first_error(exc), line=line, source=str(path)) from None
        except ValueError as exc:
            raise MSAgentFormatError(str(exc), line=line, source=str(path)) from None
        record._line = line
        yield record


def read_msagent(path: str | Path, *, strict: bool = True, limit: int | None = None) -> list[MSAgentRecord]:
    out: list[MSAgentRecord] = []
    for record in iter_msagent(path, strict=strict):
        if limit is not None and len(out) >= limit:
            break
        out.append(record)
    return out


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """A predictions file: lines with `predictions` (assistant turns) or whole `conversations`."""
    path = Path(path)
    out: list[PredictionRecord] = []
    for line, obj in _iter_objects(path):
        if not isinstance(obj, dict):
            raise MSAgentFormatError(f"expected a JSON object, got {type(obj).__name__}", line=line, source=str(path))
        try:
            record = PredictionRecord.model_validate(obj)
        except ValidationError as exc:
            raise MSAgentFormatError(_first_error(exc), line=line, source=str(path)) from None
        if record.predictions is None and record.conversations is None:
            raise MSAgentFormatError("a prediction needs 'predictions' (assistant turns) or 'conversations'",
                                     line=line, source=str(path))
        record._line = line
        out.append(record)
    return out


def dumps_record(record: MSAgentRecord | PredictionRecord) -> str:
    """One JSONL line (no newline); Chinese stays readable."""
    return json.dumps(record.model_dump(by_alias=True, exclude_none=True), ensure_ascii=False)


def write_msagent(path: str | Path, records: Iterable[MSAgentRecord | PredictionRecord]) -> int:
    """Write records as JSONL (parent folders created); returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(dumps_record(r) + "\n")
            n += 1
    return n


# -- the memory store ------------------------------------------------------------------------------------
def _called_specs(messages: Sequence[Message]) -> list[ToolSpec]:
    """Specs of the tools a session called, in first-call order: a built-in's own spec, else one
    inferred from the arguments it was given."""
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    types = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    specs: dict[str, ToolSpec] = {}
    for m in messages:
        for c in m.tool_calls or []:
            if c.name in specs:
                continue
            if c.name in BUILTIN_TOOLS:
                specs[c.name] = BUILTIN_TOOLS[c.name]().spec.model_copy(update={"examples": []})
            else:
                props = {k: {"type": types.get(type(v), "string")} for k, v in c.arguments.items()}
                specs[c.name] = ToolSpec(name=c.name, parameters={"type": "object", "properties": props})
    return list(specs.values())


async def sessions_to_msagent(store: Any, session_ids: Sequence[str] | None = None, *, system: str | None = None,
                              tools: Sequence[ToolSpec] | Literal["called"] | None = "called",
                              limit: int = 1000, keep_repairs: bool = False,
                              skipped: list[str] | None = None) -> list[MSAgentRecord]:
    """Stored sessions -> MSAgent records (trajectory collection for training), one per session.

    `store` is a MemoryStore (or its actor proxy); `session_ids` None takes the `limit` most recently
    written sessions. The record id is the session id. The system turn is `system`, else the
    session's stored system message, else DEFAULT_SYSTEM; `tools="called"` lists the tools the
    session called (a list of ToolSpec lists those; None lists none). Sessions without an assistant
    reply are left out (their ids appended to `skipped`); a named session that does not exist
    raises SessionNotFound.
    """
    from raygent.memory.store import SessionNotFound

    if session_ids is None:
        session_ids = [s.id for s in await store.list_sessions(limit=limit)]
    out: list[MSAgentRecord] = []
    for sid in session_ids:
        if await store.get_session(sid) is None:
            raise SessionNotFound(f"no session {sid!r} in this memory store")
        messages = await store.load(sid)
        specs = _called_specs(messages) if tools == "called" else list(tools or [])
        try:
            record = messages_to_record(messages, id=sid, system=system, tools=specs, keep_repairs=keep_repairs)
        except ValueError:
            record = None
        if record is None or not any(t.role == "assistant" and t.value for t in record.conversations):
            if skipped is not None:
                skipped.append(sid)
            continue
        out.append(record)
    return out


async def export_sessions(out: str | Path, store: Any = None, session_ids: Sequence[str] | None = None,
                          **options: Any) -> dict[str, Any]:
    """Write stored sessions as MSAgent JSONL to `out`. `store`: a MemoryStore, a state URL or path
    (see `open_memory_store`), or None for the SQLite store under RAYGENT_HOME. Returns
    `{"out", "written", "skipped"}`; `options` go to `sessions_to_msagent`."""
    from raygent.memory import open_memory_store

    own = store is None or isinstance(store, (str, Path))
    st = open_memory_store(store) if own else store
    skipped: list[str] = []
    try:
        records = await sessions_to_msagent(st, session_ids, skipped=skipped, **options)
    finally:
        if own:
            await st.close()
    written = write_msagent(out, records)
    return {"out": str(out), "written": written, "skipped": skipped}
