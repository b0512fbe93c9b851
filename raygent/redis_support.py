"""What raygent's Redis-backed components share: importing redis-py's asyncio client with an install
hint, and a server URL safe to print (no password)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

INSTALL_HINT = "pip install 'raygent[redis]' (or pip install 'redis>=5')"
#: URL schemes that name a Redis server in a state / store URL
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(REDIS_SCHEMES)


def redis_asyncio(component: str) -> Any:
    """redis-py's asyncio module; a missing redis-py names the component that needs it."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{component} needs redis-py (its asyncio client): {INSTALL_HINT}") from exc
    return aioredis


def safe_url(url: str) -> str:
    """The URL without its password, for messages and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
