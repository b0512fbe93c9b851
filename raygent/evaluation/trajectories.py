"""Trajectory metrics of ModelScope-Agent (arXiv 2309.00986): Action EM, Argument F1, ROUGE-L.

A reference is an MSAgent-Bench record (`raygent.evaluation.msagent`); a prediction is, for each
assistant turn of the reference, the model's own assistant turn in the same think/exec format.
Each pair of turns is compared like this:

- **Actions** are the tool calls (think blocks) of a turn, compared by position: the i-th
  reference call with the i-th predicted call, as ModelScope-Agent's evaluation scripts align
  them. Every reference call counts once; a missing or unreadable predicted call counts as
  wrong. Predicted calls beyond the reference's are not scored but counted (`extra_actions`).
- **Action EM**: 1 when the predicted tool (api_name) is exactly the reference's, else 0;
  averaged over all reference calls of the data set (micro average, as in the paper's scripts).
- **Argument F1** (the paper's definition): for a call whose tool matches, each reference
  argument present in the prediction is a full match (FM, same value) or a half match (HM, other
  value); R = (FM + 0.5 HM) / |reference arguments|, P = (FM + 0.5 HM) / |predicted arguments|,
  F1 = 2PR / (P + R). Both empty: 1; a wrong tool: 0. Values compare as JSON (1 == 1.0, strings
  after trimming whitespace, booleans only with booleans). Averaged like Action EM.
  `argument_em` (all arguments exactly right; the seed's older "input EM") is reported as well.
- **ROUGE-L**: the F1 (beta = 1) of the longest common subsequence between the reference's final
  answer (the text after its last tool output, or the whole turn without calls) and the
  prediction's, per turn whose reference has an answer; averaged over those turns. Tokens:
  every CJK ideograph (and kana) is one token, so Chinese is compared by character; other text
  is split into runs of letters and digits, lower-cased; whitespace and punctuation are not
  tokens. (The seed used the `rouge` package, which splits on whitespace only, so unsegmented
  Chinese became a single token; character tokens are the usual choice for Chinese ROUGE.)

Input files (see docs/evaluation.md):
- references and predictions in one file: each reference record carries `predictions`, a list of
  assistant-turn strings aligned with its assistant turns;
- a reference file plus a predictions file (`--predictions`) whose lines hold `predictions` or a
  whole predicted `conversations`; records are matched by `id` when every record on both sides has
  one (and the ids are unique), else by line order;
- `--run`: raygent's Agent produces the predictions (see `predict_with_agent`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from raygent.evaluation.msagent import (
    MSAgentCall,
    MSAgentFormatError,
    MSAgentRecord,
    PredictionRecord,
    parse_assistant_turn,
    read_msagent,
    read_predictions,
    render_assistant_turn,
)
from raygent.schema import Message

__all__ = [
    "tokenize",
    "lcs_length",
    "rouge_l",
    "argument_f1",
    "ActionScore",
    "AnswerScore",
    "RecordResult",
    "TrajectoryReport",
    "score_record",
    "score_pairs",
    "pair_predictions",
    "evaluate_files",
    "replay_tools",
    "predict_with_agent",
    "report_json",
]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")


# -- the metrics -----------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """ROUGE tokens: one per CJK character; lower-cased letter/digit runs for other scripts."""
    return _TOKEN.findall((text or "").lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row kept)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over `tokenize` tokens; 1.0 when both have no tokens, 0.0 when one has none."""
    p, r = tokenize(prediction), tokenize(reference)
    if not p or not r:
        return 1.0 if not p and not r else 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def argument_f1(predicted: dict[str, Any], reference: dict[str, Any]) -> float:
    """The paper's Argument F1 of one call whose tool matches (full match 1, half match 0.5)."""
    if not reference or not predicted:
        return 1.0 if not reference and not predicted else 0.0
    full = sum(1 for k, v in reference.items() if k in predicted and _same_value(predicted[k], v))
    half = sum(1 for k, v in reference.items() if k in predicted and not _same_value(predicted[k], v))
    hits = full + 0.5 * half
    if hits == 0:
        return 0.0
    recall, precision = hits / len(reference), hits / len(predicted)
    return 2 * precision * recall / (precision + recall)


