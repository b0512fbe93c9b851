"""Chinese NLP with jieba: word segmentation (with part-of-speech tags) and keyword extraction.

jieba ships its dictionary in the wheel, so it works offline; the dictionary loads once per process
(about a second) on the first call. Address parsing lives in `address.py`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from typing import Any

from raygent.schema import ToolExample
from raygent.toolhub.base import Tool

_LOCK = threading.Lock()
_READY = False


def _jieba() -> Any:
    global _READY
    try:
        with warnings.catch_warnings():  # jieba imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import jieba
    except ImportError as exc:
        raise RuntimeError("Chinese word segmentation needs jieba: pip install 'raygent[tools]'") from exc
    with _LOCK:  # the first load builds the prefix dictionary; do it once, not in every thread
        if not _READY:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _READY = True
    return jieba


def segment(text: str, mode: str = "accurate", pos: bool = False) -> list[Any]:
    """Words of `text`; with `pos`, [word, tag] pairs (jieba's ICTCLAS-style tags)."""
    jieba = _jieba()
    if pos:
        import jieba.posseg as pseg

        return [[w.word, w.flag] for w in pseg.lcut(text) if w.word.strip()]
    if mode == "accurate":
        words = jieba.lcut(text)
    elif mode == "full":
        words = jieba.lcut(text, cut_all=True)
    elif mode == "search":
        words = jieba.lcut_for_search(text)
    else:
        raise ValueError(f"unknown mode {mode!r}: use 'accurate', 'full' or 'search'")
    return [w for w in words if w.strip()]


def keywords(text: str, top_k: int = 5, method: str = "tfidf") -> list[dict[str, Any]]:
    """The `top_k` keywords of `text` with weights (TF-IDF or TextRank)."""
    _jieba()
    import jieba.analyse

    if method == "tfidf":
        pairs = jieba.analyse.extract_tags(text, topK=top_k, withWeight=True)
    elif method == "textrank":
        pairs = jieba.analyse.textrank(text, topK=top_k, withWeight=True)
    else:
        raise ValueError(f"unknown method {method!r}: use 'tfidf' or 'textrank'")
    return [{"word": w, "weight": round(float(s), 4)} for w, s in pairs]


class WordSegmentTool(Tool):
    name = "word_segment"
    description = "中文分词：把中文句子切分成词语，可选词性标注 (Chinese word segmentation, optional POS tags)."
    parameters = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1},
            "mode": {"type": "string", "enum": ["accurate", "full", "search"], "default": "accurate"},
            "pos": {"type": "boolean", "default": False, "description": "also return part-of-speech tags"},
        },
        "required": ["text"],
    }
    domain = "nlp"
    idempotent = True
    examples = [ToolExample(query="帮我把这句话分词：我来到北京清华大学", arguments={"text": "我来到北京清华大学"})]

    async def call(self, text: str, mode: str = "accurate", pos: bool = False) -> dict[str, Any]:
        words = await asyncio.to_thread(segment, text, mode, pos)
        return {"words": words}


class KeywordsTool(Tool):
    name = "keywords"
    description = "中文关键词提取 (TF-IDF 或 TextRank)：找出一段中文文本的关键词 (Chinese keyword extraction)."
    parameters = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
            "method": {"type": "string", "enum": ["tfidf", "textrank"], "default": "tfidf"},
        },
        "required": ["text"],
    }
    domain = "nlp"
    idempotent = True
    examples = [ToolExample(query="提取这段话的关键词：……", arguments={"text": "……", "top_k": 5})]

    async def call(self, text: str, top_k: int = 5, method: str = "tfidf") -> dict[str, Any]:
        return {"keywords": await asyncio.to_thread(keywords, text, top_k, method)}
