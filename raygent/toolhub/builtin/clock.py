"""Current date and time in a given IANA time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from raygent.schema import ToolExample
from raygent.toolhub.base import Tool

_WEEKDAYS_ZH = "一二三四五六日"


class CurrentDatetimeTool(Tool):
    name = "current_datetime"
    description = "Get the current date, time and weekday (optionally in an IANA time zone). 当前日期时间。"
    parameters = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA time zone, e.g. Asia/Shanghai; default local"}},
    }
    domain = "utility"
    timeout_s = 5.0
    idempotent = True  # no effects: a hub that crashed mid-call runs it again
    examples = [ToolExample(query="What time is it now?", arguments={})]

    async def call(self, timezone: str | None = None) -> dict[str, str]:
        try:
            tz = ZoneInfo(timezone) if timezone else None
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}; use an IANA name such as 'Asia/Shanghai'") from exc
        now = datetime.now(tz).astimezone(tz)
        return {
            "iso": now.isoformat(timespec="seconds"),
            "date": now.date().isoformat(),
            "time": now.strftime("%H:%M:%S"),
            "weekday": now.strftime("%A"),
            "weekday_zh": "星期" + _WEEKDAYS_ZH[now.weekday()],
            "timezone": str(now.tzinfo),
        }