def _arguments_exact(predicted: dict[str, Any], reference: dict[str, Any]) -> bool:
    return predicted.keys() == reference.keys() and all(_same_value(predicted[k], v) for k, v in reference.items())


# -- results ---------------------------------------------------------------------------------------------
class ActionScore(BaseModel):
    """One reference call against the predicted call in its place."""

    turn: int  # index of the assistant turn (from 0)
    index: int  # position of the call in that turn (from 0)
    reference: str
    reference_arguments: dict[str, Any] = Field(default_factory=dict)
    predicted: str | None = None  # None: no call in that place; "" an unreadable one
    predicted_arguments: dict[str, Any] = Field(default_factory=dict)
    action_em: float
    argument_f1: float
    argument_em: float
    error: str | None = None  # why the predicted call could not be read


class AnswerScore(BaseModel):
    turn: int
    rouge_l: float
    reference: str
    predicted: str


class RecordResult(BaseModel):
    """The scores of one record; the per-record means are None where there was nothing to score."""

    id: str | None = None
    line: int | None = None
    turns: int = 0
    predicted_turns: int = 0
    reference_actions: int = 0
    predicted_actions: int = 0
    extra_actions: int = 0
    action_em: float | None = None
    argument_f1: float | None = None
    argument_em: float | None = None
    rouge_l: float | None = None
    actions: list[ActionScore] = Field(default_factory=list)
    answers: list[AnswerScore] = Field(default_factory=list)
    missing_prediction: bool = False


class TrajectoryReport(BaseModel):
    """Aggregate scores (micro averages over all reference calls / answers) and per-record results."""

    records: int = 0
    reference_actions: int = 0
    predicted_actions: int = 0
    extra_actions: int = 0
    unreadable_predicted_calls: int = 0
    answers: int = 0
    missing_predictions: int = 0
    action_em: float | None = None
    argument_f1: float | None = None
    argument_em: float | None = None
    rouge_l: float | None = None
    results: list[RecordResult] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return self.model_dump(exclude={"results"})


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _score_action(turn: int, index: int, ref: MSAgentCall, pred: MSAgentCall | None) -> ActionScore:
    if pred is None or pred.error:
        return ActionScore(turn=turn, index=index, reference=ref.name, reference_arguments=ref.arguments,
                           predicted=None if pred is None else "", action_em=0.0, argument_f1=0.0,
                           argument_em=0.0, error=pred.error if pred else None)
    same = pred.name == ref.name
    return ActionScore(turn=turn, index=index, reference=ref.name, reference_arguments=ref.arguments,
                       predicted=pred.name, predicted_arguments=pred.arguments, action_em=float(same),
                       argument_f1=argument_f1(pred.arguments, ref.arguments) if same else 0.0,
                       argument_em=float(same and _arguments_exact(pred.arguments, ref.arguments)))


def score_record(reference: MSAgentRecord, predicted_turns: Sequence[str] | None) -> RecordResult:
    """Score one record: its assistant turns against `predicted_turns` (None or missing turns score as
    empty predictions)."""
    ref_turns = reference.assistant_turns()
    preds = list(predicted_turns or [])
    result = RecordResult(id=reference.id, line=reference.line, turns=len(ref_turns), predicted_turns=len(preds),
                          missing_prediction=predicted_turns is None)
    for t, ref_value in enumerate(ref_turns):
        ref = parse_assistant_turn(ref_value, strict=True)
        pred = parse_assistant_turn(preds[t] if t < len(preds) else "")
        ref_calls, pred_calls = ref.calls, pred.calls
        result.reference_actions += len(ref_calls)
        result.predicted_actions += len(pred_calls)
        result.extra_actions += max(0, len(pred_calls) - len(ref_calls))
        for i, rc in enumerate(ref_calls):
            result.actions.append(_score_action(t, i, rc, pred_calls[i] if i < len(pred_calls) else None))
        if ref.answer:
            result.answers.append(AnswerScore(turn=t, rouge_l=rouge_l(pred.answer, ref.answer), reference=ref.answer,
                                              predicted=pred.answer))
    result.action_em = _mean([a.action_em for a in result.actions])
    result.argument_f1 = _mean([a.argument_f1 for a in result.actions])
    result.argument_em = _mean([a.argument_em for a in result.actions])
    result.rouge_l = _mean([a.rouge_l for a in result.answers])
    return result


