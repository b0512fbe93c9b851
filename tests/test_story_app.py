"""The storybook team end to end: on the embedded model (Chinese in Python, English through the CLI),
and with a deterministic model for the failure paths (a failed asset is retried, then reported in
the book and the manifest, never only printed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from PIL import Image

import team_models
from raygent.apps.story.studio import StoryRequest, StoryStudio

CJK = re.compile(r"[\u4e00-\u9fff]")


def check_bound_book(result, pages: int) -> dict:
    book, bound = result.book, result.bound
    assert book.complete, book.missing
    assert len(book.pages) == pages and not book.problems
    for page in book.pages:
        with Image.open(page.image.uri) as im:
            assert im.size == (512, 512)
        with wave.open(page.audio.uri) as w:
            assert w.getnframes() / w.getframerate() > 0.5
    manifest = json.loads(Path(bound.manifest).read_text())
    assert [p["text"] for p in manifest["pages"]] == [p.text for p in book.pages]
    assert Path(bound.epub).stat().st_size > 10_000
    html = Path(bound.html).read_text()
    assert html.count("data:image/png;base64,") >= pages and html.count("data:audio/wav;base64,") == pages
    return manifest


@pytest.mark.model
async def test_chinese_story_on_the_embedded_model(tmp_path):
    lines: list[str] = []
    studio = StoryStudio(writers=2, log=":memory:", progress=lines.append)
    result = await studio.make(StoryRequest(topic="小兔子第一次去海边", pages=2), tmp_path / "book")
    manifest = check_bound_book(result, 2)
    assert manifest["language"] == "zh" and result.book.cast
    assert all(CJK.search(p.text) for p in result.book.pages), [p.text for p in result.book.pages]
    # progress from every member of the team, as it worked
    for role in ("planner", "writer", "illustrator", "narrator", "binder"):
        assert any(line.startswith(role) for line in lines), (role, lines)
    assert result.book.model.startswith("qwen2.5-coder-0.5b")


@pytest.mark.model
def test_english_story_through_the_cli(tmp_path):
    out = tmp_path / "book"
    proc = subprocess.run([sys.executable, "-m", "raygent.cli", "story", "a brave little robot", "--pages", "2",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["missing"] == [] and Path(summary["html"]).exists() and Path(summary["epub"]).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["language"] == "en" and len(manifest["pages"]) == 2
    assert all(p["text"] and not CJK.search(p["text"]) for p in manifest["pages"])
    for role in ("planner:", "writer: page 1", "illustrator: page 2", "narrator: page 2", "binder:"):
        assert role in proc.stderr, (role, proc.stderr[-1500:])


async def test_a_failing_asset_is_retried_then_reported_in_book_and_manifest(tmp_path, monkeypatch):
    """The illustrator's backend is DashScope without a key: each page's picture is tried
    `attempts` times, then the book and its manifest say which pictures are missing and why."""
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    lines: list[str] = []
    studio = StoryStudio(llm=team_models.StoryRulesModel(), writers=1, image_backend="dashscope", attempts=2,
                         log=":memory:", progress=lines.append)
    result = await studio.make(StoryRequest(topic="a snowy day", pages=2), tmp_path / "book")
    book = result.book
    assert [p.text for p in book.pages] == ["Page 1: step 1 of a snowy day.", "Page 2: step 2 of a snowy day."]
    assert all(p.audio is not None and p.image is None for p in book.pages)
    assert [(p.page, p.asset, p.attempts) for p in book.problems] == [(1, "image", 2), (2, "image", 2)]
    assert all("DASHSCOPE_API_KEY" in p.error for p in book.problems)
    manifest = json.loads(result.bound.manifest.read_text())
    assert manifest["missing"] == ["page 1: image", "page 2: image"]
    assert "DASHSCOPE_API_KEY" in json.dumps(manifest["pages"][0]) or "DASHSCOPE_API_KEY" in json.dumps(manifest)
    html = result.bound.html.read_text()
    assert "DASHSCOPE_API_KEY" in html  # the reader sees why the picture is missing
    assert any("attempt 1 failed" in line for line in lines)


async def test_story_request_validation():
    with pytest.raises(ValueError):
        StoryRequest(topic="", pages=2)
    with pytest.raises(ValueError):
        StoryRequest(topic="x", pages=0)
