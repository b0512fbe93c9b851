"""A local stand-in for ModelScope's hosted inference API (POST /api-inference/v1/models/{model_id},
bearer token, `{"Code", "Message", "RequestId", "Data"}` answers), for the remote mode of the
ModelScope tools. It checks each model's request shape the way the seed's tools send it, and
answers with deterministic functions of the input (cpca parses addresses for the address model).
"""

from __future__ import annotations

import base64
import io
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "/api-inference/v1/models/"


@dataclass
class FakeModelScopeAPI:
    token: str = "ms-test"
    requests: list[tuple[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(routes=[Route(PREFIX + "{model_id:path}", self.infer, methods=["POST"]),
                                 Route("/files/{name}", self.serve, methods=["GET"])])

    @staticmethod
    def answer(data: Any = None, code: int = 200, message: str = "success", status: int = 200) -> JSONResponse:
        body: dict[str, Any] = {"Code": code, "Message": message, "RequestId": uuid.uuid4().hex}
        if data is not None:
            body["Data"] = data
        return JSONResponse(body, status_code=status)

    async def serve(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        return Response(data, media_type="video/mp4") if data is not None else Response(status_code=404)

    async def infer(self, request: Request) -> Response:
        model = request.path_params["model_id"]
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self.answer(code=401, message="Unauthorized: invalid token", status=401)
        body = await request.json()
        self.requests.append((model, body))
        handler = {
            "damo/mgeo_geographic_elements_tagging_chinese_base": self.address,
            "damo/nlp_raner_named-entity-recognition_chinese-base-news": self.ner,
            "damo/nlp_structbert_siamese-uie_chinese-base": self.ie,
            "damo/nlp_csanmt_translation_en2zh": self.translate,
            "damo/nlp_csanmt_translation_zh2en": self.translate,
            "damo/speech_sambert-hifigan_tts_zh-cn_16k": self.tts,
            "damo/text-to-video-synthesis": self.video,
            "damo/multi-modal_mplug_owl_multimodal-dialogue_7b": self.image_chat,
        }.get(model)
        if handler is None:
            return self.answer(code=404, message=f"model {model} not found or has no inference API", status=404)
        if "input" not in body:
            return self.answer(code=400, message="input is required", status=400)
        return handler(body, str(request.base_url))

    def address(self, body: dict[str, Any], base: str) -> JSONResponse:
        import cpca

        text = body["input"]
        row = cpca.transform([text]).iloc[0]
        output = []
        for column, kind in (("省", "prov"), ("市", "city"), ("区", "district")):
            value = row[column]
            if value and value in text:
                start = text.index(value)
                output.append({"type": kind, "start": start, "end": start + len(value), "span": value})
            elif value and value[:-1] and value[:-1] in text:  # "杭州" for "杭州市"
                start = text.index(value[:-1])
                output.append({"type": kind, "start": start, "end": start + len(value) - 1, "span": value[:-1]})
        return self.answer({"output": output})

    GAZETTEER = {"阿里巴巴": "ORG", "杭州": "LOC", "马云": "PER", "北京": "LOC"}

    def ner(self, body: dict[str, Any], base: str) -> JSONResponse:
        text = body["input"]
        output = [{"type": kind, "start": text.index(word), "end": text.index(word) + len(word), "span": word}
                  for word, kind in self.GAZETTEER.items() if word in text]
        return self.answer({"output": sorted(output, key=lambda e: e["start"])})

    def ie(self, body: dict[str, Any], base: str) -> JSONResponse:
        schema = (body.get("parameters") or {}).get("schema")
        if not isinstance(schema, dict):
            return self.answer(code=400, message="parameters.schema (a JSON object) is required", status=400)
        text = body["input"]
        output = [[{"type": kind, "span": word, "offset": [text.index(word), text.index(word) + len(word)]}]
                  for word, kind in ((w, {"PER": "人物", "LOC": "地点", "ORG": "组织"}[k])
                                     for w, k in self.GAZETTEER.items()) if word in text and kind in schema]
        return self.answer({"output": output})

    def translate(self, body: dict[str, Any], base: str) -> JSONResponse:
        return self.answer({"translation": f"<{body['input'][::-1]}>"})

    def tts(self, body: dict[str, Any], base: str) -> JSONResponse:
        if body.get("voice") not in ("zhizhe_emo", "zhiyan_emo"):
            return self.answer(code=400, message=f"unknown voice {body.get('voice')!r}", status=400)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\x00\x01" * int(16000 * 0.2 * len(body["input"])))
        return self.answer({"output_wav": base64.b64encode(buf.getvalue()).decode()})

    def video(self, body: dict[str, Any], base: str) -> JSONResponse:
        if not isinstance(body["input"], dict) or "text" not in body["input"]:
            return self.answer(code=400, message="input.text is required", status=400)
        name = f"{uuid.uuid4().hex}.mp4"
        self.files[name] = b"\x00\x00\x00\x18ftypmp42" + body["input"]["text"].encode()
        return self.answer({"output_video": f"{base}files/{name}"})

    def image_chat(self, body: dict[str, Any], base: str) -> JSONResponse:
        messages = body["input"]["messages"]
        image = messages[1]["content"][0]["image"]
        return self.answer({"text": f"I see {image}; you asked: {messages[2]['content']}"})
