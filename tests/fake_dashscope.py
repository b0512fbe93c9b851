"""A local stand-in for the DashScope service, speaking its real wire protocol so the official SDK
runs unmodified against it (the real service is a paid remote API that tests cannot reach).

HTTP: bearer-key auth with DashScope's error bodies ({code, message, request_id}); wanx
text-to-image as an asynchronous task (submit with `X-DashScope-Async: enable` -> task_id; polling
`/tasks/{id}` goes PENDING -> RUNNING -> SUCCEEDED with result URLs that this server also serves,
or FAILED); the OSS upload flow (`/uploads?action=getPolicy`, then a multipart POST to the
upload host) and qwen-vl's multimodal generation, which resolves `oss://` references.
Websocket (`/api-ws/v1/inference`): run-task / task-started / result-generated / task-finished /
task-failed, binary audio frames out for sambert, binary audio frames in for paraformer (duplex).

The "models" are deterministic functions of the input (a tone as long as the text, the image's
real size and colour, the received audio's real duration), so tests can check the round trip.
"""

from __future__ import annotations

import io
import json
import math
import struct
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

IMAGE_MODELS = {"wanx-v1", "wanx2.1-t2i-turbo"}
VL_MODELS = {"qwen-vl-plus", "qwen-vl-max"}
TTS_PREFIX = "sambert-"
ASR_MODELS = {"paraformer-realtime-v1", "paraformer-realtime-v2"}


