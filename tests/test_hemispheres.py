"""Coordinates the request gives south or west become negative (raygent.llm_pool.hemispheres)."""

from __future__ import annotations

from raygent.llm_pool.hemispheres import signed_coordinates
from raygent.schema import Message, ToolCall


def test_south_and_west_coordinates_become_negative():
    ask = [Message.user("The hourly forecast at the coordinates 37.8651 N, 119.5383 W, please.")]
    call = ToolCall(name="fetch_weather", arguments={"latitude": 37.8651, "longitude": 119.5383, "days": 10})
    calls, notes = signed_coordinates([call], ask)
    assert calls[0].arguments == {"latitude": 37.8651, "longitude": -119.5383, "days": 10}
    assert len(notes) == 1
    pair = ToolCall(name="distance", arguments={"coord1": [33.4484, 112.074], "coord2": [-34.05, 118.2437]})
    ask = [Message.user("Distance from 33.4484 N, 112.0740 W to 34.05° S, 118.2437 west")]
    assert signed_coordinates([pair], ask)[0][0].arguments == {"coord1": [33.4484, -112.074],
                                                               "coord2": [-34.05, -118.2437]}


def test_other_numbers_and_unmarked_requests_are_left():
    lamp = ToolCall(name="energy_cost", arguments={"power": 100, "hours": 10})
    assert signed_coordinates([lamp], [Message.user("A 100 W lamp for 10 s")]) == ([lamp], [])
    plain = ToolCall(name="fetch_weather", arguments={"latitude": 37.8651, "longitude": 119.5383})
    assert signed_coordinates([plain], [Message.user("Weather at 37.8651, 119.5383")]) == ([plain], [])
