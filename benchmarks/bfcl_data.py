"""The BFCL tool-retrieval development set, built from the data files inside the `bfcl-eval` wheel.

Only the wheel's JSON data is read (its code needs many SDKs and is never installed or imported):
the wheel comes from `pip download bfcl-eval --no-deps` into a cache folder
(RAYGENT_BFCL_CACHE, default ~/.cache/raygent/bfcl), or from RAYGENT_BFCL_WHEEL (a local .whl).

Corpus: every distinct function (name, description, parameters) in the single-turn categories
(simple python/java/javascript, multiple, parallel, parallel_multiple, their live_ versions, and
the irrelevance categories, whose functions are distractors). Queries: every single-turn entry
with a ground truth; gold = the function names its ground truth calls.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

SCORED = ["simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
          "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]
DISTRACTORS = ["irrelevance", "live_irrelevance", "live_relevance"]


def wheel_path() -> Path:
    explicit = os.environ.get("RAYGENT_BFCL_WHEEL")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("RAYGENT_BFCL_CACHE", "~/.cache/raygent/bfcl")).expanduser()
    found = sorted(glob.glob(str(cache / "bfcl_eval-*.whl")))
    if found:
        return Path(found[-1])
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading the bfcl-eval wheel (data only) into {cache} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "bfcl-eval", "--no-deps", "-q", "-d", str(cache)],
                   check=True)
    found = sorted(glob.glob(str(cache / "bfcl_eval-*.whl")))
    if not found:
        raise FileNotFoundError(f"pip download left no bfcl_eval wheel in {cache}")
    return Path(found[-1])


def _lines(z: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    try:
        raw = z.read(name).decode("utf-8")
    except KeyError:
        return []
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _data_name(z: zipfile.ZipFile, category: str, answer: bool = False) -> str:
    folder = "bfcl_eval/data/possible_answer/" if answer else "bfcl_eval/data/"
    pattern = re.compile(re.escape(folder) + r"BFCL_v\d+_" + re.escape(category) + r"\.json")
    return next((n for n in z.namelist() if pattern.fullmatch(n)), "")


def _user_text(question: Any) -> str:
    turns = question[0] if question and isinstance(question[0], list) else question
    return "\n".join(m["content"] for m in turns if m.get("role") == "user")


def build_dev_set(wheel: Path | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tools, queries) in the `raygent retrieval eval` JSONL shapes."""
    z = zipfile.ZipFile(wheel or wheel_path())
    tools: dict[str, dict[str, Any]] = {}
    queries: list[dict[str, Any]] = []
    for category in SCORED + DISTRACTORS:
        entries = _lines(z, _data_name(z, category))
        answers = {a["id"]: a["ground_truth"] for a in _lines(z, _data_name(z, category, answer=True))}
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
