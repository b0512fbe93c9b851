"""Offline built-ins on their real engines: espeak-ng, tesseract, jieba, Pillow, httpx."""

from __future__ import annotations

import http.server
import json
import threading
import wave

import numpy as np
import pytest

from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.builtin import available_tools, builtin_hubs, missing_requirements
from raygent.toolhub.builtin._system import find_binary
from raygent.toolhub.builtin.nlp import KeywordsTool, WordSegmentTool
from raygent.toolhub.builtin.speech import TextToSpeechTool
from raygent.toolhub.builtin.vision import ImageCropTool, ImageDrawTextTool, ImageResizeTool, OcrTool
from raygent.toolhub.builtin.web import WebFetchTool, host_allowed
from raygent.toolhub.hub import ToolHub

needs_espeak = pytest.mark.skipif(find_binary("espeak-ng") is None, reason="apt-get install espeak-ng")
needs_tesseract = pytest.mark.skipif(find_binary("tesseract") is None, reason="apt-get install tesseract-ocr")


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


def median_pitch_hz(path: str) -> float:
    """Fundamental frequency of the voiced frames (autocorrelation), to tell the voices apart."""
    with wave.open(path) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(float)
    n, pitches = 1024, []
    threshold = 0.3 * np.sqrt(np.mean(x ** 2))
    for i in range(0, len(x) - n, n):
        frame = x[i:i + n] - x[i:i + n].mean()
        if np.sqrt(np.mean(frame ** 2)) < threshold:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lo, hi = rate // 400, rate // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


@needs_espeak
async def test_text_to_speech_gives_wav_with_the_asked_gender_and_language(store):
    tts = ToolHub("speech", [TextToSpeechTool(store)])
    woman = await tts.call("text_to_speech", {"text": "今天天气很好，我们去公园散步吧。", "gender": "woman"})
    man = await tts.call("text_to_speech", {"text": "今天天气很好，我们去公园散步吧。", "gender": "man"})
    english = await tts.call("text_to_speech", {"text": "Hello, this is a test.", "gender": "male"})
    for r in (woman, man, english):
        assert r.ok, r.error
        art = r.artifacts[0]
        assert art.kind == "audio" and art.mime_type == "audio/wav" and art.metadata["duration_s"] > 0.8
        assert store.open_path(art).read_bytes()[:4] == b"RIFF"
    assert woman.output["voice"] == "cmn+f3" and man.output["voice"] == "cmn+m3" and english.output["voice"] == "en-us+m3"
    f_hz, m_hz = median_pitch_hz(woman.artifacts[0].uri), median_pitch_hz(man.artifacts[0].uri)
    assert f_hz > 1.5 * m_hz, (f_hz, m_hz)  # the seed's `gender` really changes the voice
    bad = await tts.call("text_to_speech", {"text": "hi", "gender": "robot"})
    assert "'robot' is not one of" in bad.error


