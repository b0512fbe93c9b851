"""Vision tools that run offline: OCR with tesseract (English, simplified Chinese) and Pillow image
operations (resize, crop, draw text). Inputs are artifact references or local paths inside the
folders tools may read (ArtifactStore.open_input); outputs are new image artifacts, so a chain of
edits never overwrites the caller's file.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

from raygent.schema import ToolExample
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.builtin._system import MissingSystemDependency, require_binary, run_program

_IMAGE_ARG = {"type": "string", "description": "an image: artifact URI or local file path"}
_TESSERACT_PACKAGES = {"eng": "tesseract-ocr-eng", "chi_sim": "tesseract-ocr-chi-sim"}
_CJK = "\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")
_HAS_CJK = re.compile(f"[{_CJK}]")

#: fonts that cover Chinese, most compact first; Latin-only text can use any of them or DejaVu
CJK_FONTS = ["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/arphic/uming.ttc"]
LATIN_FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
MAX_SIDE = 10000  # pixels: the largest image a tool makes (image_resize's bound; 10000x10000 RGB is 300 MB)
MAX_TEXT_CHARS = 5000  # image_draw_text writes a caption or a sign, not a book (the canvas grows with the text)


def _store(store: ArtifactStore | None) -> ArtifactStore:
    return store or default_store()


def open_image(ref: str, store: ArtifactStore | None = None) -> Any:
    """A PIL image from an artifact URI or path (the model's argument: confined to the folders tools
    may read, see ArtifactStore.open_input), with a clear error when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    path = _store(store).open_input(ref)
    try:
        im = Image.open(path)
        im.load()
    except UnidentifiedImageError as exc:
        raise ValueError(f"{ref} is not an image Pillow can read") from exc
    return im


def save_image(im: Any, store: ArtifactStore | None, metadata: dict[str, Any]) -> ToolOutput:
    store = _store(store)
    path = store.new_path(".png")
    (im if im.mode in ("RGB", "RGBA", "L", "LA", "P", "1") else im.convert("RGBA")).save(path, format="PNG")
    artifact = store.register(path, mime_type="image/png", metadata=metadata)
    return ToolOutput({"image": artifact.uri, "width": im.width, "height": im.height}, [artifact])


@functools.lru_cache(maxsize=1)
def tesseract_languages() -> frozenset[str]:
    binary = require_binary("tesseract", "tesseract-ocr", "ocr")
    out = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30)
    lines = (out.stdout or out.stderr).splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip())


class OcrTool(Tool):
    name = "ocr"
    description = ("Read the text in an image (OCR, English and simplified Chinese) with tesseract. "
                   "文字识别：识别图片中的文字。")
    parameters = {
        "type": "object",
        "properties": {
            "image": _IMAGE_ARG,
            "lang": {"type": "string", "default": "auto",
                     "description": "tesseract languages: 'eng', 'chi_sim', 'chi_sim+eng'; 'auto' = all installed "
                                    "of those"},
        },
        "required": ["image"],
    }
    domain = "vision"
    timeout_s = 60.0
    idempotent = True
    examples = [ToolExample(query="识别这张图片里的文字 /tmp/sign.png", arguments={"image": "/tmp/sign.png"})]

    def __init__(self, store: ArtifactStore | None = None):
        self.store = store

    def _languages(self, lang: str) -> str:
        installed = tesseract_languages()
        if lang == "auto":
            chosen = [code for code in ("chi_sim", "eng") if code in installed]
            if not chosen:
                raise MissingSystemDependency("ocr has no language data: run `sudo apt-get install -y "
                                              "tesseract-ocr-eng tesseract-ocr-chi-sim`")
            return "+".join(chosen)
        for code in lang.split("+"):
            if code not in installed:
                package = _TESSERACT_PACKAGES.get(code, f"tesseract-ocr-{code.replace('_', '-')}")
                raise MissingSystemDependency(f"ocr language {code!r} is not installed: run "
                                              f"`sudo apt-get install -y {package}` (installed: "
                                              f"{', '.join(sorted(installed)) or 'none'})")
        return lang

    async def call(self, image: str, lang: str = "auto") -> dict[str, Any]:
        binary = require_binary("tesseract", "tesseract-ocr", "ocr")
        path = _store(self.store).open_input(image)
        languages = self._languages(lang)
        text = ""
        # automatic page segmentation first (documents); a short line or label it finds no text in is often
        # read as one uniform block (mode 6), so that is the fallback
        for psm in ("3", "6"):
            out, _ = await run_program([binary, str(path), "stdout", "-l", languages, "--psm", psm],
                                       timeout_s=self.timeout_s)
            text = out.decode("utf-8", errors="replace")
            if text.strip():
                break
        # tesseract separates Chinese characters with spaces; a reader (or model) does not want them
        text = "\n".join(_CJK_GAP.sub("", line).strip() for line in text.splitlines())
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        return {"text": text, "lang": languages}


