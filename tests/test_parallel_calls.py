"""The missing call of a grid of parallel calls (raygent.llm_pool.parallel_calls): added where the
request lists both arguments' values together, left alone where it does not."""

from __future__ import annotations

from raygent.llm_pool.parallel_calls import complete_grids, listed_together
from raygent.schema import Message, ToolCall


def _wins(team: str, season: int) -> ToolCall:
    return ToolCall(name="calculate_winning_percentage", arguments={"team": team, "season": season})


def test_the_one_missing_combination_of_two_listed_arguments_is_added():
    ask = [Message.user("Find the winning percentage of Lakers and Bulls in NBA seasons 2018 and 2020.")]
    calls = [_wins("Lakers", 2018), _wins("Bulls", 2020), _wins("Lakers", 2020)]
    out, notes = complete_grids(calls, ask)
    assert [(c.arguments["team"], c.arguments["season"]) for c in out] == [
        ("Lakers", 2018), ("Bulls", 2020), ("Lakers", 2020), ("Bulls", 2018)]
    assert out[3].id not in {c.id for c in calls}  # a call of its own
    assert len(notes) == 1 and "Bulls" in notes[0]
    # at most max_calls calls
    assert complete_grids(calls, ask, max_calls=3) == (calls, [])


def test_values_not_listed_together_or_a_full_grid_are_left_alone():
    # a payout of 5 then 6 million, shares of 2 then 2.5 million: scenarios, not a grid
    dividend = [Message.user("We paid 5000000 with 2000000 shares. What if we paid 6000000 with the same shares? "
                             "And what if we also had 2500000 shares?")]
    calls = [ToolCall(name="dividend", arguments={"payout": p, "shares": s})
             for p, s in ((5000000, 2000000), (6000000, 2000000), (6000000, 2500000))]
    assert complete_grids(calls, dividend) == (calls, [])
    ask = [Message.user("Find the winning percentage of Lakers and Bulls in NBA seasons 2018 and 2020.")]
    full = [_wins(t, s) for t in ("Lakers", "Bulls") for s in (2018, 2020)]
    assert complete_grids(full, ask) == (full, [])
    # other arguments differ: not one grid
    mixed = [_wins("Lakers", 2018), _wins("Bulls", 2020),
             ToolCall(name="calculate_winning_percentage", arguments={"team": "Lakers", "season": 2020, "x": 1})]
    assert complete_grids(mixed, ask) == (mixed, [])


def test_listed_together_reads_commas_and_or_and_one_word_between():
    assert listed_together(["lakers", "bulls"], "lakers and bulls")
    assert listed_together([2018, 2020], "in seasons 2020 and 2018")
    assert listed_together(["a1", "b2", "c3"], "a1, b2, and c3")
    assert not listed_together(["lakers", "bulls"], "lakers won. later the bulls lost")
    assert not listed_together(["lakers", "celtics"], "lakers and bulls")


def test_a_call_another_call_of_its_tool_holds_whole_is_dropped():
    from raygent.llm_pool.parallel_calls import drop_subsumed_calls

    email = [ToolCall(name="send_email", arguments={"to": "andy@gorilla.ai", "subject": "Forecast"}),
             ToolCall(name="send_email", arguments={"to": "andy@gorilla.ai", "subject": "Forecast",
                                                    "body": "where is the forecast?"})]
    ask = [Message.user("Draft an email to andy@gorilla.ai with the subject 'Forecast' and the message "
                        "'where is the forecast?'")]
    kept, notes = drop_subsumed_calls(email, ask)
    assert kept == email[1:] and len(notes) == 1
    # asked for again with a change, or the added value listed with another: both calls stay
    again = [Message.user("Fetch the DNA sequence XYZ123, then fetch the same sequence in 'genbank' format.")]
    dna = [ToolCall(name="fetch_dna", arguments={"id": "XYZ123"}),
           ToolCall(name="fetch_dna", arguments={"id": "XYZ123", "format": "genbank"})]
    assert drop_subsumed_calls(dna, again) == (dna, [])
    listed = [Message.user("The resistance of a 5m wire with resistivity of copper and aluminum")]
    wires = [ToolCall(name="resistance", arguments={"length": 5}),
             ToolCall(name="resistance", arguments={"length": 5, "resistivity": "aluminum"})]
    assert drop_subsumed_calls(wires, listed) == (wires, [])
    other_tool = [ToolCall(name="a", arguments={"x": 1}), ToolCall(name="b", arguments={"x": 1, "y": 2})]
    assert drop_subsumed_calls(other_tool, [Message.user("x is 1, y is 2")]) == (other_tool, [])
