"""The portrait team: the inspector refuses a photo without a face (with its reason), the stylist
turns words into parameters (rules, or the embedded model under a grammar), the painter paints,
and a contact sheet is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from raygent.apps.portrait import PortraitStudio

FACE = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")


@pytest.fixture()
def no_face(tmp_path) -> str:
    """A real picture without a person: a landscape drawn by the offline image backend."""
    from raygent.imaging.offline import OfflineSceneBackend

    backend = OfflineSceneBackend()
    import asyncio

    artifact = asyncio.get_event_loop_policy().new_event_loop().run_until_complete(
        backend.generate({"prompt": "green hills under a blue sky", "seed": 3}))
    return artifact.uri


async def test_portraits_with_the_rules_stylist(tmp_path, no_face):
    lines: list[str] = []
    studio = PortraitStudio(use_llm=False, progress=lines.append)
    result = await studio.make([FACE, no_face], "一幅素描，暖色调", tmp_path / "out")
    face, landscape = result.photos
    assert face.accepted and face.faces == 1 and face.portrait
    with Image.open(face.portrait) as im:
        assert im.size == (512, 512)
    assert not landscape.accepted and landscape.portrait is None
    assert "no face was found" in landscape.reason
    assert result.style["style"] == "pencil_sketch" and result.style["tint"] == "warm" and result.style_source == "rules"
    assert Path(result.contact_sheet).exists()
    saved = json.loads((tmp_path / "out" / "portraits.json").read_text())
    assert saved["photos"][1]["reason"] == landscape.reason
    assert any(line.startswith("inspector:") and "refused" in line for line in lines)


@pytest.mark.model
async def test_portrait_stylist_on_the_embedded_model(tmp_path, embedded_llm):
    studio = PortraitStudio(llm=embedded_llm)
    result = await studio.make([FACE], "a bold oil painting with a blue background", tmp_path / "out")
    (item,) = result.photos
    assert item.portrait and Path(item.portrait).exists()
    assert result.style_source.startswith("model")
    assert result.style["style"] == "oil_painting"  # the style the customer named, whatever the model picked
    from raygent.imaging.stylize import available_styles

    assert result.style["style"] in available_styles() and 0.2 <= result.style["strength"] <= 1.0


async def test_portrait_errors_are_clear(tmp_path):
    studio = PortraitStudio(use_llm=False)
    with pytest.raises(ValueError, match="no photos"):
        await studio.make([], "watercolor", tmp_path)
    with pytest.raises(ValueError, match="describe the style"):
        await studio.make([FACE], "  ", tmp_path)
    result = await studio.make([str(tmp_path / "missing.jpg")], "watercolor", tmp_path / "out")
    assert not result.photos[0].accepted and result.photos[0].reason and result.contact_sheet is None