class ImageResizeTool(Tool):
    name = "image_resize"
    description = "Resize an image to a width and/or height (keeping the aspect ratio unless both are given)."
    parameters = {
        "type": "object",
        "properties": {
            "image": _IMAGE_ARG,
            "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
            "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        },
        "required": ["image"],
    }
    domain = "vision"
    idempotent = True

    def __init__(self, store: ArtifactStore | None = None):
        self.store = store

    async def call(self, image: str, width: int | None = None, height: int | None = None) -> ToolOutput:
        if width is None and height is None:
            raise ValueError("give a width, a height, or both")
        im = open_image(image, self.store)
        if width is None:
            width = max(1, round(im.width * height / im.height))  # type: ignore[operator]
        elif height is None:
            height = max(1, round(im.height * width / im.width))
        from PIL import Image

        return save_image(im.resize((width, height), Image.Resampling.LANCZOS), self.store,
                          {"source": image, "operation": "resize"})


class ImageCropTool(Tool):
    name = "image_crop"
    description = "Crop an image to the box (left, top, right, bottom) in pixels."
    parameters = {
        "type": "object",
        "properties": {
            "image": _IMAGE_ARG,
            "left": {"type": "integer", "minimum": 0}, "top": {"type": "integer", "minimum": 0},
            "right": {"type": "integer", "minimum": 1}, "bottom": {"type": "integer", "minimum": 1},
        },
        "required": ["image", "left", "top", "right", "bottom"],
    }
    domain = "vision"
    idempotent = True

    def __init__(self, store: ArtifactStore | None = None):
        self.store = store

    async def call(self, image: str, left: int, top: int, right: int, bottom: int) -> ToolOutput:
        im = open_image(image, self.store)
        if not (left < right <= im.width and top < bottom <= im.height):
            raise ValueError(f"crop box ({left}, {top}, {right}, {bottom}) is not inside the "
                             f"{im.width}x{im.height} image with left < right and top < bottom")
        return save_image(im.crop((left, top, right, bottom)), self.store, {"source": image, "operation": "crop"})


def find_font(text: str) -> str | None:
    """A TrueType font that covers the text (a CJK one when it has Chinese), or None."""
    candidates = CJK_FONTS if _HAS_CJK.search(text) else LATIN_FONTS + CJK_FONTS
    for path in candidates:
        if Path(path).is_file():
            return path
    return None


def _canvas_size(width: int, height: int) -> tuple[int, int]:
    """A new canvas's size, refused past MAX_SIDE: 10000 characters at font size 400 ask for a
    3955156x372 canvas, 4 GB that Pillow would try to allocate."""
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ValueError(f"the text needs a {width}x{height} canvas, more than {MAX_SIDE} pixels a side: use less "
                         f"text, a smaller font_size or smaller x/y, or draw on an existing image")
    return width, height


class ImageDrawTextTool(Tool):
    name = "image_draw_text"
    description = ("Write text onto an image (or onto a new blank canvas when no image is given); Chinese works. "
                   "在图片上写字。")
    parameters = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
            "image": {**_IMAGE_ARG, "description": "image to draw on (artifact URI or path); omit for a new canvas"},
            "x": {"type": "integer", "default": 10}, "y": {"type": "integer", "default": 10},
            "font_size": {"type": "integer", "minimum": 6, "maximum": 400, "default": 32},
            "color": {"type": "string", "default": "black", "description": "CSS color name or #rrggbb"},
            "background": {"type": "string", "default": "white", "description": "canvas color for a new image"},
        },
        "required": ["text"],
    }
    domain = "vision"
    idempotent = True

    def __init__(self, store: ArtifactStore | None = None):
        self.store = store

    async def call(self, text: str, image: str | None = None, x: int = 10, y: int = 10, font_size: int = 32,
                   color: str = "black", background: str = "white") -> ToolOutput:
        from PIL import Image, ImageDraw, ImageFont

        font_path = find_font(text)
        if font_path is None:
            if _HAS_CJK.search(text):
                raise RuntimeError("no font with Chinese characters is installed: run "
                                   "`sudo apt-get install -y fonts-wqy-microhei`")
            font: Any = ImageFont.load_default(font_size)
        else:
            font = ImageFont.truetype(font_path, font_size)
        if image:
            im = open_image(image, self.store).convert("RGB")
        else:
            probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
            left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font)
            im = Image.new("RGB", _canvas_size(right + 2 * max(x, 0), bottom + 2 * max(y, 0)), background)
        ImageDraw.Draw(im).multiline_text((x, y), text, fill=color, font=font)
        return save_image(im, self.store, {"source": image, "operation": "draw_text",
                                           "font": Path(font_path).name if font_path else "default"})