def score_pairs(pairs: Sequence[tuple[MSAgentRecord, Sequence[str] | None]]) -> TrajectoryReport:
    """Score (reference, predicted turns) pairs and aggregate them."""
    results = [score_record(ref, pred) for ref, pred in pairs]
    actions = [a for r in results for a in r.actions]
    answers = [a for r in results for a in r.answers]
    return TrajectoryReport(
        records=len(results),
        reference_actions=len(actions),
        predicted_actions=sum(r.predicted_actions for r in results),
        extra_actions=sum(r.extra_actions for r in results),
        unreadable_predicted_calls=sum(1 for a in actions if a.error),
        answers=len(answers),
        missing_predictions=sum(1 for r in results if r.missing_prediction),
        action_em=_mean([a.action_em for a in actions]),
        argument_f1=_mean([a.argument_f1 for a in actions]),
        argument_em=_mean([a.argument_em for a in actions]),
        rouge_l=_mean([a.rouge_l for a in answers]),
        results=results,
    )


# -- pairing files ---------------------------------------------------------------------------------------
def pair_predictions(references: Sequence[MSAgentRecord], predictions: Sequence[PredictionRecord] | None = None,
                     *, source: str | None = None) -> list[tuple[MSAgentRecord, list[str] | None]]:
    """Match each reference with its predicted turns.

    Without `predictions`, every reference must carry its own `predictions` field. With them,
    records are matched by `id` when all records on both sides have one and the ids are unique
    (a reference without a prediction is scored as an empty one), else by line order (then the
    predictions must be at least as many as the references).
    """
    if predictions is None:
        for r in references:
            if r.predictions is None:
                raise MSAgentFormatError("the record has no 'predictions' (the model's assistant turns); add them, "
                                         "or pass --predictions FILE or --run", line=r.line, source=source)
        return [(r, list(r.predictions or [])) for r in references]
    ref_ids = [r.id for r in references]
    pred_ids = [p.id for p in predictions]
    by_id = (all(ref_ids) and all(pred_ids) and len(set(ref_ids)) == len(ref_ids)
             and len(set(pred_ids)) == len(pred_ids))
    if by_id:
        found = {p.id: p.turns() for p in predictions}
        return [(r, found.get(r.id)) for r in references]
    if len(predictions) < len(references):
        raise MSAgentFormatError(f"{len(references)} references but only {len(predictions)} predictions, and they "
                                 f"cannot be matched by id (every record on both sides needs a unique 'id')",
                                 source=source)
    return [(r, p.turns()) for r, p in zip(references, predictions)]


def evaluate_files(reference_path: str | Path, predictions_path: str | Path | None = None, *,
                   limit: int | None = None) -> TrajectoryReport:
    """Score a reference file against a predictions file, or a file holding both."""
    references = read_msagent(reference_path, limit=limit)
    predictions = read_predictions(predictions_path) if predictions_path is not None else None
    source = str(predictions_path if predictions_path is not None else reference_path)
    return score_pairs(pair_predictions(references, predictions, source=source))