async def test_missing_program_names_the_apt_package(store, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng, no tesseract on this PATH
    hub = ToolHub("x", [TextToSpeechTool(store), OcrTool(store)])
    r = await hub.call("text_to_speech", {"text": "hi"})
    assert "needs the program 'espeak-ng', which is not installed: run `sudo apt-get install -y espeak-ng`" in r.error
    r = await hub.call("ocr", {"image": str(tmp_path)})
    assert "apt-get install -y tesseract-ocr" in r.error
    assert "apt-get install espeak-ng" in missing_requirements("text_to_speech")
    assert {t.name for t in available_tools()}.isdisjoint({"text_to_speech", "ocr"})


@needs_tesseract
async def test_ocr_reads_back_text_rendered_with_pillow(store):
    hub = ToolHub("vision", [ImageDrawTextTool(store), OcrTool(store)])
    en = await hub.call("image_draw_text", {"text": "Invoice 2026-11 total 4821", "font_size": 40})
    zh = await hub.call("image_draw_text", {"text": "欢迎使用语音合成", "font_size": 48})
    assert en.ok and zh.ok, (en.error, zh.error)
    read_en = await hub.call("ocr", {"image": "file://" + en.artifacts[0].uri, "lang": "eng"})
    assert read_en.output["text"] == "Invoice 2026-11 total 4821"
    read_zh = await hub.call("ocr", {"image": zh.artifacts[0].uri})
    assert read_zh.output == {"text": "欢迎使用语音合成", "lang": "chi_sim+eng"}
    missing = await hub.call("ocr", {"image": en.artifacts[0].uri, "lang": "klingon"})
    assert "ocr language 'klingon' is not installed: run `sudo apt-get install -y tesseract-ocr-klingon`" in missing.error


async def test_image_resize_crop_and_errors(tmp_path):
    from PIL import Image

    src = tmp_path / "photo.jpg"
    Image.new("RGB", (400, 200), "blue").save(src)
    store = ArtifactStore(tmp_path / "artifacts", readable=[tmp_path])  # tools may read the photo's folder
    hub = ToolHub("vision", [ImageResizeTool(store), ImageCropTool(store), ImageDrawTextTool(store)])
    half = await hub.call("image_resize", {"image": str(src), "width": 200})
    assert half.artifacts[0].metadata["width"] == 200 and half.artifacts[0].metadata["height"] == 100
    crop = await hub.call("image_crop", {"image": half.output["image"], "left": 10, "top": 0, "right": 60,
                                         "bottom": 40})
    assert (crop.output["width"], crop.output["height"]) == (50, 40)
    drawn = await hub.call("image_draw_text", {"image": crop.output["image"], "text": "hi", "color": "#ff0000"})
    with Image.open(drawn.output["image"]) as im:
        assert (255, 0, 0) in {c for _, c in im.getcolors(10000)}  # the text is on the image in red
    assert src.stat().st_size and Image.open(src).size == (400, 200)  # the source is untouched
    outside = await hub.call("image_crop", {"image": str(src), "left": 0, "top": 0, "right": 500, "bottom": 10})
    assert "is not inside the 400x200 image" in outside.error
    (tmp_path / "notes.txt").write_text("not a picture")
    assert "is not an image Pillow can read" in (await hub.call("image_resize", {"image": str(tmp_path / "notes.txt"),
                                                                                  "width": 5})).error
    assert "give a width, a height, or both" in (await hub.call("image_resize", {"image": str(src)})).error


async def test_jieba_segmentation_pos_and_keywords():
    hub = ToolHub("nlp", [WordSegmentTool(), KeywordsTool()])
    words = (await hub.call("word_segment", {"text": "我来到北京清华大学"})).output["words"]
    assert words == ["我", "来到", "北京", "清华大学"]
    tagged = (await hub.call("word_segment", {"text": "我来到北京清华大学", "pos": True})).output["words"]
    assert ["北京", "ns"] in tagged
    search = (await hub.call("word_segment", {"text": "清华大学", "mode": "search"})).output["words"]
    assert {"清华", "华大", "大学", "清华大学"} <= set(search)
    text = "清华大学是著名的高等学府。清华大学位于北京，北京是中国的首都。"
    kws = (await hub.call("keywords", {"text": text, "top_k": 3})).output["keywords"]
    assert kws[0]["word"] == "清华大学" and len(kws) == 3 and kws[0]["weight"] >= kws[1]["weight"]
    ranked = (await hub.call("keywords", {"text": text, "method": "textrank"})).output["keywords"]
    assert ranked and all(k["weight"] > 0 for k in ranked)


class _Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        routes = {
            "/page": (200, "text/html; charset=utf-8",
                      "<html><head><title>Tea</title><style>p{}</style></head><body><h1>绿茶</h1>"
                      "<script>alert(1)</script><p>Green tea &amp; oolong.</p></body></html>".encode()),
            "/logo.png": (200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
        }
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/page")
            self.end_headers()
            return
        if self.path == "/escape":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        status, ctype, body = routes.get(self.path, (404, "text/plain", b"no such page"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_web_fetch_is_off_by_default_and_obeys_the_allow_list(site, store, monkeypatch):
    monkeypatch.delenv("RAYGENT_WEB_ALLOW", raising=False)
    off = await ToolHub("web", [WebFetchTool(store=store)]).call("web_fetch", {"url": f"http://{site}/page"})
    assert off.error.startswith("tool 'web_fetch' failed: WebAccessDenied: web access is off: allow hosts with "
                                "RAYGENT_WEB_ALLOW")
    assert missing_requirements("web_fetch") == "web access is off: set RAYGENT_WEB_ALLOW to the allowed hosts"

    monkeypatch.setenv("RAYGENT_WEB_ALLOW", site)
    hub = ToolHub("web", [WebFetchTool(store=store)])
    page = await hub.call("web_fetch", {"url": f"http://{site}/hop"})  # a redirect inside the allow-list
    assert page.ok, page.error
    assert page.output["title"] == "Tea" and page.output["text"] == "Tea\n绿茶\nGreen tea & oolong."
    assert page.output["url"] == f"http://{site}/page" and page.output["status"] == 200
    logo = await hub.call("web_fetch", {"url": f"http://{site}/logo.png"})
    assert logo.artifacts[0].kind == "image" and logo.artifacts[0].metadata["source_url"].endswith("/logo.png")
    escape = await hub.call("web_fetch", {"url": f"http://{site}/escape"})
    assert "host of http://169.254.169.254/latest/meta-data is not on the web allow-list" in escape.error
    other_port = await hub.call("web_fetch", {"url": "http://127.0.0.1:9/page"})
    assert "not on the web allow-list" in other_port.error
    assert "only http and https" in (await hub.call("web_fetch", {"url": "file:///etc/passwd"})).error
    assert missing_requirements("web_fetch") is None


def test_allow_list_patterns():
    assert host_allowed("https://docs.python.org/3/", ["*.python.org"])
    assert host_allowed("https://python.org/", ["*.python.org"])
    assert not host_allowed("https://evilpython.org/", ["*.python.org"])
    assert host_allowed("http://example.com:8080/x", ["example.com"])
    assert not host_allowed("http://example.com:8080/x", ["example.com:80"])
    assert host_allowed("http://anything.net", ["*"])


async def test_cli_default_tool_set_has_every_domain_whose_programs_are_present():
    specs = await builtin_hubs().list_specs()
    domains = {s.domain for s in specs}
    assert {"nlp", "math", "utility", "vision"} <= domains
    if find_binary("espeak-ng"):
        assert "speech" in domains
    assert json.loads(json.dumps([s.model_dump() for s in specs]))  # serialisable for `tools list --json`
