"""Errors the remote backends raise: one family, each naming the endpoint and what to check.

SDK exceptions (openai, dashscope) are mapped onto these so that callers (the agent loop, the
pool, the HTTP ingress) handle every backend the same way; `status` is the HTTP status to pass
on (the ingress can answer with it), `retryable` says whether trying again may help.
"""

from __future__ import annotations


class BackendError(RuntimeError):
    """A chat backend could not produce a reply."""

    status: int = 502
    retryable: bool = False

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None,
                 backend: str | None = None):
        super().__init__(message)
        self.url = url
        self.backend = backend
        if status is not None:
            self.status = status


class BackendConfigError(BackendError, ValueError):
    """The backend is configured wrongly or lacks a package/key; raised before any request."""

    status = 500


class BackendAuthError(BackendError):
    """The server refused the credentials (HTTP 401/403)."""

    status = 401


class BackendConnectionError(BackendError):
    """No connection (refused, DNS, TLS) or no answer in time."""

    status = 503
    retryable = True


class BackendRateLimitError(BackendError):
    """Too many requests or quota exhausted (HTTP 429)."""

    status = 429
    retryable = True


class BackendRequestError(BackendError):
    """The server rejected the request itself (HTTP 400/404/422: model name, parameters, tools)."""

    status = 400


class BackendServerError(BackendError):
    """The server failed (HTTP 5xx) or answered something unreadable."""

    status = 502
    retryable = True
