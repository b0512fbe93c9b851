"""The storybook's data model and binder, on real assets: Pillow-drawn PNGs and espeak-ng WAVs
(a `wave`-written tone where espeak-ng is not installed), in English and Chinese."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import math
import re
import shutil
import struct
import wave
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

pytest.importorskip("ebooklib")
PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw  # noqa: E402

from raygent.apps.story import (  # noqa: E402
    AssetProblem,
    Character,
    PagePlan,
    StoryBook,
    StoryPage,
    StoryPlan,
    StoryPlanError,
    bind,
)
from raygent.schema import Artifact  # noqa: E402
from raygent.toolhub.artifacts import ArtifactStore  # noqa: E402

ESPEAK = shutil.which("espeak-ng")
COLOURS = [(235, 120, 90), (90, 160, 220), (120, 190, 110), (240, 200, 80)]


def _picture(store: ArtifactStore, n: int) -> Artifact:
    """A small drawn scene: sky, ground, sun, a figure; different per page."""
    im = Image.new("RGB", (320, 200), (200, 225, 250))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 140, 320, 200], fill=(110, 170, 90))
    d.ellipse([250, 20, 295, 65], fill=(250, 210, 70))
    x = 40 + 60 * n
    d.ellipse([x, 80, x + 40, 120], fill=COLOURS[n % len(COLOURS)])
    d.rectangle([x + 10, 118, x + 30, 150], fill=COLOURS[(n + 1) % len(COLOURS)])
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return store.save_bytes(buf.getvalue(), mime_type="image/png")


def _tone_wav(seconds: float = 0.4, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return buf.getvalue()


def _speech(store: ArtifactStore, text: str) -> Artifact:
    """The narrator's recording: raygent's espeak-ng tool when installed (as in the product)."""
    if ESPEAK:
        from raygent.toolhub.builtin.speech import TextToSpeechTool

        tool = TextToSpeechTool(store)
        with ThreadPoolExecutor(1) as pool:  # its own event loop, away from pytest-asyncio's
            out = pool.submit(asyncio.run, tool.call(text=text[:300], speed=260)).result()
        return out.artifacts[0]
    return store.save_bytes(_tone_wav(), mime_type="audio/wav")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ENGLISH = [
    "Lily found a tiny seed under the old oak tree.\n\nShe planted it by the gate.",
    "Tom said: <script>alert('boo')</script> & the seed grew \"taller\" than the fence.",
    "At last a sunflower opened, and Lily and Tom shared its seeds with everyone.",
]
CHINESE = ["小兔在森林里发现了一颗种子。", "它每天给种子浇水，种子慢慢长大。", "最后，种子开出了一朵向日葵。"]


def _book(tmp_path: Path, texts: list[str], language: str, *, drop_image: int | None = None, **fields) -> StoryBook:
    store = ArtifactStore(tmp_path / "store")
    cast = ([Character(name="Lily", description="a curious girl", look="red scarf, yellow boots"),
             Character(name="Tom", description="her friend", look="blue cap")] if language == "en" else
            [Character(name="小兔", description="勇敢的小兔子", look="白色的小兔子，戴红围巾")])
    pages, problems = [], []
    for n, text in enumerate(texts, start=1):
        image = None if n == drop_image else _picture(store, n)
        if image is None:
            problems.append(AssetProblem(page=n, asset="image", attempts=3, error="painter timed out <after 60 s>"))
        pages.append(StoryPage(index=n, text=text, scene=f"scene {n}: the garden", summary=f"part {n}",
                               image=image, audio=_speech(store, text)))
    return StoryBook(title="Lily & the <Sunflower>" if language == "en" else "小兔种向日葵",
                     topic="growing a sunflower" if language == "en" else "种向日葵", language=language,
                     cast=cast, pages=pages, problems=problems, model="qwen2.5-0.5b",
                     agents={"planner": "qwen2.5-0.5b @ cpu", "illustrator": "pillow @ cpu"},
                     timings={"plan": 1.25, "total": 9.5}, created_at=1_700_000_000.0, **fields)


def _data_uris(text: str, mime: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:{re.escape(mime)};base64,([A-Za-z0-9+/=]+)"', text)]


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("story-en")
    book = _book(tmp, ENGLISH, "en", drop_image=3)
    return book, bind(book, tmp / "out")


def test_html_is_self_contained_with_real_pictures_and_audio(english):
    book, bound = english
    page = bound.html.read_text(encoding="utf-8")
    pngs = _data_uris(page, "image/png")
    assert len(pngs) == 2  # page 3's picture is missing
    for data in pngs:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.size == (320, 200)
    wavs = _data_uris(page, "audio/wav")
    assert len(wavs) == 3
    for data in wavs:
        with wave.open(io.BytesIO(data)) as w:
            assert w.getnframes() > 0
    assert page.count("<audio controls") == 3
    # nothing outside the file: every src/href is a data: URI, no script element at all
    assert all(ref.startswith("data:") for ref in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;boo&#x27;)&lt;/script&gt; &amp; the seed grew &quot;taller&quot;" in page
    assert "<title>Lily &amp; the &lt;Sunflower&gt;</title>" in page
    assert '<meta charset="utf-8"/>' in page and '<html lang="en">' in page
    # the missing picture: a notice with the recorded error, and the incomplete-book banner
    notice = re.search(r'<article class="page" id="page-3">.*?</article>', page, re.S).group(0)
    assert "The picture for this page is missing" in notice
    assert "after 3 attempts: painter timed out &lt;after 60 s&gt;" in notice
    assert "Some parts of this book are missing" in page and "<li>page 3: image</li>" in page
    assert "Lily" in page and "red scarf, yellow boots" in page  # the cast


def test_epub_has_title_cast_chapters_images_and_audio(english):
    from ebooklib import ITEM_COVER, ITEM_DOCUMENT, ITEM_IMAGE, epub

    book, bound = english
    ebook = epub.read_epub(str(bound.epub), {"ignore_ncx": True})
    docs = [i for i in ebook.get_items_of_type(ITEM_DOCUMENT) if not isinstance(i, epub.EpubNav)]
    names = sorted(i.get_name() for i in docs)
    assert names == ["cast.xhtml", "page-01.xhtml", "page-02.xhtml", "page-03.xhtml", "title.xhtml"]
    assert ebook.get_metadata("DC", "language")[0][0] == "en"
    assert ebook.get_metadata("DC", "title")[0][0] == book.title
    assert [i.get_name() for i in ebook.get_items_of_type(ITEM_COVER)] == ["assets/page-01.png"]
    assert [i.get_name() for i in ebook.get_items_of_type(ITEM_IMAGE)] == ["assets/page-02.png"]
    page2 = ebook.get_item_with_href("page-02.xhtml").get_content().decode("utf-8")
    assert 'src="assets/page-02.png"' in page2 and '<audio controls="controls" src="assets/page-02.wav"' in page2
    assert "&lt;script&gt;" in page2 and "<script" not in page2
    page3 = ebook.get_item_with_href("page-03.xhtml").get_content().decode("utf-8")
    assert "The picture for this page is missing" in page3 and "painter timed out" in page3
    cast = ebook.get_item_with_href("cast.xhtml").get_content().decode("utf-8")
    assert "Tom" in cast and "blue cap" in cast
    with zipfile.ZipFile(bound.epub) as z:
        assert z.namelist()[0] == "mimetype" and z.read("mimetype") == b"application/epub+zip"
        assert z.testzip() is None
        inside = set(z.namelist())
        for n in (1, 2, 3):
            assert f"EPUB/assets/page-0{n}.wav" in inside
            with wave.open(io.BytesIO(z.read(f"EPUB/assets/page-0{n}.wav"))) as w:
                assert w.getnframes() > 0
        with Image.open(io.BytesIO(z.read("EPUB/assets/page-01.png"))) as im:
            assert im.size == (320, 200)
        opf = z.read("EPUB/content.opf").decode("utf-8")
        assert 'media-type="audio/wav"' in opf and "<dc:language>en</dc:language>" in opf
        assert 'properties="cover-image"' in opf and "2023-11-14T22:13:20Z" in opf  # modified = created_at
        nav = z.read("EPUB/nav.xhtml").decode("utf-8")
        assert all(f"page-0{n}.xhtml" in nav for n in (1, 2, 3)) and "cast.xhtml" in nav


def test_manifest_matches_the_copied_assets(english, tmp_path):
    book, bound = english
    manifest = json.loads(bound.manifest.read_text(encoding="utf-8"))
    assert manifest["title"] == book.title and manifest["language"] == "en"
    assert [c["name"] for c in manifest["cast"]] == ["Lily", "Tom"]
    assert manifest["missing"] == ["page 3: image"] == book.missing and manifest["complete"] is False
    assert manifest["agents"] == book.agents and manifest["timings"] == book.timings
    assert manifest["created_at"] == 1_700_000_000.0 and manifest["created_at_iso"] == "2023-11-14T22:13:20Z"
    assert manifest["problems"] == [{"page": 3, "asset": "image", "attempts": 3,
                                     "error": "painter timed out <after 60 s>"}]
    out = bound.manifest.parent
    for entry, page in zip(manifest["pages"], book.pages, strict=True):
        assert entry["text"] == page.text and entry["scene"] == page.scene
        for name in ("image", "audio"):
            artifact = getattr(page, name)
            if artifact is None:
                assert entry[name] is None and entry["missing"] == [name]
                continue
            copied = out / entry[name]["file"]
            assert copied.name == f"page-0{page.index}.{'png' if name == 'image' else 'wav'}"
            assert entry[name]["sha256"] == _sha(copied) == _sha(Path(artifact.uri))
            assert entry[name]["size_bytes"] == copied.stat().st_size == artifact.size_bytes
        if entry["image"]:
            assert (entry["image"]["width"], entry["image"]["height"]) == (320, 200)
        assert entry["audio"]["duration_s"] > 0
    assert sorted(p.name for p in (out / "assets").iterdir()) == sorted(a.name for a in bound.assets)
    # deterministic: the same book bound elsewhere gives the same manifest, byte for byte
    again = bind(book, tmp_path / "again")
    assert again.manifest.read_bytes() == bound.manifest.read_bytes()
    assert again.html.read_bytes() == bound.html.read_bytes()


def test_chinese_book_renders_and_cancelled_book_has_a_banner(tmp_path):
    from ebooklib import epub

    book = _book(tmp_path, CHINESE, "zh")
    book.pages[2].text = None
    book.pages[2].audio = None
    book = book.model_copy(update={"cancelled": True, "cancel_reason": "用户取消了 <stop>"})
    assert book.missing == ["page 3: text", "page 3: audio"] and not book.complete
    bound = bind(book, tmp_path / "out")
    page = bound.html.read_text(encoding="utf-8")
    assert '<html lang="zh-Hans">' in page and "WenQuanYi Micro Hei" in page and "Noto Sans CJK SC" in page
    assert CHINESE[0] in page and "第1页" in page and "白色的小兔子，戴红围巾" in page
    assert "这本书在完成前被取消了" in page and "用户取消了 &lt;stop&gt;" in page
    assert "<li>第3页：文字</li>" in page and "<li>第3页：音频</li>" in page
    assert "本页缺少文字" in page and "制作完成前已取消" in page  # no error recorded: the cancellation says why
    assert len(_data_uris(page, "image/png")) == 3 and len(_data_uris(page, "audio/wav")) == 2
    ebook = epub.read_epub(str(bound.epub), {"ignore_ncx": True})
    assert ebook.get_metadata("DC", "language")[0][0] == "zh"
    assert CHINESE[1] in ebook.get_item_with_href("page-02.xhtml").get_content().decode("utf-8")
    manifest = json.loads(bound.manifest.read_text(encoding="utf-8"))
    assert manifest["cancelled"] is True and manifest["pages"][2]["audio"] is None
    assert manifest["missing"] == ["page 3: text", "page 3: audio"]
    assert not (tmp_path / "out" / "assets" / "page-03.wav").exists()


def test_an_artifact_whose_file_is_gone_is_reported_not_fatal(tmp_path):
    book = _book(tmp_path, ENGLISH[:2], "en")
    Path(book.pages[1].image.uri).unlink()
    bound = bind(book, tmp_path / "out")
    assert bound.missing == ["page 2: image"]
    page = bound.html.read_text(encoding="utf-8")
    assert "was not found when the book was bound" in page
    manifest = json.loads(bound.manifest.read_text(encoding="utf-8"))
    assert manifest["pages"][1]["problems"][0]["asset"] == "image"


def test_book_models():
    assert StoryBook(title="t", topic="x", pages=[]).complete is False
    page = StoryPage(index=1, text="hi", scene="s",
                     image=Artifact(kind="image", uri="/x.png"), audio=Artifact(kind="audio", uri="/x.wav"))
    book = StoryBook(title="t", topic="x", language="zh-CN", pages=[page])
    assert book.complete and book.missing == [] and book.language == "zh"
    plan = StoryPlan(title="t", topic="x", cast=[Character(name="Lily", look="red scarf")],
                     pages=[PagePlan(index=1, scene="Lily waves", summary="hello")])
    assert StoryBook.from_plan(plan).missing == ["page 1: text", "page 1: image", "page 1: audio"]
    assert plan.picture_prompt(1) == "Lily waves. Characters: Lily: red scarf"
    with pytest.raises(ValidationError, match="without gaps"):
        StoryPlan(title="t", topic="x", pages=[PagePlan(index=1, scene="a", summary="a"),
                                               PagePlan(index=3, scene="b", summary="b")])
    with pytest.raises(ValidationError):
        StoryPlan(title="t", topic="x", pages=[])
    with pytest.raises(ValidationError, match="unique"):
        StoryBook(title="t", topic="x", pages=[StoryPage(index=1), StoryPage(index=1)])


# ---------------------------------------------------------------------------------------------
# StoryPlan.parse

PLAN = {"title": "Lily and the Seed", "cast": [
    {"name": "Lily", "description": "a curious girl", "look": "red scarf, yellow boots"},
    {"name": "Tom", "description": "her friend", "look": "blue cap"}],
    "pages": [{"index": 1, "scene": "Lily kneels by the gate", "summary": "Lily finds a seed."},
              {"index": 2, "scene": "Tom waters the soil", "summary": "Tom helps."},
              {"index": 3, "scene": "A tall sunflower", "summary": "The seed becomes a sunflower."}]}


def test_parse_json():
    plan = StoryPlan.parse(json.dumps(PLAN), "a seed", pages=3, language="en")
    assert plan.title == "Lily and the Seed" and [c.name for c in plan.cast] == ["Lily", "Tom"]
    assert [p.scene for p in plan.pages][1] == "Tom waters the soil" and plan.notes == []
    assert plan.cast[0].look == "red scarf, yellow boots"


def test_parse_fenced_json_with_trailing_text_and_single_quotes():
    reply = "Sure! Here is the plan:\n```json\n" + json.dumps(PLAN, indent=2) + "\n```\nI hope you like it {:}"
    assert StoryPlan.parse(reply, "a seed", 3, "en").pages[2].summary == "The seed becomes a sunflower."
    single = str(PLAN).replace("'blue cap'}", "'blue cap',}")  # a Python dict, with a trailing comma
    plan = StoryPlan.parse("<think>plan it</think> " + single + " -- done", "a seed", 3, "en")
    assert plan.title == "Lily and the Seed" and plan.notes == []
    # cut off by max_tokens inside page 3: what was complete is kept, the rest filled in with notes
    text = json.dumps(PLAN)
    plan = StoryPlan.parse(text[:text.index(', "summary": "The seed')], "a seed", 3, "en")
    assert [p.summary for p in plan.pages] == ["Lily finds a seed.", "Tom helps.", "A tall sunflower"]
    assert plan.notes == ["page 3: no summary given; the scene is used"]
    plan = StoryPlan.parse(text[:text.index('"scene": "A tall') + 4], "a seed", 3, "en")
    assert [p.summary for p in plan.pages[:2]] == ["Lily finds a seed.", "Tom helps."]
    assert plan.notes == ["pages 3: not in the reply; derived from the topic"]
    assert "Lily" in plan.pages[2].summary  # the derived page stars the plan's protagonist


def test_parse_numbered_english_outline():
    reply = """Title: The Brave Little Fox
