"""Which text replies spell out a call (raygent.llm_pool.described_calls)."""

from __future__ import annotations

from raygent.llm_pool.described_calls import code_like, described_tools
from raygent.schema import ToolSpec

RECORD = ToolSpec(name="record", description="Record the intent of a customer query", parameters={
    "type": "object", "properties": {"atm_finder_start": {"type": "array"}, "faq_start": {"type": "array"},
                                     "location": {"type": "string"}}})
NODES = ToolSpec(name="requests.get", description="GET request", parameters={
    "type": "object", "properties": {"url": {"type": "string"}, "fabricName": {"type": "string"}}})


def test_code_like_names_are_identifiers_nobody_writes_in_prose():
    assert all(code_like(n) for n in ("case_id", "fabricName", "atm_finder_start", "nodeId"))
    assert not any(code_like(n) for n in ("location", "url", "id", "a_b", "Boston", "_private"))


def test_a_reply_naming_a_parameter_describes_that_tool_and_prose_does_not():
    assert described_tools("It should be classified under the 'atm_finder_start' intent.", [RECORD, NODES]) == [RECORD]
    assert described_tools('params = {"fabricName": "PEK-ACI"}', [RECORD, NODES]) == [NODES]
    assert described_tools("The location of the nearest ATM is on Main Street.", [RECORD, NODES]) == []
    assert described_tools("see /dispatcher/get_atm_finder_start_v2", [RECORD]) == []  # inside another name
    assert described_tools("", [RECORD]) == [] and described_tools("faq_start", None) == []


def test_a_request_holding_a_key_of_a_parameter_s_example_shape_names_that_tool():
    from raygent.llm_pool.described_calls import keyed_tools

    order = ToolSpec(name="lookup_order", parameters={"type": "object", "properties": {
        "order_id": {"type": "string", "description": "the order number, e.g. Z-9001"}}})
    parcel = ToolSpec(name="track_package", parameters={"type": "object", "properties": {
        "tracking_no": {"type": "string", "description": "the tracking number, e.g. TRK-00001"}}})
    assert keyed_tools("Who supplies the product in order A-1042?", [order, parcel]) == [order]
    assert keyed_tools("Where is parcel TRK-60871?", [order, parcel]) == [parcel]
    # no key, a key of another shape, or the example itself: none
    assert keyed_tools("Tell me a joke about orders", [order, parcel]) == []
    assert keyed_tools("Is order 1042 late?", [order, parcel]) == []
    assert keyed_tools("What does Z-9001 mean?", [order]) == []
