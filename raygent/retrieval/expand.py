"""Example requests for tools, written once by a chat model at registration (tool expansion).

Users rarely reuse a tool's own words ("any planes to Denver on Friday?" for `search_flights`), and a
one-sentence description gives a static embedder little to match such a request against. A chat model
(any `ChatModel`; the embedded 0.5B Qwen2.5-Coder by default) is shown only the tool's name,
description and parameters and asked for a handful of short requests a user would type for it (one
greedy reply, or several merged: `samples`); the retriever then indexes them as extra vectors of the
tool (`ToolRetriever(examples=...)`, raygent/retrieval/search.py `set_extra`). Generation happens once
per tool: `ExampleCache` keeps the requests in a JSON file keyed by a hash of the tool's schema text,
the model name and `samples`, so re-adding an unchanged tool costs nothing, and the file can ship with
a tool set (benchmarks/data/unseen_tool_examples.json). `raygent retrieval expand --tools FILE --out FILE`.

The prompt's two exemplars are invented tools in no benchmark set; nothing from BFCL or from the
unseen-style queries is ever shown to the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from raygent.schema import GenerationParams, Message, ToolSpec

N_EXAMPLES = 6
"""Requests kept per tool (the model is asked for this many; parsing may keep fewer)."""

SYSTEM = ("You write example requests that a user might type to an assistant. Given a tool, write "
          "{n} different short requests (4 to 14 words) that this tool would answer. Use everyday "
          "words, as a person talks; do not use the tool's name; vary the wording and include concrete "
          "details (places, dates, names, amounts). One request per line, nothing else.")

# invented tools, in no benchmark set (not BFCL, not benchmarks/data/unseen_tools.jsonl); two domains,
# so that the 0.5B model copies the form of the replies rather than one exemplar's nouns
_EXEMPLARS = [
    (ToolSpec(name="reserve_study_room",
              description="Reserve a quiet study room at a public library for a time slot.",
              parameters={"type": "object", "properties": {
                  "branch": {"type": "string", "description": "library branch"},
                  "start_time": {"type": "string", "description": "when the booking starts"},
                  "hours": {"type": "integer", "description": "how long"}}}),
     "can I get a quiet room at the Elm Street library tomorrow at 3?\n"
     "I need somewhere silent to revise for two hours this afternoon\n"
     "hold a space for my group on Saturday morning\n"
     "is there a private spot at the central branch free tonight\n"
     "grab me a place to work undisturbed from 10 to noon\n"
     "somewhere calm to prepare for my exam on Monday please"),
    (ToolSpec(name="order_custom_cake",
              description="Order a decorated cake from a local bakery for pickup.",
              parameters={"type": "object", "properties": {
                  "flavor": {"type": "string", "description": "cake flavour"},
                  "message": {"type": "string", "description": "text written on top"},
                  "pickup_date": {"type": "string", "description": "when to collect it"}}}),
     "I want a chocolate one that says happy birthday Mia for Friday\n"
     "get something sweet made for my mom's retirement party next week\n"
     "can the baker do a lemon sponge with congrats written on it\n"
     "need a dessert for 20 people to pick up on Sunday\n"
     "order a vanilla treat with blue icing for tomorrow afternoon\n"
     "my son turns six on the 12th, can we get him something with dinosaurs"),
]


def tool_prompt(spec: ToolSpec) -> str:
    """The user message for one tool: its name, description and parameters, nothing else."""
    props = (spec.parameters or {}).get("properties") or {}
    params = "; ".join(f"{k} ({v.get('description', '')})".replace(" ()", "") if isinstance(v, dict) else k
                       for k, v in props.items())
    lines = [f"Tool: {spec.name}", f"What it does: {spec.description or '(no description)'}"]
    if params:
        lines.append(f"Inputs: {params}")
    return "\n".join(lines)


def expansion_messages(spec: ToolSpec, n: int = N_EXAMPLES) -> list[Message]:
    messages = [Message.system(SYSTEM.format(n=n))]
    for tool, reply in _EXEMPLARS:
        messages += [Message(role="user", content=tool_prompt(tool)), Message(role="assistant", content=reply)]
    return messages + [Message(role="user", content=tool_prompt(spec))]


_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,2}[.):]|[a-z][.)])\s*")
_NAME_SPLIT = re.compile(r"[_.\-\s]+")


_REFUSAL = re.compile(r"^(i'?m sorry|sorry|i can(no|')t|as an ai)|can(no|')t (assist|help) with", re.IGNORECASE)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def parse_examples(text: str, name: str, n: int = N_EXAMPLES) -> list[str]:
    """One request per line: bullets, numbering and quotes stripped; lines that are too short or long,
    headers ("Here are ..."), refusals ("I'm sorry, but I can't assist ..."), duplicates (case and punctuation ignored) and lines that copy the tool's
    name (`search_flights` or "search flights") dropped; at most `n` kept, in order."""
    words = [w.lower() for w in _NAME_SPLIT.split(name) if w]
    name_forms = {name.lower(), " ".join(words)} if len(words) > 1 else {name.lower()}
    out: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = _BULLET.sub("", raw).strip().strip("\"'`“”").strip()
        if not line or line.endswith(":") or line.lower().startswith(("here are", "sure", "tool:", "inputs:")):
            continue
        if _REFUSAL.search(line):  # "I'm sorry, but I can't assist with that." is no request
            continue
        count = len(line.split())
        if count < 3 or count > 25:
            continue
        low, key = line.lower(), _norm(line)
        if any(f in low or _norm(f) in key for f in name_forms if len(f) > 3):
            continue
        if key in seen:
            continue
        seen.add(key)
        out.append(line)
        if len(out) >= n:
            break
    return out


def expansion_key(spec: ToolSpec, model_name: str, samples: int = 1) -> str:
    """sha1 of the tool's schema text (name, description, parameters), the model's name and, above 1,
    the number of replies merged (`expand_tools(samples=)`)."""
    doc = {"name": spec.name, "description": spec.description, "parameters": spec.parameters, "model": model_name}
    if samples > 1:
        doc["samples"] = samples
    raw = json.dumps(doc, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


class ExampleCache:
    """Generated requests in a JSON file: {"entries": {key: {"tool", "model", "examples"}}, "note"}.
    `path=None` keeps them in memory only. A changed tool (or another model) gets a new key."""

    def __init__(self, path: str | os.PathLike[str] | None = None, note: str = ""):
        self.path = Path(path).expanduser() if path else None
        self.entries: dict[str, dict[str, Any]] = {}
        self.note = note
        if self.path is not None and self.path.exists():
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = doc.get("entries", {})
            self.note = note or doc.get("note", "")

    def get(self, spec: ToolSpec, model_name: str, samples: int = 1) -> list[str] | None:
        entry = self.entries.get(expansion_key(spec, model_name, samples))
        return None if entry is None else list(entry["examples"])

    def put(self, spec: ToolSpec, model_name: str, examples: Sequence[str], samples: int = 1) -> None:
        entry = {"tool": spec.name, "model": model_name, "examples": list(examples)}
        if samples > 1:
            entry["samples"] = samples
        self.entries[expansion_key(spec, model_name, samples)] = entry

    def by_name(self) -> dict[str, list[str]]:
        """tool name -> requests, whatever model made them (the last entry wins for a repeated name)."""
        return {e["tool"]: list(e["examples"]) for e in self.entries.values()}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"note": self.note, "models": sorted({e["model"] for e in self.entries.values()}),
               "entries": dict(sorted(self.entries.items(), key=lambda kv: kv[1]["tool"]))}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


ExampleSource = str | os.PathLike[str] | Mapping[str, Sequence[str]] | ExampleCache | None


def load_examples(source: ExampleSource) -> dict[str, list[str]]:
    """tool name -> requests from an ExampleCache file / object or a plain mapping (None: none)."""
    if source is None:
        return {}
    if isinstance(source, ExampleCache):
        return source.by_name()
    if isinstance(source, Mapping):
        return {k: list(v) for k, v in source.items()}
    return ExampleCache(source).by_name()


def sample_params(i: int, max_tokens: int = 130) -> GenerationParams:
    """Reply i of a tool's expansion: 0 greedy, then sampled (temperature 0.7, top_p 0.9, seed i)."""
    if i == 0:
        return GenerationParams(temperature=0.0, max_tokens=max_tokens)
    return GenerationParams(temperature=0.7, top_p=0.9, seed=i, max_tokens=max_tokens)