Cast: Finn - a small fox, look: orange fur and a green scarf; Owl - a wise old owl

1. Finn leaves his den at dawn. (Picture: Finn peeking out of a den in the snow)
2. **Finn meets Owl**, who tells him about the river.
   Scene: Owl on a branch above Finn
3. Finn crosses the river on stepping stones.
"""
    plan = StoryPlan.parse(reply, "a brave fox", pages=3, language="en")
    assert plan.title == "The Brave Little Fox"
    assert [(c.name, c.look) for c in plan.cast] == [("Finn", "orange fur and a green scarf"),
                                                     ("Owl", "a wise old owl")]
    assert plan.pages[0].summary == "Finn leaves his den at dawn."
    assert plan.pages[0].scene == "Finn peeking out of a den in the snow"
    assert plan.pages[1].summary == "Finn meets Owl, who tells him about the river."
    assert plan.pages[1].scene == "Owl on a branch above Finn"
    assert plan.pages[2].scene == plan.pages[2].summary == "Finn crosses the river on stepping stones."
    assert plan.notes == ["cast: 'Owl' has no separate look; its description is used",
                          "page 3: no scene given; the summary is used"]
    assert "Finn: orange fur and a green scarf" in plan.picture_prompt(1)


def test_parse_chinese_outline():
    reply = """标题：小兔种向日葵
