"""MSAgent-Bench records and the trajectory metrics (Action EM, Argument F1, ROUGE-L): parsing and
writing, hand-computed scores, stored sessions -> MSAgent records, malformed input, and the
`raygent eval trajectories | export-sessions` handlers through argparse. No model, no network."""

from __future__ import annotations

import argparse
import json

import pytest

from raygent.evaluation import trajectories_cli
from raygent.evaluation.msagent import (
    MSAgentFormatError,
    MSAgentRecord,
    export_sessions,
    messages_to_record,
    parse_assistant_turn,
    read_msagent,
    read_predictions,
    record_to_messages,
    render_call,
    render_result,
    sessions_to_msagent,
    write_msagent,
)
from raygent.evaluation.trajectories import (
    argument_f1,
    evaluate_files,
    lcs_length,
    pair_predictions,
    predict_with_agent,
    replay_tools,
    rouge_l,
    score_pairs,
    score_record,
    tokenize,
)
from raygent.memory import SQLiteMemoryStore
from raygent.memory.history import summary_message
from raygent.schema import Message, ToolCall

SYSTEM = ('当前对话可以使用的插件信息如下，请自行判断是否需要调用插件来解决当前用户问题。\n\n'
          '1. {"name": "address_parse", "description": "地址解析", "parameters": [{"name": "text", '
          '"description": "地址文本", "required": true}]}\n\n'
          '2. {"name": "calculator", "description": "计算器", "parameters": [{"name": "expression", '
          '"description": "算式", "required": true}]}')
ADDRESS = "浙江杭州市江干区九堡镇三村村一区"
ADDRESS_RESULT = '{"province": "浙江省", "city": "杭州市", "district": "江干区"}'
ADDRESS_ANSWER = "地址解析结果：浙江省杭州市江干区，九堡镇三村村一区。"


def turn(*parts: str) -> str:
    return "".join(parts)


def call(name: str, args: dict) -> str:
    return render_call(name, args)


def ref_address() -> MSAgentRecord:
    return MSAgentRecord.model_validate({"id": "zh-1", "conversations": [
        {"from": "system", "value": SYSTEM},
        {"from": "user", "value": f"使用地址识别模型，从下面的地址中找到省市区等元素，地址：{ADDRESS}"},
        {"from": "assistant", "value": turn("好的，我来调用地址解析。", call("address_parse", {"text": ADDRESS}),
                                            "\n\n", render_result(ADDRESS_RESULT), "\n", ADDRESS_ANSWER)},
    ]})


def ref_two_turns() -> MSAgentRecord:
    return MSAgentRecord.model_validate({"id": "en-2", "conversations": [
        {"from": "system", "value": "You can use tools."},
        {"from": "user", "value": "What is 23*47+12?"},
        {"from": "assistant", "value": turn(call("calculator", {"expression": "23*47+12"}),
                                            render_result('{"result": 1093}'), "The result is 1093.")},
        {"from": "user", "value": "Now convert 20 C to F and parse the address."},
        {"from": "assistant", "value": turn(call("c_to_f", {"celsius": 20, "precision": 1, "round": True}),
                                            render_result("68.0"),
                                            call("address_parse", {"text": ADDRESS}), render_result(ADDRESS_RESULT),
                                            "It is 68 F; the address is in Hangzhou.")},
    ]})


# -- parsing and writing ---------------------------------------------------------------------------------
def test_round_trip_jsonl_with_chinese_and_extra_fields(tmp_path):
    records = [ref_address(), ref_two_turns()]
    records[0] = records[0].model_copy(update={"predictions": ["直接回答"]})
    raw = records[1].model_dump(by_alias=True, exclude_none=True)
    raw["source"] = "hand-made"  # unknown fields are kept
    records[1] = MSAgentRecord.model_validate(raw)
    path = tmp_path / "refs.jsonl"
    assert write_msagent(path, records) == 2
    text = path.read_text(encoding="utf-8")
    assert "浙江省" in text and "\\u" not in text  # Chinese stays readable
    assert '"from": "system"' in text
    back = read_msagent(path)
    assert [r.model_dump(by_alias=True) for r in back] == [r.model_dump(by_alias=True) for r in records]
    assert [r.line for r in back] == [1, 2]
    assert back[1].model_extra == {"source": "hand-made"}
    assert back[0].predictions == ["直接回答"]


