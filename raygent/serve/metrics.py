"""Prometheus metrics of the HTTP server (`GET /metrics`, Prometheus text format).

A registry of its own per process (not the global one), so tests and several apps in one process
never collide. Route labels are the route's template (`/v1/runs/{run_id}`), never the raw path,
so ids cannot blow up the number of series.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("raygent_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.request_seconds = Histogram("raygent_http_request_seconds", "Time to the response's headers",
                                         ["method", "route"], registry=self.registry,
                                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.runs_in_flight = Gauge("raygent_agent_runs_in_flight", "Agent runs under way", ["agent"],
                                    registry=self.registry)
        self.run_seconds = Histogram("raygent_agent_run_seconds", "Agent run duration", ["agent", "status"],
                                     registry=self.registry,
                                     buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
        self.tool_calls = Counter("raygent_agent_tool_calls", "Tool calls made by agents", ["agent", "tool"],
                                  registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every request by method, route template and status (pure ASGI: streams pass through)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                self.metrics.request_seconds.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(scope["method"], _route(scope), str(status["code"])).inc()


def _route(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    raw = str(scope.get("path", ""))
    return "/a2a" if raw.startswith("/a2a/") else "other"
