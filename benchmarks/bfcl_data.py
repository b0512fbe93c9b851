"""The BFCL tool-retrieval development set, built from the data files inside the `bfcl-eval` wheel.

Only the wheel's JSON data is read (its code needs many SDKs and is never installed or imported),
through `raygent.evaluation.bfcl`: the wheel is looked up in RAYGENT_BFCL_CACHE (default
~/.cache/raygent/bfcl) or taken from RAYGENT_BFCL_WHEEL. This script (unlike the library) fetches it
there with `pip download bfcl-eval==<version> --no-deps` when it is missing.

Corpus: every distinct function (name, description, parameters) in the single-turn categories
(simple python/java/javascript, multiple, parallel, parallel_multiple, their live_ versions, and
the irrelevance categories, whose functions are distractors). Queries: every single-turn entry
with a ground truth; gold = the function names its ground truth calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from raygent.evaluation.bfcl import BFCL_VERSION, BFCLArchive, BFCLDataMissing, cache_dir, find_wheel
from raygent.evaluation.bfcl import wheel_path as _library_wheel_path

SCORED = ["simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
          "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]
DISTRACTORS = ["irrelevance", "live_irrelevance", "live_relevance"]


def wheel_path() -> Path:
    """The wheel the library finds; when there is none (and RAYGENT_BFCL_WHEEL is unset), fetch it."""
    try:
        return _library_wheel_path()
    except BFCLDataMissing:
        if find_wheel() is not None:  # RAYGENT_BFCL_WHEEL names a missing file: nothing to guess
            raise
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading the bfcl-eval wheel (data only) into {cache} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", f"bfcl-eval=={BFCL_VERSION}", "--no-deps", "-q",
                    "-d", str(cache)], check=True)
    return _library_wheel_path()


def _user_text(question: Any) -> str:
    turns = question[0] if question and isinstance(question[0], list) else question
    return "\n".join(m["content"] for m in turns if m.get("role") == "user")


def build_dev_set(wheel: Path | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tools, queries) in the `raygent retrieval eval` JSONL shapes."""
    tools: dict[str, dict[str, Any]] = {}
    queries: list[dict[str, Any]] = []
    with BFCLArchive(wheel or wheel_path()) as z:
        for category in SCORED + DISTRACTORS:
            entries = z.lines(z.data_name(category))
            answers = z.answers(category)
            for e in entries:
                for f in e.get("function", []):
                    params = f.get("parameters") or {}
                    if params.get("type") == "dict":
                        params = {**params, "type": "object"}
                    tool = {"name": f["name"], "description": f.get("description", ""), "parameters": params}
                    tools.setdefault(json.dumps(tool, sort_keys=True), tool)
                if category in SCORED and e["id"] in answers:
                    gold = list(dict.fromkeys(name for call in answers[e["id"]] for name in call))
                    queries.append({"query": _user_text(e["question"]), "gold": gold, "category": category})
    return list(tools.values()), queries


def write_dev_set(folder: Path) -> tuple[Path, Path]:
    tools, queries = build_dev_set()
    folder.mkdir(parents=True, exist_ok=True)
    tp, qp = folder / "bfcl_tools.jsonl", folder / "bfcl_queries.jsonl"
    tp.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools))
    qp.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries))
    return tp, qp


if __name__ == "__main__":
    t, q = write_dev_set(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print(t, q)