def merge_examples(*lists: Sequence[str]) -> list[str]:
    """Concatenated, duplicates (case and punctuation ignored) dropped, first kept."""
    seen: set[str] = set()
    out = []
    for line in (x for lst in lists for x in lst):
        if _norm(line) not in seen:
            seen.add(_norm(line))
            out.append(line)
    return out


async def expand_tools(specs: Iterable[ToolSpec], model: Any, cache: ExampleCache | None = None, *,
                       n: int = N_EXAMPLES, samples: int = 1, params: GenerationParams | dict | None = None,
                       save_every: int = 5, progress: bool = False) -> dict[str, list[str]]:
    """Example requests for each tool (name -> requests): from `cache` when there, else `samples`
    `chat` calls per tool (`sample_params`: the first greedy, `max_tokens` 130; `params` replaces the
    first), each parsed to at most `n` requests and merged. New ones are added to `cache` and saved
    every `save_every` tools, so a long run can be stopped and resumed."""
    cache = cache if cache is not None else ExampleCache()
    model_name = getattr(model, "model_name", "unknown")
    out: dict[str, list[str]] = {}
    made = 0
    specs = list(specs)
    for i, spec in enumerate(specs):
        hit = cache.get(spec, model_name, samples)
        if hit is None:
            start = time.perf_counter()
            replies = []
            for j in range(samples):
                p = (params or sample_params(0)) if j == 0 else sample_params(j)
                reply = await model.chat(expansion_messages(spec, n), None, p)
                replies.append(parse_examples(reply.text or reply.raw, spec.name, n))
            hit = merge_examples(*replies)
            cache.put(spec, model_name, hit, samples)
            made += 1
            if progress:
                print(f"[{i + 1}/{len(specs)}] {spec.name}: {len(hit)} requests in "
                      f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
            if made % save_every == 0:
                cache.save()
        out[spec.name] = hit
    if made:
        cache.save()
    return out


async def expand_command(tools_path: str, out: str, *, model: str | None = None, n: int = N_EXAMPLES,
                         samples: int = 1) -> int:
    """`raygent retrieval expand`: example requests for every tool of a TOOLS.jsonl into the cache `out`
    (tools already there for this model and `samples` are skipped), by the embedded model (or the GGUF
    `model`) without a LoRA adapter."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.retrieval.evaluate import load_tools

    tools = load_tools(tools_path)
    chat = LlamaCppChatModel(model, lora=None, relevance_bias=None, few_shot=False)
    cache = ExampleCache(out, note=f"example requests written by {chat.model_name} (greedy) with "
                                   "raygent.retrieval.expand; regenerate with `raygent retrieval expand`")
    found = await expand_tools(tools, chat, cache, n=n, samples=samples, progress=True)
    print(json.dumps({"tools": len(found), "with_examples": sum(1 for v in found.values() if v),
                      "requests": sum(len(v) for v in found.values()), "out": str(cache.path)}))
    return 0


__all__ = ["N_EXAMPLES", "ExampleCache", "ExampleSource", "expand_command", "expand_tools", "expansion_key",
           "expansion_messages",
           "load_examples", "merge_examples", "parse_examples", "sample_params", "tool_prompt"]
