"""Build and start the OpenAI-compatible Serve app from a config file (or the embedded default).

A serve config names the models and how each is pooled:

    models:
      qwen-0.5b:
        model: {type: llama_cpp}            # a model config entry, as in the model config file
        pool: {num_replicas: 2, num_cpus: 1, max_ongoing_requests: 2}
    default_model: qwen-0.5b
    api_keys: []                            # or RAYGENT_API_KEYS=key1,key2

`raygent serve --config FILE` runs it on an embedded local Ray (or RAY_ADDRESS); the same file
works with Ray's own tooling through `app_builder` (see cluster/serve_openai.yaml).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from raygent.llm_pool.pool import PoolConfig, model_app

APP_NAME = "raygent"


class ModelEntry(BaseModel):
    """One served model: its config entry (backend type and arguments) and its pool settings."""

    model: dict[str, Any] = Field(default_factory=lambda: {"type": "llama_cpp"})
    pool: PoolConfig = Field(default_factory=PoolConfig)


class ServeConfig(BaseModel):
    models: dict[str, ModelEntry]
    default_model: str | None = None
    api_keys: list[str] = Field(default_factory=list)
    max_body_bytes: int = 4 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("models")
    @classmethod
    def _not_empty(cls, models: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        if not models:
            raise ValueError("a serve config needs at least one model under `models`")
        return models


def default_config() -> ServeConfig:
    """The embedded Qwen2.5-Coder-0.5B on llama.cpp, one replica using one CPU."""
    from raygent.llm_pool.embedded import DEFAULT_MODEL

    return ServeConfig(models={DEFAULT_MODEL: ModelEntry(model={"type": "llama_cpp", "model": DEFAULT_MODEL})})


def load_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read a serve config from JSON or YAML; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read serve config {path}: {exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"serve config {path} must be a mapping with a `models` section")
    try:
        return ServeConfig(**data)
    except Exception as exc:
        raise ValueError(f"invalid serve config {path}: {exc}") from exc


def build_app(config: ServeConfig | None = None) -> Any:
    """The Serve Application: one deployment per model plus the OpenAI ingress in front."""
    from raygent.serve.openai_api import OpenAIIngress

    config = config or default_config()
    if config.default_model and config.default_model not in config.models:
        raise ValueError(f"default_model {config.default_model!r} is not one of the models {sorted(config.models)}")
    models = {name: model_app(name, {**entry.model, "name": name}, pool=entry.pool) for name, entry in config.models.items()}
    return OpenAIIngress.bind(models, config.default_model, config.api_keys, config.max_body_bytes)


def app_builder(args: dict[str, Any]) -> Any:
    """Entry point for `serve run` / `serve deploy`: args `config` (a file path) or an inline config."""
    args = dict(args or {})
    if "config" in args:
        return build_app(load_config(args["config"]))
    return build_app(ServeConfig(**args) if args else None)


def start(config: ServeConfig | None = None, *, host: str | None = None, port: int | None = None) -> str:
    """Start the app on the connected Ray (embedded local by default); returns the base URL."""
    from ray import serve

    from raygent import runtime

    config = config or default_config()
    host = host or config.host
    port = config.port if port is None else port
    runtime.init()
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/v1"
