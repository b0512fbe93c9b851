"""The broad tool-use training data (`raygent.training.tooluse`): well-formed, grounded, reproducible,
and disjoint from BFCL (the development set) and from the unseen multi-step dev set."""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import jsonschema
import pytest

from raygent.training.tooluse import CATALOGUE, CHAINS, TOOLS, write_tool_use


@pytest.fixture(scope="module")
def conversations():
    return write_tool_use(240, seed=3)


def test_the_mix_has_every_kind_and_groups_share_their_tools(conversations):
    kinds = Counter(c.kind for c in conversations)
    assert set(kinds) == {"single", "parallel", "chain2", "chain3", "abstain"}
    assert kinds["single"] > 50 and kinds["parallel"] > 30 and kinds["chain2"] > 25 and kinds["abstain"] > 30
    groups = [tuple(t.name for t in c.tools) for c in conversations]
    # 240 in groups of 8 sharing one tool set: training computes each group's system turn once
    assert all(len(set(groups[i:i + 8])) == 1 for i in range(0, 240, 8))
    # one tool on offer (as in BFCL's simple and irrelevance cases), two, or a chain's two plus others
    sizes = Counter(len(g) for g in groups[::8])
    assert sizes[1] >= 5 and sizes[2] >= 5 and sizes[4] + sizes[5] >= 5, sizes
    declined_alone = [c for c in conversations if c.kind == "abstain" and len(c.tools) == 1]
    assert len(declined_alone) >= 15
    assert write_tool_use(240, seed=3) == conversations
    assert write_tool_use(240, seed=4) != conversations


def test_every_call_is_valid_offered_and_its_result_is_the_tools_own(conversations):
    for conv in conversations:
        offered = {t.name: t for t in conv.tools}
        calls = {}
        for message in conv.messages:
            for call in message.tool_calls or []:
                assert call.name in offered, (call.name, list(offered))
                jsonschema.validate(call.arguments, offered[call.name].parameters)
                calls[call.id] = call
            if message.role == "tool":
                call = calls[message.tool_call_id]
                assert json.loads(message.content) == TOOLS[call.name].run(**call.arguments)
        if conv.kind == "abstain":
            assert [m.role for m in conv.messages] == ["user", "assistant"] and conv.messages[1].content
        if conv.kind == "parallel":
            assert len(conv.messages[1].tool_calls) == 2
        # every request shows the values its first calls pass (copied, not invented)
        request = conv.messages[0].content
        for call in conv.messages[1].tool_calls or []:
            for name, value in call.arguments.items():
                if isinstance(value, str):
                    assert value in request, (name, value, request)


def test_later_calls_take_their_values_from_earlier_results(conversations):
    chained = [c for c in conversations if c.kind in ("chain2", "chain3")]
    assert chained
    for conv in chained:
        results = [json.loads(m.content) for m in conv.messages if m.role == "tool"]
        calls = [m.tool_calls[0] for m in conv.messages if m.tool_calls]
        for earlier, later in zip(results, calls[1:]):
            fed = [v for v in later.arguments.values() if v in earlier.values()]
            assert fed, (later, earlier)
            assert not any(str(v) in conv.messages[0].content for v in fed if len(str(v)) > 4)


def test_no_tool_collides_with_builtin_or_unseen_dev_set_tools():
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    names = set(TOOLS)
    assert len(names) == len(CATALOGUE)
    assert not names & set(BUILTIN_TOOLS)
    unseen = open(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "multi_step_unseen.py")).read()
    assert not {n for n in names if re.search(rf"\b{n}\b", unseen)}
    assert all(first in TOOLS and second in TOOLS for _, first, second, _, _ in CHAINS)


def test_nothing_comes_from_bfcl(conversations):
    """BFCL is the development set: none of its functions or questions may be trained on."""
    from raygent.evaluation.bfcl import BFCLDataMissing, load_cases

    try:
        cases = load_cases("simple_python,multiple,parallel,parallel_multiple,irrelevance,live_simple,"
                           "live_multiple,live_parallel,live_parallel_multiple,live_irrelevance")
    except BFCLDataMissing as exc:
        if os.environ.get("CI"):
            raise  # `make setup` caches the wheel: CI must check this
        pytest.skip(f"BFCL data not on this machine: {exc}")
    functions = {t.name for case in cases for t in case.tools}
    questions = {m.content.strip().lower() for case in cases for m in case.messages if m.role == "user" and m.content}
    assert len(functions) > 1000 and len(questions) > 1000
    assert not set(TOOLS) & functions
    requests = {c.messages[0].content.strip().lower() for c in conversations}
    assert not requests & questions


def test_parallel_replies_train_both_calls(embedded_llm):
    from raygent.training.sft import render_examples

    [conv] = [c for c in write_tool_use(16, seed=5) if c.kind == "parallel"][:1]
    [example] = render_examples([conv], embedded_llm)
    llama = embedded_llm.load()
    trained = llama.detokenize([t for t, learn in zip(example.ids, example.train) if learn], special=True).decode()
    assert trained.count("<tool_call>") == 2
    for call in conv.messages[1].tool_calls:
        assert json.dumps(call.name) in trained