# -- predictions from raygent's agent --------------------------------------------------------------------
def _system_tool_specs(system: str | None) -> dict[str, Any]:
    """Tool specs listed in an MSAgent system turn (`1. {"name", "description", "parameters"}`)."""
    from raygent.llm_pool.formats.jsonrepair import find_json_objects
    from raygent.schema import ToolSpec
    from raygent.toolhub.base import normalize_parameters

    specs: dict[str, Any] = {}
    for obj, _, _ in find_json_objects(system or ""):
        if not (isinstance(obj, dict) and isinstance(obj.get("name"), str) and obj["name"].strip()):
            continue
        params = obj.get("parameters")
        if params is None and isinstance(obj.get("paths"), list) and obj["paths"]:
            params = (obj["paths"][0] or {}).get("parameters")  # the seed's {"paths": [{"parameters": [...]}]}
        try:
            schema = normalize_parameters(params if isinstance(params, (list, dict)) else None)
        except ValueError:
            schema = {"type": "object", "properties": {}}
        specs[obj["name"].strip()] = ToolSpec(name=obj["name"].strip(), description=str(obj.get("description") or ""),
                                              parameters=schema)
    return specs


def replay_tools(record: MSAgentRecord) -> list[Any]:
    """Tools for running an agent on a reference: the tools its system turn lists plus any it calls,
    each answering with the reference's recorded output (the k-th call of a tool gets the output of
    its k-th reference call, later calls the last one). The dataset's tools (ModelScope pipelines,
    web APIs) cannot run here; replaying their outputs keeps the model's final answer comparable."""
    from raygent.schema import ToolSpec
    from raygent.toolhub.base import Tool

    specs = _system_tool_specs(record.system)
    outputs: dict[str, list[str]] = {}
    for value in record.assistant_turns():
        pending: list[str] = []
        for seg in parse_assistant_turn(value, strict=True).segments:
            if seg.kind == "call" and seg.call is not None:
                pending.append(seg.call.name)
                if seg.call.name not in specs:
                    props = {k: {} for k in seg.call.arguments}
                    specs[seg.call.name] = ToolSpec(name=seg.call.name, description=f"{seg.call.name} (replayed)",
                                                    parameters={"type": "object", "properties": props})
            elif seg.kind == "exec" and pending:
                outputs.setdefault(pending.pop(0), []).append(seg.text)

    class Replay(Tool):
        def __init__(self, spec: ToolSpec, recorded: list[str]):
            self.name, self.description, self.parameters = spec.name, spec.description, spec.parameters
            self.recorded = recorded
            self.calls = 0
            self.idempotent = True

        async def call(self, **arguments: Any) -> Any:
            if not self.recorded:
                raise RuntimeError("the reference has no recorded output for this tool")
            out = self.recorded[min(self.calls, len(self.recorded) - 1)]
            self.calls += 1
            return out

    return [Replay(spec, outputs.get(name, [])) for name, spec in specs.items()]


async def predict_with_agent(records: Sequence[MSAgentRecord], llm: Any, *, max_steps: int = 6,
                             params: dict[str, Any] | None = None, tools: Callable[[MSAgentRecord], Any] | None = None,
                             progress: Callable[[int, int, MSAgentRecord], None] | None = None) -> list[list[str]]:
    """Run raygent's Agent on every user turn of every record (one agent per record, so later turns
    see the agent's own earlier ones) and return its assistant turns in MSAgent format.

    `tools(record)` gives the agent's tools (default: `replay_tools`). The agent uses its own system
    prompt, not the record's: its tool-call format renders the tools itself.
    """
    from raygent.actors.agent import Agent

    out: list[list[str]] = []
    for i, record in enumerate(records):
        agent = Agent(llm=llm, tools=(tools or replay_tools)(record), max_steps=max_steps, params=params)
        turns: list[str] = []
        rounds = record.rounds()
        if rounds and not rounds[-1][1]:  # a last user turn without a reference answer: nothing to score
            rounds = rounds[:-1]
        for user_text, _ in rounds:
            start = len(agent.history)
            await agent.run(user_text)
            produced: list[Message] = [m for m in agent.history[start + 1:] if m.role in ("assistant", "tool")]
            turns.append(render_assistant_turn(produced))
        out.append(turns)
        if progress is not None:
            progress(i + 1, len(records), record)
    return out


def report_json(report: TrajectoryReport, per_record: bool = True) -> str:
    return json.dumps(report.model_dump(exclude=None if per_record else {"results"}), ensure_ascii=False)