def test_reads_dataset_variants(tmp_path):
    """conversations as a string (some splits), a JSON list file, ShareGPT roles, int ids, blank lines."""
    conv = [{"from": "system", "value": "s"}, {"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"id": 7, "conversations": json.dumps(conv, ensure_ascii=False)}, ensure_ascii=False)
                    + "\n\n" + json.dumps({"conversations": str(conv)}) + "\n", encoding="utf-8")
    a, b = read_msagent(path)
    assert a.id == "7" and [t.role for t in a.conversations] == ["system", "user", "assistant"]
    assert b.conversations[2].value == "你好！" and b.line == 3
    listed = tmp_path / "v.json"
    listed.write_text(json.dumps([{"conversations": conv}] * 3), encoding="utf-8")
    assert len(read_msagent(listed)) == 3 and len(read_msagent(listed, limit=2)) == 2


def test_parse_assistant_turn_segments():
    ref = ref_two_turns().assistant_turns()[1]
    parsed = parse_assistant_turn(ref, strict=True)
    assert [(c.name, c.arguments) for c in parsed.calls] == [
        ("c_to_f", {"celsius": 20, "precision": 1, "round": True}), ("address_parse", {"text": ADDRESS})]
    assert parsed.results == ["68.0", ADDRESS_RESULT]
    assert parsed.answer == "It is 68 F; the address is in Hangzhou."
    # the dataset's own layout: pretty-printed JSON with a raw newline, lower-case fence, url field
    raw = ('<|startofthink|>```json\n{\n   "api_name": "modelscope_text-address",\n   "url": "http://x",\n'
           '   "parameters": {"text": "杭州\n市"}\n}\n```<|endofthink|>\n\n<|startofexec|>```JSON\n'
           '{"result": {name: "unquoted"}}\n```<|endofexec|>\n答案')
    parsed = parse_assistant_turn(raw, strict=True)
    assert parsed.calls[0].name == "modelscope_text-address" and parsed.calls[0].arguments == {"text": "杭州\n市"}
    assert parsed.results == ['{"result": {name: "unquoted"}}'] and parsed.answer == "答案"
    # model output: a cut-off call is read, a broken one keeps its place with an error
    cut = parse_assistant_turn('<|startofthink|>```JSON\n{"api_name": "calculator", '
                               '"parameters": {"expression": "1+1"}}')
    assert cut.calls[0].name == "calculator" and cut.answer == ""
    broken = parse_assistant_turn("<|startofthink|>not json at all<|endofthink|>then text")
    assert broken.calls[0].name == "" and broken.calls[0].error and broken.answer == "then text"
    assert parse_assistant_turn("只有回答。").answer == "只有回答。"


def test_messages_round_trip():
    c1 = ToolCall(name="address_parse", arguments={"text": ADDRESS})
    c2, c3 = ToolCall(name="calculator", arguments={"expression": "2**10"}), ToolCall(name="current_datetime")
    messages = [
        Message.user("解析地址：" + ADDRESS),
        Message.assistant("好的。", tool_calls=[c1]),
        Message(role="tool", content=ADDRESS_RESULT, tool_call_id=c1.id, name=c1.name),
        Message.assistant(ADDRESS_ANSWER),
        Message.user("2**10 and the time?"),
        Message.assistant(None, tool_calls=[c2, c3]),
        Message(role="tool", content="1024", tool_call_id=c2.id, name=c2.name),
        Message(role="tool", content='{"iso": "2024-01-01T00:00:00"}', tool_call_id=c3.id, name=c3.name),
        Message.assistant("1024, at midnight."),
    ]
    record = messages_to_record(messages, id="s1", system="sys")
    assert [t.role for t in record.conversations] == ["system", "user", "assistant", "user", "assistant"]
    assert record.conversations[0].value == "sys"
    record.validate_turns()
    back = record_to_messages(record, include_system=False)
    assert [(m.role, m.content) for m in back] == [(m.role, m.content) for m in messages]
    for orig, new in zip(messages, back):
        assert ([(c.name, c.arguments) for c in new.tool_calls or []]
                == [(c.name, c.arguments) for c in orig.tool_calls or []])
        if new.role == "tool":
            assert new.name == orig.name
    by_id = {c.id: c.name for m in back for c in m.tool_calls or []}
    assert all(by_id[m.tool_call_id] == m.name for m in back if m.role == "tool")
    # record -> messages -> record is the identity on the text
    assert messages_to_record(back, id="s1", system="sys").model_dump(by_alias=True) == record.model_dump(by_alias=True)


# -- malformed input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("{not json", "line 2: not valid JSON"),
    ('["a list"]', "line 2: expected a JSON object"),
    ('{"id": "x"}', "line 2: conversations: Field required"),
    ('{"conversations": []}', "line 2: conversations: conversations is empty"),
    ('{"conversations": [{"from": "bot", "value": "hi"}]}', "unknown role 'bot'"),
    ('{"conversations": [{"from": "assistant", "value": "hi"}]}',
     "line 2: conversations: conversations has no user turn"),
    ('{"conversations": [{"from": "user", "value": "a"}, {"from": "system", "value": "b"}]}',
     "turn 2 is a system turn"),
    ('{"conversations": [{"from": "user", "value": "a"}, {"from": "assistant", "value": '
     '"<|startofthink|>```JSON\\n{\\"api_name\\": broken}\\n```<|endofthink|>"}]}',
     "line 2: turn 2 (assistant): tool call"),
    ('{"conversations": [{"from": "user", "value": "a"}, {"from": "assistant", "value": '
     '"<|startofthink|>{\\"parameters\\": {}}<|endofthink|>"}]}', "the call has no api_name"),
])
def test_malformed_records_name_the_line(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(ref_address().model_dump(by_alias=True, exclude_none=True), ensure_ascii=False)
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(MSAgentFormatError) as info:
        read_msagent(path)
    assert expected in str(info.value) and str(path) in str(info.value)
    assert info.value.line == 2


def test_prediction_pairing_errors(tmp_path):
    refs = [ref_address(), ref_two_turns()]
    with pytest.raises(MSAgentFormatError, match="no 'predictions'"):
        pair_predictions(refs)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"predictions": ["x"]}\n', encoding="utf-8")
    with pytest.raises(MSAgentFormatError, match="2 references but only 1 predictions"):
        pair_predictions(refs, read_predictions(preds))
    preds.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(MSAgentFormatError, match="line 1: a prediction needs"):
        read_predictions(preds)