@dataclass
class FakeDashScope:
    api_key: str = "sk-test"
    transcript: str = "今天天气很好"
    polls_until_done: int = 2
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)
    ws_log: list[dict[str, Any]] = field(default_factory=list)
    received_audio: bytes = b""

    # --- helpers ---------------------------------------------------------------------------
    @staticmethod
    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message, "request_id": uuid.uuid4().hex}, status_code=status)

    def authorized(self, headers: Any) -> bool:
        return headers.get("authorization") == f"Bearer {self.api_key}"

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v1/services/aigc/text2image/image-synthesis", self.image_synthesis, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", self.task_status, methods=["GET"]),
            Route("/api/v1/uploads", self.upload_policy, methods=["GET"]),
            Route("/oss", self.oss_upload, methods=["POST"]),
            Route("/api/v1/services/aigc/multimodal-generation/generation", self.multimodal, methods=["POST"]),
            Route("/files/{name}", self.serve_file, methods=["GET"]),
            WebSocketRoute("/api-ws/v1/inference", self.inference_ws),
        ])

    # --- wanx: asynchronous task ----------------------------------------------------------
    async def image_synthesis(self, request: Request) -> Response:
        self.log.append(("POST", request.url.path))
        if not self.authorized(request.headers):
            return self.error(401, "InvalidApiKey", "Invalid API-key provided.")
        if request.headers.get("x-dashscope-async") != "enable":
            return self.error(403, "AccessDenied", "current user api does not support synchronous calls")
        body = await request.json()
        if body.get("model") not in IMAGE_MODELS:
            return self.error(400, "InvalidParameter", f"Model not exist: {body.get('model')}")
        prompt = (body.get("input") or {}).get("prompt")
        if not prompt:
            return self.error(400, "InvalidParameter", "input.prompt is required")
        params = body.get("parameters") or {}
        width, height = (int(v) for v in str(params.get("size", "1024*1024")).split("*"))
        task_id = uuid.uuid4().hex
        self.tasks[task_id] = {"prompt": prompt, "n": int(params.get("n", 1)), "size": (width, height), "polls": 0,
                               "base": str(request.base_url)}
        return JSONResponse({"request_id": uuid.uuid4().hex,
                             "output": {"task_id": task_id, "task_status": "PENDING"}})

    async def task_status(self, request: Request) -> Response:
        self.log.append(("GET", request.url.path))
        if not self.authorized(request.headers):
            return self.error(401, "InvalidApiKey", "Invalid API-key provided.")
        task_id = request.path_params["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            return self.error(404, "NotFound", f"task {task_id} not found")
        task["polls"] += 1
        output: dict[str, Any] = {"task_id": task_id}
        if task["polls"] < self.polls_until_done:
            output["task_status"] = "PENDING" if task["polls"] == 1 else "RUNNING"
        elif "forbidden" in task["prompt"]:
            output.update(task_status="FAILED", code="DataInspectionFailed",
                          message="Input data may contain inappropriate content.")
        else:
            results = []
            for i in range(task["n"]):
                name = f"{task_id}-{i}.png"
                if name not in self.files:
                    buf = io.BytesIO()
                    Image.new("RGB", task["size"], (30 + 60 * i, 120, 200)).save(buf, format="PNG")
                    self.files[name] = (buf.getvalue(), "image/png")
                results.append({"url": f"{task['base']}files/{name}"})
            output.update(task_status="SUCCEEDED", results=results,
                          task_metrics={"TOTAL": task["n"], "SUCCEEDED": task["n"], "FAILED": 0})
            return JSONResponse({"request_id": uuid.uuid4().hex, "output": output,
                                 "usage": {"image_count": task["n"]}})
        return JSONResponse({"request_id": uuid.uuid4().hex, "output": output})

    async def serve_file(self, request: Request) -> Response:
        item = self.files.get(request.path_params["name"])
        if item is None:
            return Response(status_code=404)
        return Response(content=item[0], media_type=item[1])

    # --- OSS upload + qwen-vl -------------------------------------------------------------
    async def upload_policy(self, request: Request) -> Response:
        self.log.append(("GET", request.url.path))
        if not self.authorized(request.headers):
            return self.error(401, "InvalidApiKey", "Invalid API-key provided.")
        if request.query_params.get("action") != "getPolicy":
            return self.error(400, "InvalidParameter", "action must be getPolicy")
        return JSONResponse({"request_id": uuid.uuid4().hex, "data": {
            "policy": "cG9saWN5", "signature": "c2ln", "upload_dir": f"dashscope-instant/{uuid.uuid4().hex}",
            "upload_host": f"{request.base_url}oss", "expire_in_seconds": 300, "max_file_size_mb": 100,
            "capacity_limit_mb": 999999, "oss_access_key_id": "LTAI-test", "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true"}})

    async def oss_upload(self, request: Request) -> Response:
        form = await request.form()
        if form.get("OSSAccessKeyId") != "LTAI-test" or form.get("policy") != "cG9saWN5":
            return Response("<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml")
        upload = form["file"]
        self.uploads[str(form["key"])] = await upload.read()  # type: ignore[union-attr]
        return Response(status_code=200)

    async def multimodal(self, request: Request) -> Response:
        self.log.append(("POST", request.url.path))
        if not self.authorized(request.headers):
            return self.error(401, "InvalidApiKey", "Invalid API-key provided.")
        body = await request.json()
        if body.get("model") not in VL_MODELS:
            return self.error(400, "InvalidParameter", f"Model not exist: {body.get('model')}")
        image_ref = question = None
        for message in body["input"]["messages"]:
            if message["role"] != "user":
                continue
            for part in message["content"]:
                image_ref = part.get("image", image_ref)
                question = part.get("text", question)
        if image_ref is None:
            return self.error(400, "InvalidParameter", "no image in the user message")
        if image_ref.startswith("oss://"):
            if request.headers.get("x-dashscope-ossresourceresolve") != "enable":
                return self.error(400, "InvalidParameter", "oss:// URLs need X-DashScope-OssResourceResolve: enable")
            data = self.uploads.get(image_ref[len("oss://"):])
        else:
            name = image_ref.rsplit("/", 1)[-1]
            data = self.files.get(name, (None, ""))[0]
        if data is None:
            return self.error(400, "InvalidParameter", f"Download the media resource timed out: {image_ref}")
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
            count, colour = max(rgb.getcolors(rgb.width * rgb.height) or [(0, (0, 0, 0))])
            answer = (f"The image is {rgb.width}x{rgb.height} pixels; its main colour is RGB{colour}. "
                      f"Question: {question}")
        return JSONResponse({"request_id": uuid.uuid4().hex, "output": {"choices": [{
            "finish_reason": "stop", "message": {"role": "assistant", "content": [{"text": answer}]}}]},
            "usage": {"input_tokens": 20, "output_tokens": len(answer.split()), "image_tokens": 4}})

    # --- websocket inference: sambert (audio out) and paraformer (audio in) ------------------
    async def inference_ws(self, ws: WebSocket) -> None:
        if not self.authorized(ws.headers):
            await ws.close(code=1008)  # before accept: the handshake is refused with HTTP 403
            return
        await ws.accept()
        start = json.loads(await ws.receive_text())
        self.ws_log.append(start)
        header, payload = start["header"], start["payload"]
        task_id = header["task_id"]

        async def event(name: str, body: dict[str, Any] | None = None, **extra: Any) -> None:
            await ws.send_text(json.dumps({"header": {"task_id": task_id, "event": name, "attributes": {}, **extra},
                                           "payload": body or {}}))

        model = payload.get("model", "")
        if header.get("action") != "run-task":
            await event("task-failed", error_code="InvalidParameter", error_message="expected run-task first")
            await ws.close()
            return
        if payload.get("function") == "SpeechSynthesizer" and model.startswith(TTS_PREFIX):
            await event("task-started")
            await self._tts(payload, event, ws)
        elif payload.get("function") == "recognition" and model in ASR_MODELS:
            await event("task-started")
            await self._asr(payload, event, ws)
        else:
            await event("task-failed", error_code="ModelNotFound", error_message=f"Model not found: {model}")
        await ws.close()

    async def _tts(self, payload: dict[str, Any], event: Any, ws: WebSocket) -> None:
        text = payload["input"]["text"]
        params = payload.get("parameters", {})
        rate = int(params.get("sample_rate", 16000))
        if params.get("format", "wav") != "wav":
            await event("task-failed", error_code="InvalidParameter", error_message="this fake only speaks wav")
            return
        seconds = 0.1 * len(text)
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / rate)))
                          for i in range(int(seconds * rate)))
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(frames)
        data = buf.getvalue()
        for i in range(0, len(data), 8192):
            await ws.send_bytes(data[i:i + 8192])
        sentence = {"begin_time": 0, "end_time": int(seconds * 1000), "words": []}
        await event("result-generated", {"output": {"sentence": sentence}})
        await event("task-finished", {"output": {"sentence": sentence}, "usage": {"characters": len(text)}})

    async def _asr(self, payload: dict[str, Any], event: Any, ws: WebSocket) -> None:
        params = payload.get("parameters", {})
        audio = bytearray()
        while True:
            try:
                message = await ws.receive()
            except WebSocketDisconnect:
                return
            if message.get("bytes") is not None:
                audio.extend(message["bytes"])
            elif message.get("text") is not None:
                action = json.loads(message["text"])["header"].get("action")
                if action == "finish-task":
                    break
            else:
                return
        self.received_audio = bytes(audio)
        if params.get("format") == "wav":
            with wave.open(io.BytesIO(bytes(audio)), "rb") as w:
                duration_ms = int(1000 * w.getnframes() / w.getframerate())
        else:
            duration_ms = int(1000 * len(audio) / 2 / int(params.get("sample_rate", 16000)))
        sentence = {"begin_time": 0, "end_time": duration_ms, "text": self.transcript, "sentence_end": True,
                    "words": []}
        await event("result-generated", {"output": {"sentence": sentence}, "usage": {"duration": duration_ms // 1000}})
        await event("task-finished", {"output": {}})
