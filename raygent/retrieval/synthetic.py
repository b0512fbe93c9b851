"""Synthetic tool catalogues of any size (up to millions), for scale tests and benchmarks.

Each tool is an (action, object, context) combination with a templated English description and
two or three parameters, so that catalogues contain many near-duplicates (the same object under
other actions, the same action on similar objects), which is what makes tool retrieval hard.
Deterministic for a given seed; tool i is the same whatever n is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from raygent.schema import ToolSpec

ACTIONS = ["get", "list", "create", "update", "delete", "search", "export", "import", "validate", "summarize",
           "translate", "convert", "schedule", "cancel", "approve", "archive", "restore", "monitor", "predict",
           "analyze", "compare", "sync", "share", "lock", "notify", "estimate", "rank", "tag", "merge", "audit"]
OBJECTS = ["invoice", "weather forecast", "flight booking", "hotel reservation", "stock quote", "exchange rate",
           "calendar event", "email draft", "support ticket", "user profile", "shipping label", "parking permit",
           "recipe", "playlist", "podcast episode", "medical appointment", "insurance claim", "tax return",
           "bank transfer", "credit card statement", "restaurant table", "movie showtime", "train timetable",
           "bus route", "bike rental", "car lease", "apartment listing", "job posting", "resume", "payroll run",
           "expense report", "purchase order", "warehouse stock", "delivery slot", "customer review",
           "product catalog", "coupon code", "loyalty points", "gift card", "subscription plan", "sales lead",
           "marketing campaign", "survey response", "blog post", "news article", "social media post",
           "video upload", "photo album", "music license", "software license", "server log", "backup snapshot",
           "dns record", "ssl certificate", "firewall rule", "database table", "api key", "git branch",
           "pull request", "build pipeline", "test report", "bug report", "feature flag", "sprint board",
           "meeting room", "conference call", "translation memory", "dictionary entry", "math exercise",
           "exam schedule", "course enrollment", "library loan", "museum ticket", "concert ticket",
           "sports score", "fitness workout", "sleep record", "nutrition plan", "pet vaccination",
           "plant watering plan", "energy meter reading", "solar panel output", "smart thermostat",
           "door lock", "security camera", "air quality index", "earthquake alert", "tide table",
           "satellite image", "map route", "traffic incident", "fuel price", "charging station",
           "vehicle inspection", "driver license", "passport application", "visa status", "court case",
           "patent filing", "trademark search", "company registry", "shareholder vote", "crypto wallet"]
CONTEXTS = ["for a given city", "for the current user", "in a shared workspace", "by date range",
            "for a team", "across all regions", "for a single account", "with optional filters",
            "in the sandbox environment", "for a partner organisation", "by identifier", "for next week",
            "in a specific currency", "for a mobile device", "with audit logging", "in bulk",
            "for premium customers", "from an uploaded file", "for a project", "in real time"]
PARAMS = [("id", "identifier of the {obj}"), ("date", "date in ISO format"), ("city", "city name"),
          ("limit", "maximum number of results"), ("currency", "ISO currency code"),
          ("user_id", "identifier of the user"), ("region", "region or country code"),
          ("query", "free-text search query"), ("format", "output format, json or csv"),
          ("language", "language code, e.g. en or zh")]
TEMPLATES = ["{Action} the {obj} {ctx}.", "Use this tool to {action} a {obj} {ctx}.",
             "{Action} {obj} records {ctx} and return the result.", "Service that can {action} the {obj} {ctx}."]


def _combo(i: int) -> tuple[str, str, str, int]:
    a, rest = i % len(ACTIONS), i // len(ACTIONS)
    o, rest = rest % len(OBJECTS), rest // len(OBJECTS)
    c, rest = rest % len(CONTEXTS), rest // len(CONTEXTS)
    return ACTIONS[a], OBJECTS[o], CONTEXTS[c], rest


def synthetic_tool(i: int) -> ToolSpec:
    """Tool number i of the catalogue."""
    action, obj, ctx, variant = _combo(i)
    slug = obj.replace(" ", "_")
    name = f"{action}_{slug}_{i}"
    tmpl = TEMPLATES[(i // 7) % len(TEMPLATES)]
    desc = tmpl.format(Action=action.capitalize(), action=action, obj=obj, ctx=ctx)
    if variant:
        desc += f" Variant {variant}."
    rng = np.random.default_rng(i)
    picks = rng.choice(len(PARAMS), size=2 + i % 2, replace=False)
    props = {PARAMS[p][0]: {"type": "string", "description": PARAMS[p][1].format(obj=obj)} for p in picks}
    return ToolSpec(name=name, description=desc, parameters={"type": "object", "properties": props})


def synthetic_tools(n: int, start: int = 0) -> Iterator[ToolSpec]:
    for i in range(start, start + n):
        yield synthetic_tool(i)


def synthetic_query(i: int) -> str:
    """A request that tool i answers (paraphrased: no template words, the object and action kept)."""
    action, obj, ctx, _ = _combo(i)
    return f"please {action} my {obj} {ctx.replace('for a', 'for one').replace('the current user', 'me')}"