# -- the metrics -----------------------------------------------------------------------------------------
def test_tokenize_and_lcs():
    assert tokenize("浙江省，杭州市!") == ["浙", "江", "省", "杭", "州", "市"]
    assert tokenize("The Cat's 3.5 kg, 调用API") == ["the", "cat", "s", "3", "5", "kg", "调", "用", "api"]
    assert tokenize("") == [] and tokenize("  ，。!") == []
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_hand_computed():
    assert rouge_l("The cat sat on the mat.", "the cat sat on the mat") == 1.0
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides
    assert rouge_l("the cat is on the mat", "The cat sat on the mat") == pytest.approx(5 / 6)
    # Chinese by character: LCS 杭州市 = 3; P = 3/5, R = 3/6, F1 = 2PR/(P+R) = 6/11
    assert rouge_l("杭州市浙江", "浙江省杭州市") == pytest.approx(6 / 11)
    assert rouge_l("", "浙江省") == 0.0 and rouge_l("北京", "浙江省") == 0.0 and rouge_l("", "") == 1.0


def test_argument_f1_hand_computed():
    ref = {"a": 1, "b": "x", "c": True}
    assert argument_f1(dict(ref), ref) == 1.0
    assert argument_f1({"a": 1.0, "b": " x ", "c": True}, ref) == 1.0  # JSON equality, trimmed strings
    # a full match, b half: hits 1.5; R = 1.5/3, P = 1.5/2; F1 = 2PR/(P+R) = 0.6
    assert argument_f1({"a": 1, "b": "y"}, ref) == pytest.approx(0.6)
    # plus an argument the reference does not have: P = 1.5/3 = R, F1 = 0.5
    assert argument_f1({"a": 1, "b": "y", "d": 5}, ref) == pytest.approx(0.5)
    assert argument_f1({"c": 1}, ref) == pytest.approx(2 * (0.5 / 3) * 0.5 / (0.5 / 3 + 0.5))  # 1 is not True
    assert argument_f1({}, {}) == 1.0 and argument_f1({}, ref) == 0.0 and argument_f1({"a": 1}, {}) == 0.0


def test_perfect_prediction_scores_one():
    ref = ref_address()
    result = score_record(ref, [turn(call("address_parse", {"text": ADDRESS}), ADDRESS_ANSWER)])
    assert (result.action_em, result.argument_f1, result.argument_em, result.rouge_l) == (1.0, 1.0, 1.0, 1.0)
    assert result.reference_actions == result.predicted_actions == 1 and result.extra_actions == 0


