"""A contact sheet: several pictures in a grid, each with its label underneath, as one PNG."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raygent.imaging.base import ImageBackendError
from raygent.imaging.stylize import load_image
from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store


def _font(labels: Sequence[str], size: int) -> Any:
    from PIL import ImageFont

    from raygent.toolhub.builtin.vision import find_font

    path = find_font("".join(labels))
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def _fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(images: Sequence[Any], labels: Sequence[str] | None = None,
                  out: str | os.PathLike[str] | None = None, *, columns: int | None = None, tile: int = 256,
                  padding: int = 12, background: str = "white", store: ArtifactStore | None = None) -> Artifact:
    """Lay out `images` (paths, artifact references or PIL images) `columns` per row (about square by
    default), each fitted into a `tile` x `tile` cell with its label below. Writes a PNG to `out` (a
    new file in the artifact store when None) and returns its Artifact."""
    from PIL import Image, ImageDraw, ImageOps

    if not images:
        raise ImageBackendError("a contact sheet needs at least one picture")
    labels = list(labels) if labels is not None else [""] * len(images)
    if len(labels) != len(images):
        raise ImageBackendError(f"{len(images)} pictures but {len(labels)} labels")
    store = store or default_store()
    pictures = []
    for item in images:
        if isinstance(item, Artifact):
            item = item.uri
        pictures.append(item.convert("RGB") if hasattr(item, "convert") else load_image(item, store))
    columns = columns or max(1, math.ceil(math.sqrt(len(pictures))))
    rows = math.ceil(len(pictures) / columns)
    font_size = max(10, tile // 14)
    font = _font(labels, font_size)
    label_h = int(font_size * 1.6) if any(labels) else 0
    sheet = Image.new("RGB", (columns * (tile + padding) + padding, rows * (tile + label_h + padding) + padding),
                      background)
    draw = ImageDraw.Draw(sheet)
    for i, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        r, c = divmod(i, columns)
        x, y = padding + c * (tile + padding), padding + r * (tile + label_h + padding)
        thumb = ImageOps.contain(picture, (tile, tile))
        sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
        if label:
            text = _fit_text(draw, str(label), font, tile)
            width = draw.textlength(text, font=font)
            draw.text((x + (tile - width) / 2, y + tile + font_size * 0.25), text, fill="black", font=font)
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
    else:
        target = store.new_path(".png")
    sheet.save(target, format="PNG")
    return store.register(target, mime_type="image/png", kind="image",
                          metadata={"operation": "contact_sheet", "count": len(pictures), "columns": columns,
                                    "labels": labels})
