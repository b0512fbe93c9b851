"""The call bias after a user message follows how well the offered tools fit the request
(raygent.llm_pool.tool_relevance; the fit is in docs/evaluation.md)."""

from __future__ import annotations

import pickle

import pytest

from raygent.llm_pool.llama_cpp import RELEVANCE_BIAS, LlamaCppChatModel
from raygent.llm_pool.tool_relevance import ToolRelevance, tool_texts
from raygent.schema import ToolSpec
from raygent.toolhub.builtin import default_tools

pytest.importorskip("wordllama", reason="pip install 'raygent[retrieval]'")

SPECS = [t.spec for t in default_tools()]


def test_requests_for_a_builtin_tool_get_a_stronger_bias_than_chit_chat():
    llm = LlamaCppChatModel()  # nothing loads until a chat
    base, weight, floor = RELEVANCE_BIAS
    needs_a_tool = ["What is 365*24?", "Compute 1234 * 5678", "今天几号？", "What day of the week is it today?",
                    "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"]
    chit_chat = ["Tell me a joke about cats.", "Write a haiku about autumn.", "What is the capital of France?",
                 "Thanks, that's all!"]
    for_tools = [llm.user_call_bias(q, SPECS) for q in needs_a_tool]
    for_chat = [llm.user_call_bias(q, SPECS) for q in chit_chat]
    assert min(for_tools) > max(for_chat) + 0.8, (for_tools, for_chat)
    assert all(floor <= b <= llm.call_bias for b in for_tools + for_chat)


def test_the_fixed_bias_without_relevance_or_tools():
    assert LlamaCppChatModel(relevance_bias=None).user_call_bias("Tell me a joke", SPECS) == 8.0
    assert LlamaCppChatModel(call_bias=5.0).user_call_bias("anything", []) == 5.0  # nothing to compare


def test_a_tool_is_matched_on_its_examples_too_and_the_scorer_pickles():
    calculator = next(s for s in SPECS if s.name == "calculator")
    assert len(tool_texts(calculator)) == 1 + len(calculator.examples) and calculator.examples
    plain = calculator.model_copy(update={"examples": []})
    scorer = ToolRelevance()
    assert scorer.score("What is 365*24?", [calculator]) > scorer.score("What is 365*24?", [plain]) + 0.1
    copy = pickle.loads(pickle.dumps(scorer))  # a model travels to a replica without its vectors
    assert copy._vectors == {} and copy.score("What is 365*24?", [calculator]) == pytest.approx(
        scorer.score("What is 365*24?", [calculator]), abs=1e-6)
    assert scorer.score("   ", [calculator]) is None and scorer.score("hi", []) is None


def test_without_an_embedder_the_fixed_bias_applies(monkeypatch):
    import raygent.retrieval.embedders as embedders

    def missing(name):
        raise ImportError("No module named 'wordllama'")

    monkeypatch.setattr(embedders, "get_embedder", missing)
    llm = LlamaCppChatModel(call_bias=7.0)
    assert llm.user_call_bias("What is 365*24?", [ToolSpec(name="calculator", description="math")]) == 7.0