def test_wrong_tool_and_empty_prediction():
    ref = ref_address()
    wrong = score_record(ref, [turn(call("calculator", {"text": ADDRESS}), "浙江省杭州市江干区")])
    assert wrong.action_em == 0.0 and wrong.argument_f1 == 0.0 and wrong.argument_em == 0.0
    assert wrong.actions[0].predicted == "calculator"
    assert 0 < wrong.rouge_l < 1
    empty = score_record(ref, [""])
    assert (empty.action_em, empty.argument_f1, empty.rouge_l) == (0.0, 0.0, 0.0)
    assert empty.actions[0].predicted is None
    missing = score_record(ref, None)
    assert missing.missing_prediction and missing.action_em == 0.0 and missing.rouge_l == 0.0
    unreadable = score_record(ref, ["<|startofthink|>{oops<|endofthink|>" + ADDRESS_ANSWER])
    assert unreadable.action_em == 0.0 and unreadable.actions[0].error and unreadable.rouge_l == 1.0


def test_partial_trajectory_aggregates_micro():
    ref = ref_two_turns()
    pred = [
        turn(call("calculator", {"expression": "23*47+12"}), render_result("1093"), "The result is 1093."),
        # right first tool with 1 full + 1 half match of 3 reference arguments (P = 1.5/2), then no second call
        turn(call("c_to_f", {"celsius": 20, "precision": 2}), render_result("68.00"), "It is 68 F."),
    ]
    result = score_record(ref, pred)
    assert [a.action_em for a in result.actions] == [1.0, 1.0, 0.0]
    assert [a.argument_f1 for a in result.actions] == pytest.approx([1.0, 0.6, 0.0])
    assert result.action_em == pytest.approx(2 / 3) and result.argument_f1 == pytest.approx(1.6 / 3)
    assert result.argument_em == pytest.approx(1 / 3)
    # "It is 68 F" vs "It is 68 F; the address is in Hangzhou": LCS 4, P = 1, R = 4/9
    assert [a.rouge_l for a in result.answers] == pytest.approx([1.0, 2 * (4 / 9) / (1 + 4 / 9)])
    report = score_pairs([(ref, pred), (ref_address(), [turn(call("address_parse", {"text": ADDRESS}),
                                                             call("calculator", {}), ADDRESS_ANSWER)])])
    assert report.records == 2 and report.reference_actions == 4 and report.extra_actions == 1
    assert report.action_em == pytest.approx(3 / 4) and report.argument_f1 == pytest.approx(2.6 / 4)
    assert report.answers == 3 and report.rouge_l == pytest.approx((1 + result.answers[1].rouge_l + 1) / 3)


