"""Dates put in the one format a tool's schema names (raygent.llm_pool.date_formats): what is
rewritten, and what is left as the model wrote it because its meaning is not certain."""

from __future__ import annotations

from datetime import date

from raygent.llm_pool.date_formats import described_date_format, format_dates, in_described_format, read_date
from raygent.schema import ToolCall, ToolSpec

US = {"type": "string", "description": "The date of the journey in the format 'MM/DD/YYYY'."}
ISO = {"type": "string", "description": "The date of the event, in the format 'YYYY-MM-DD'."}
EUROPEAN = {"type": "string", "description": "The date to check for movies, formatted as 'DD-MM-YYYY'."}


def test_the_one_format_a_description_names_is_found():
    assert described_date_format(US) == "MM/DD/YYYY"
    assert described_date_format({"type": "string", "description": "Start date (%Y-%m-%d)"}) == "%Y-%M-%D"
    assert described_date_format({"type": "string", "description": "'YYYY-MM-DD' or 'MM/DD/YYYY'"}) is None
    assert described_date_format({"type": "integer", "description": "days since YYYY-MM-DD"}) is None
    assert described_date_format({"type": "string", "description": "The date of the event."}) is None


def test_unambiguous_dates_are_rewritten_in_the_named_format():
    assert in_described_format("2023-10-11", US) == "10/11/2023"
    assert in_described_format("2023-05-2", ISO) == "2023-05-02"  # a dropped zero
    assert in_described_format("March 7th, 2023", ISO) == "2023-03-07"
    assert in_described_format("4 November 2024", EUROPEAN) == "04-11-2024"
    assert in_described_format("5/2/2023", US) == "05/02/2023"  # the named shape: zeros added
    assert read_date("2023-02-30") is None  # no such day


def test_what_cannot_be_read_for_certain_is_left():
    assert in_described_format("10/10/2022", ISO) is None  # October or the 10th month? day first or not is unknown
    assert in_described_format("10/11/2023", EUROPEAN) is None  # slashes where dashes are named: order unknown
    assert in_described_format("2023-10-11T09:00", US) is None  # a time too
    assert in_described_format("next Friday", ISO) is None
    assert in_described_format("2023-10-11", {"type": "string", "description": "When."}) is None
    assert in_described_format("10/11/2023", US) is None  # already right


def test_calls_get_their_dates_rewritten_with_a_note():
    tool = ToolSpec(name="get_train_tickets", description="Book a train", parameters={
        "type": "object", "properties": {"date_of_journey": US, "to": {"type": "string"}}})
    call = ToolCall(name="get_train_tickets", arguments={"date_of_journey": "2023-10-11", "to": "2023-10-11"})
    calls, notes = format_dates([call], [tool])
    assert calls[0].arguments == {"date_of_journey": "10/11/2023", "to": "2023-10-11"}
    assert notes == ["wrote date_of_journey='2023-10-11' of 'get_train_tickets' as '10/11/2023': the format its "
                     "schema names"]
    assert format_dates([ToolCall(name="other", arguments={"d": "2023-10-11"})], [tool])[0][0].arguments == {
        "d": "2023-10-11"}
