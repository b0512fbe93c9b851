"""Local HTTP servers on 127.0.0.1 that speak a provider's real wire protocol, for SDK tests.

They stand in for paid remote APIs (OpenAI, DashScope) that cannot be reached here: each test
scripts the exact replies (JSON bodies, SSE event streams, error statuses) and the server records
every request (path, headers, JSON body), so the official SDKs run unmodified against it and the
test checks both what the SDK sent and how the backend read the answer.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a JSON body, or (events set) a Server-Sent Events stream."""

    status: int = 200
    body: Any = None
    events: list[str] | None = None  # raw SSE event texts, each written as is followed by a blank line
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ScriptedHTTPServer:
    """A threaded HTTP server answering each request with the next scripted Reply (FIFO).

    With the script used up it answers 500 with an error body that says so (a test bug, visible).
    """

    def __init__(self, error_body: Any = None):
        self.replies: list[Reply] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._exhausted_body = error_body or {"error": {"message": "no scripted reply left", "type": "server_error",
                                                        "param": None, "code": None}}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with server._lock:
                    server.requests.append(Request(self.command, self.path, {k.lower(): v for k, v in
                                                                              self.headers.items()}, body))
                    reply = server.replies.pop(0) if server.replies else Reply(500, server._exhausted_body)
                if reply.delay_s:
                    import time

                    time.sleep(reply.delay_s)
                if reply.events is None:
                    data = json.dumps(reply.body, ensure_ascii=False).encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                for event in reply.events:
                    self.wfile.write(event.encode() + b"\n\n")
                    self.wfile.flush()
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- OpenAI chat-completions shapes -------------------------------------------------------------------
def openai_completion(content: str | None = None, tool_calls: list[dict] | None = None, *, finish: str | None = None,
                      model: str = "served-model", usage: tuple[int, int] = (7, 3)) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish or ("tool_calls" if tool_calls else "stop")}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def openai_chunk(delta: dict[str, Any] | None, finish: str | None = None, *, usage: tuple[int, int] | None = None,
                 model: str = "served-model") -> str:
    """One `data: {...}` SSE event of a chat.completion.chunk stream."""
    chunk: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1700000000,
                             "model": model, "choices": [] if delta is None else
                             [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        chunk["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return "data: " + json.dumps(chunk, ensure_ascii=False)


def openai_error(message: str, type: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


# -- DashScope native text-generation shapes ---------------------------------------------------------
DASHSCOPE_PATH = "/api/v1/services/aigc/text-generation/generation"


def dashscope_output(content: str = "", tool_calls: list[dict] | None = None, finish: str = "stop",
                     usage: tuple[int, int] = (12, 5)) -> dict[str, Any]:
    """A non-streamed DashScope reply with result_format="message"."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"output": {"choices": [{"finish_reason": finish, "message": message}]},
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)},
            "request_id": "req-test-1"}


def dashscope_event(n: int, content: str = "", tool_calls: list[dict] | None = None, finish: str = "null",
                    usage: tuple[int, int] = (12, 1)) -> str:
    """One SSE event as DashScope frames it (id, event:result, :HTTP_STATUS comment, data)."""
    body = dashscope_output(content, tool_calls, finish, usage)
    import json as _json

    return f"id:{n}\nevent:result\n:HTTP_STATUS/200\ndata:" + _json.dumps(body, ensure_ascii=False)


def dashscope_error_event(n: int, status: int, code: str, message: str) -> str:
    import json as _json

    return (f"id:{n}\nevent:error\n:HTTP_STATUS/{status}\nstatus:{status}\ndata:"
            + _json.dumps({"code": code, "message": message, "request_id": "req-test-err"}))


def dashscope_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "req-test-err"}
