"""Text to speech with espeak-ng (offline, Chinese and English, male and female voices) -> WAV artifact.

espeak-ng is a formant synthesizer: robotic but intelligible, small, and needs no model files, so
it works on any machine. The seed's `gender` parameter ('man' / 'woman') picks the voice variant.
"""

from __future__ import annotations

import re
from typing import Any

from raygent.schema import ToolExample
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.builtin._system import require_binary, run_program

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_GENDERS = {"man": "male", "male": "male", "m": "male", "男": "male", "男声": "male",
            "woman": "female", "female": "female", "f": "female", "女": "female", "女声": "female"}
#: espeak-ng voice per language, and the variant per gender (f3/m3 differ clearly in pitch)
VOICES = {"zh": "cmn", "en": "en-us"}
VARIANTS = {"male": "m3", "female": "f3"}
MAX_CHARS = 5000


def detect_language(text: str) -> str:
    """'zh' when the text has Chinese characters, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


def espeak_voice(text: str, gender: str = "woman", language: str = "auto") -> str:
    """The espeak-ng `-v` value for a text, gender and language (e.g. 'cmn+f3')."""
    g = _GENDERS.get(gender.strip().lower())
    if g is None:
        raise ValueError(f"unknown gender {gender!r}: use 'man' or 'woman'")
    lang = detect_language(text) if language == "auto" else language
    if lang not in VOICES:
        raise ValueError(f"unsupported language {language!r}: use 'zh', 'en' or 'auto'")
    return f"{VOICES[lang]}+{VARIANTS[g]}"


class TextToSpeechTool(Tool):
    name = "text_to_speech"
    description = ("Read text aloud: synthesizes Chinese or English speech with a male or female voice and returns "
                   "a WAV audio file. 语音合成，把文字用男声或女声读出来。")
    parameters = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "the text to speak", "minLength": 1},
            "gender": {"type": "string", "description": "voice: 'woman' (female) or 'man' (male)",
                       "enum": sorted(_GENDERS), "default": "woman"},
            "language": {"type": "string", "enum": ["auto", "zh", "en"], "default": "auto",
                         "description": "language of the text; 'auto' detects Chinese characters"},
            "speed": {"type": "integer", "minimum": 80, "maximum": 450, "default": 160,
                      "description": "words per minute"},
        },
        "required": ["text"],
    }
    domain = "speech"
    timeout_s = 60.0
    idempotent = True
    examples = [ToolExample(query="用女声读出来：今天天气很好", arguments={"text": "今天天气很好", "gender": "woman"}),
                ToolExample(query="Say 'hello everyone' in a male voice",
                            arguments={"text": "hello everyone", "gender": "man"})]

    def __init__(self, store: ArtifactStore | None = None):
        self.store = store

    async def call(self, text: str, gender: str = "woman", language: str = "auto", speed: int = 160) -> ToolOutput:
        binary = require_binary("espeak-ng", "espeak-ng", "text_to_speech")
        if not text.strip():
            raise ValueError("text is empty: nothing to speak")
        if len(text) > MAX_CHARS:  # checked here, not as schema maxLength: grammar-constrained decoders
            raise ValueError(f"text is {len(text)} characters; at most {MAX_CHARS} per call")  # expand that
        voice = espeak_voice(text, gender, language)
        store = self.store or default_store()
        path = store.new_path(".wav")
        # text on stdin: a text starting with '-' is never taken for an option
        await run_program([binary, "-v", voice, "-s", str(speed), "-w", str(path), "--stdin"],
                          stdin=text.encode("utf-8"), timeout_s=self.timeout_s)
        artifact = store.register(path, mime_type="audio/wav",
                                  metadata={"voice": voice, "gender": _GENDERS[gender.strip().lower()],
                                            "engine": "espeak-ng"})
        output: dict[str, Any] = {"audio": artifact.uri, "voice": voice,
                                  "duration_s": artifact.metadata.get("duration_s")}
        return ToolOutput(output, [artifact])
