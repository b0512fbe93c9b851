"""API keys and endpoints for remote tools: an explicit value, else the environment, else `.env`.

Read at call time (not import time), so a key added to `.env` or the environment is picked up
by a running hub, and the `.env` file is only read, never loaded into `os.environ`.
"""

from __future__ import annotations

import os


def env_value(name: str, explicit: str | None = None) -> str | None:
    """`explicit` if given, else $NAME, else NAME from the nearest `.env` (searched from the cwd up)."""
    if explicit:
        return explicit
    value = os.environ.get(name)
    if value:
        return value
    try:
        from dotenv import dotenv_values, find_dotenv
    except ImportError:  # python-dotenv is a core dependency; tolerate its absence anyway
        return None
    path = find_dotenv(usecwd=True)
    if not path:
        return None
    return dotenv_values(path).get(name) or None
