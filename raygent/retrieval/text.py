"""Tokenisation for lexical scoring, English and Chinese alike.

Latin text: identifiers are split (`getWeatherForecast`, `triangle_properties.get` -> words),
lower-cased, English stop words dropped and words Snowball-stemmed (PyStemmer) when installed.
CJK text: jieba's search-mode segmentation (words plus their sub-words), so that a query's 省市区
matches a document's 省/市/区 words. jieba loads its dictionary (about 1 s) on first CJK text only.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_SPLIT = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+")

STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with i me my we you your can could would should please do does did what which who how "
    "from given".split()
)
_CJK_STOP = frozenset("的 了 和 是 在 我 你 他 她 它 们 这 那 个 与 及 或 把 被 吗 呢 吧 啊 请 帮 给".split())


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import logging
    import warnings

    with warnings.catch_warnings():  # jieba imports pkg_resources, deprecated by setuptools
        warnings.simplefilter("ignore")
        import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def tokenize(text: str, *, stem: bool = True) -> list[str]:
    """Lexical tokens of `text` (see the module docstring)."""
    out: list[str] = []
    for part in _SPLIT.split(text or ""):
        if not part:
            continue
        if _CJK.fullmatch(part):
            out.extend(w for w in _jieba().lcut_for_search(part) if w.strip() and w not in _CJK_STOP)
            continue
        words = [w for w in _WORD.findall(_CAMEL.sub(" ", part).lower()) if w not in STOPWORDS]
        stemmer = _stemmer() if stem else None
        out.extend(stemmer.stemWords(words) if stemmer is not None else words)
    return out


def tokenize_many(texts: list[str], *, stem: bool = True) -> list[list[str]]:
    return [tokenize(t, stem=stem) for t in texts]