角色：小兔 - 一只白色的小兔子，外貌：戴红围巾；小熊（小兔的好朋友）
第一页：小兔在森林里发现了一颗种子。画面：小兔蹲在大树下看着种子
第二页：小熊帮小兔一起浇水。
第3页：种子开出了一朵大大的向日葵。画面：金色的向日葵和两个好朋友"""
    plan = StoryPlan.parse(reply, "种向日葵", pages=3)
    assert plan.language == "zh" and plan.title == "小兔种向日葵"
    assert [c.name for c in plan.cast] == ["小兔", "小熊"] and plan.cast[0].look == "戴红围巾"
    assert plan.pages[0].scene == "小兔蹲在大树下看着种子" and plan.pages[0].summary == "小兔在森林里发现了一颗种子。"
    assert plan.pages[2].scene == "金色的向日葵和两个好朋友"
    assert plan.picture_prompt(1) == "小兔蹲在大树下看着种子。角色：小兔：戴红围巾"


def test_parse_partial_plan_fills_gaps_with_notes():
    plan = StoryPlan.parse('{"pages": ["A rabbit plants a carrot.", "The carrot grows."]}',
                           "a rabbit who grows a carrot", pages=4, language="en")
    assert len(plan.pages) == 4 and [p.index for p in plan.pages] == [1, 2, 3, 4]
    assert plan.pages[0].summary == "A rabbit plants a carrot."
    assert plan.cast[0].name == "Little Rabbit" and "rabbit" in plan.cast[0].look
    assert plan.title == "A rabbit who grows a carrot"
    assert "Little Rabbit" in plan.pages[3].summary
    joined = "\n".join(plan.notes)
    for expected in ("title: none in the reply", "cast: none in the reply", "pages 3-4: not in the reply"):
        assert expected in joined
    # more pages than asked for: the rest dropped, with a note; the same input gives the same plan
    many = "\n".join(f"{n}. Page {n} happens." for n in range(1, 7))
    plan = StoryPlan.parse(many, "一只小猫", pages=3, language="zh")
    assert len(plan.pages) == 3 and plan.cast[0].name == "小猫" and plan.title == "一只小猫的故事"
    assert any("3 beyond the 3 asked for dropped" in n for n in plan.notes)
    assert StoryPlan.parse(many, "一只小猫", pages=3, language="zh") == plan


def test_parse_garbage_raises():
    for reply in ("", "I'm sorry, I cannot help with that.", "```\n{}\n```", "[1, 2"):
        with pytest.raises(StoryPlanError):
            StoryPlan.parse(reply, "a seed", 3, "en")