def test_evaluate_files_by_id_and_by_order(tmp_path):
    refs = tmp_path / "refs.jsonl"
    write_msagent(refs, [ref_address(), ref_two_turns()])
    good_address = turn(call("address_parse", {"text": ADDRESS}), ADDRESS_ANSWER)
    preds = tmp_path / "preds.jsonl"
    # by id, in another order, one as a whole predicted conversation
    preds.write_text(json.dumps({"id": "en-2", "predictions": []}) + "\n" + json.dumps(
        {"id": "zh-1", "conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": good_address}]},
        ensure_ascii=False) + "\n", encoding="utf-8")
    report = evaluate_files(refs, preds)
    assert [r.id for r in report.results] == ["zh-1", "en-2"]
    assert report.results[0].action_em == 1.0 and report.results[1].action_em == 0.0
    # by line order when the predictions have no ids
    preds.write_text(json.dumps({"predictions": good_address}, ensure_ascii=False) + "\n"
                     + json.dumps({"predictions": []}) + "\n", encoding="utf-8")
    assert evaluate_files(refs, preds).action_em == pytest.approx(1 / 4)
    assert evaluate_files(refs, preds, limit=1).action_em == 1.0
    # a reference without a prediction (matched by id) scores as an empty one
    preds.write_text(json.dumps({"id": "zh-1", "predictions": [good_address]}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    report = evaluate_files(refs, preds)
    assert report.missing_predictions == 1 and report.action_em == pytest.approx(1 / 4)


# -- stored sessions -> MSAgent records ------------------------------------------------------------------
async def _fill_store(store: SQLiteMemoryStore) -> None:
    c1 = ToolCall(name="address_parse", arguments={"text": ADDRESS})
    c2 = ToolCall(name="get_weather", arguments={"city": "上海", "days": 2})
    await store.append_many("chat-zh", [
        Message.user("解析这个地址：" + ADDRESS),
        Message.assistant(None),  # an unreadable reply the agent stored, then its repair request
        Message.user("Your tool call could not be read: bad JSON. Reply with one valid tool call, or answer directly."),
        Message.assistant(None, tool_calls=[c1]),
        Message(role="tool", content=ADDRESS_RESULT, tool_call_id=c1.id, name=c1.name),
        Message.assistant(ADDRESS_ANSWER),
        summary_message("用户问了地址。", covers_from=0, covers_through=5),
        Message.user("上海天气？"),
        Message.assistant("查一下。", tool_calls=[c2]),
        Message(role="tool", content='{"sky": "小雨"}', tool_call_id=c2.id, name=c2.name),
        Message.assistant("上海有小雨。"),
    ])
    await store.append_many("no-reply", [Message.user("hello?")])


async def test_sessions_to_msagent_from_sqlite_store(tmp_path):
    store = SQLiteMemoryStore(tmp_path / "memory.sqlite")
    await _fill_store(store)
    skipped: list[str] = []
    records = await sessions_to_msagent(store, skipped=skipped)
    assert skipped == ["no-reply"] and [r.id for r in records] == ["chat-zh"]
    rec = records[0]
    assert [t.role for t in rec.conversations] == ["system", "user", "assistant", "user", "assistant"]
    system = rec.conversations[0].value
    assert system.startswith("You are a helpful assistant") and '1. {"name": "address_parse"' in system
    assert '2. {"name": "get_weather"' in system and '"days": {"type": "integer"}' in system
    assert "could not be read" not in json.dumps(rec.model_dump(), ensure_ascii=False)  # the repair is dropped
    assert "用户问了地址" not in json.dumps(rec.model_dump(), ensure_ascii=False)  # so is the memory summary
    first = parse_assistant_turn(rec.conversations[2].value, strict=True)
    assert [(c.name, c.arguments) for c in first.calls] == [("address_parse", {"text": ADDRESS})]
    assert first.results == [ADDRESS_RESULT] and first.answer == ADDRESS_ANSWER
    second = parse_assistant_turn(rec.conversations[4].value, strict=True)
    assert second.segments[0].text == "查一下。" and second.answer == "上海有小雨。"
    # the export scores perfectly against itself, and its tools replay the recorded outputs
    assert score_record(rec, rec.assistant_turns()).action_em == 1.0
    replay = {t.name: t for t in replay_tools(rec)}
    assert set(replay) == {"address_parse", "get_weather"}
    assert await replay["get_weather"].call(city="上海", days=2) == '{"sky": "小雨"}'
    # named sessions, a fixed system text, no tool list; an unknown session is an error
    only = await sessions_to_msagent(store, ["chat-zh"], system="系统", tools=None, keep_repairs=True)
    assert only[0].conversations[0].value == "系统"
    # the repair request is kept; with the empty reply before it dropped, it joins the first user turn
    assert "could not be read" in only[0].conversations[1].value and len(only[0].conversations) == 5
    from raygent.memory import SessionNotFound

    with pytest.raises(SessionNotFound):
        await sessions_to_msagent(store, ["nope"])
    summary = await export_sessions(tmp_path / "out" / "t.jsonl", store)
    assert summary["written"] == 1 and read_msagent(tmp_path / "out" / "t.jsonl")[0].id == "chat-zh"
    await store.close()


# -- predictions from the agent (a scripted model) -------------------------------------------------------
async def test_predict_with_agent_replays_reference_tools():
    from raygent.llm_pool.scripted import ScriptedChatModel

    ref = ref_address()
    tools = {t.name: t.spec for t in replay_tools(ref)}
    assert set(tools) == {"address_parse", "calculator"}  # from the system turn's tool list
    assert tools["address_parse"].parameters["required"] == ["text"]
    call_reply = f'<tool_call>{{"name": "address_parse", "arguments": {{"text": "{ADDRESS}"}}}}</tool_call>'
    llm = ScriptedChatModel([call_reply, ADDRESS_ANSWER])
    [turns] = await predict_with_agent([ref], llm)
    parsed = parse_assistant_turn(turns[0], strict=True)
    assert parsed.calls[0].name == "address_parse" and parsed.results == [ADDRESS_RESULT]
    assert parsed.answer == ADDRESS_ANSWER
    assert ADDRESS_RESULT in [m.content for m in llm.requests[1]["messages"]]  # the model saw the replayed output
    assert score_record(ref, turns).action_em == 1.0


# -- the CLI handlers through argparse -------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raygent")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval")
    eval_sub = ev.add_subparsers(dest="eval_command", required=True)
    trajectories_cli.add_parser(eval_sub)
    return parser


async def _cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return await args.handler(args)


async def test_cli_trajectories_file_with_predictions(tmp_path, capsys):
    both = tmp_path / "both.jsonl"
    write_msagent(both, [ref_address().model_copy(update={"predictions": [
        turn(call("address_parse", {"text": ADDRESS}), ADDRESS_ANSWER)]})])
    assert await _cli(["eval", "trajectories", str(both), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["action_em"] == 1.0 and out["rouge_l"] == 1.0 and out["results"][0]["id"] == "zh-1"
    assert await _cli(["eval", "trajectories", str(both), "--per-record"]) == 0
    text = capsys.readouterr().out
    assert "Action EM          1.0000" in text and "zh-1" in text
    # predictions from another file, by line order
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"predictions": [turn(call("calculator", {}), "?")]}) + "\n", encoding="utf-8")
    assert await _cli(["eval", "trajectories", str(both), "--predictions", str(preds), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action_em"] == 0.0


async def test_cli_trajectories_errors(tmp_path, capsys):
    refs = tmp_path / "refs.jsonl"
    write_msagent(refs, [ref_address()])
    assert await _cli(["eval", "trajectories", str(refs)]) == 1
    assert "line 1: the record has no 'predictions'" in capsys.readouterr().err
    refs.write_text("{broken\n", encoding="utf-8")
    assert await _cli(["eval", "trajectories", str(refs)]) == 1
    assert "line 1: not valid JSON" in capsys.readouterr().err
    assert await _cli(["eval", "trajectories", str(tmp_path / "missing.jsonl")]) == 1
    with pytest.raises(SystemExit):  # --run and --predictions exclude each other
        _parser().parse_args(["eval", "trajectories", "f", "--run", "--predictions", "p"])


async def test_cli_trajectories_run_with_scripted_model(tmp_path, capsys, monkeypatch):
    from raygent.llm_pool.scripted import ScriptedChatModel

    refs = tmp_path / "refs.jsonl"
    write_msagent(refs, [ref_address(), ref_two_turns()])
    replies = [f'<tool_call>{{"name": "address_parse", "arguments": {{"text": "{ADDRESS}"}}}}</tool_call>',
               ADDRESS_ANSWER]
    monkeypatch.setattr(trajectories_cli, "_build_llm", lambda args: ScriptedChatModel(replies))
    saved = tmp_path / "saved.jsonl"
    assert await _cli(["eval", "trajectories", str(refs), "--run", "--limit", "1", "--json",
                       "--save-predictions", str(saved)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["records"] == 1 and report["action_em"] == 1.0 and report["rouge_l"] == 1.0
    assert "[1/1] zh-1" in captured.err
    # the saved file is a references + predictions file: rescored without --run, same scores
    assert await _cli(["eval", "trajectories", str(saved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action_em"] == 1.0


async def test_cli_export_sessions(tmp_path, capsys, monkeypatch):
    db = tmp_path / "memory.sqlite"
    store = SQLiteMemoryStore(db)
    await _fill_store(store)
    await store.close()
    out = tmp_path / "sessions.jsonl"
    assert await _cli(["eval", "export-sessions", "--state", f"sqlite://{db}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 record(s)" in printed and "skipped 1 session(s) without an assistant reply: no-reply" in printed
    assert [r.id for r in read_msagent(out)] == ["chat-zh"]
    # the default store is RAYGENT_HOME's (RAYGENT_MEMORY_DB overrides the file)
    monkeypatch.setenv("RAYGENT_MEMORY_DB", str(db))
    assert await _cli(["eval", "export-sessions", "--session", "chat-zh", "--tools", "none", "--system", "S",
                       "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"out": str(out), "written": 1, "skipped": []}
    assert read_msagent(out)[0].conversations[0].value == "S"
    assert await _cli(["eval", "export-sessions", "--session", "missing", "--out", str(out)]) == 1
    assert "no session 'missing'" in capsys.readouterr().err
    # and the export is valid input for the scorer (a trajectory scored against itself)
    both = tmp_path / "both.jsonl"
    write_msagent(both, [r.model_copy(update={"predictions": r.assistant_turns()}) for r in read_msagent(out)])
    assert await _cli(["eval", "trajectories", str(both), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["argument_f1"] == 1.0
