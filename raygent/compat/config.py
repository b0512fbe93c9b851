"""Seed-style configuration: model and tool config files, `.env` files and API keys.

ModelScope-Agent scripts start with `Config.from_file('config/cfg_model_template.json')` (a dict of
model name -> {"type", "model"/"model_id"/"path", "generate_cfg", ...}) and the same for tools
(tool name -> {"use", "url"?, "is_remote_tool"?, ...}). `Config` reads those files unchanged, so old
configs keep working, and adds attribute access the way the seed's (modelscope) Config did.
Reading files and `.env` is raygent.llm_pool.config's (the model config reader); this module adapts it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from raygent.llm_pool.config import (  # noqa: F401  (re-exported: ConfigError, load_env, MODEL_CONFIG_VARS)
    MODEL_CONFIG_VARS,
    ConfigError,
    default_model_config_file,
    load_env,
    read_config_file,
)

#: environment variables the seed read its secrets from; raygent reads them but never requires them
API_KEY_VARS = ("DASHSCOPE_API_KEY", "OPENAI_API_KEY", "MODELSCOPE_API_TOKEN")
#: environment variables naming the tool config file (the model's: MODEL_CONFIG_VARS)
TOOL_CONFIG_VARS = ("TOOL_CONFIG_FILE",)


class Config(dict):
    """A dict loaded from JSON or YAML; nested dicts are Configs too, so `cfg.qwen.generate_cfg` works."""

    def __init__(self, data: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__()
        for key, value in {**(data or {}), **kwargs}.items():
            self[key] = Config(value) if isinstance(value, dict) and not isinstance(value, Config) else value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r} (keys: {sorted(self)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Config:
        """Read a `.json`, `.yaml` or `.yml` file (YAML needs PyYAML)."""
        return cls(read_config_file(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return cls(data)

    def to_dict(self) -> dict[str, Any]:
        """A plain, deep copy (what gets shipped to Ray actors or dumped to JSON)."""
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}


def as_config(cfg: Config | dict[str, Any] | str | os.PathLike | None) -> Config:
    """Accept a Config, a plain dict, or a path to a config file."""
    if cfg is None:
        return Config()
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, dict):
        return Config(cfg)
    return Config.from_file(cfg)


def api_keys() -> dict[str, str]:
    """The seed's API keys that are set (DASHSCOPE_API_KEY, OPENAI_API_KEY, MODELSCOPE_API_TOKEN)."""
    return {name: os.environ[name] for name in API_KEY_VARS if os.environ.get(name)}


def get_api_key(name: str) -> str | None:
    """One key from the environment, or None: no raygent code path requires a key."""
    return os.environ.get(name) or None


def template_path(kind: str) -> Path:
    """The bundled template `cfg_model_template.json` (kind='model') or `cfg_tool_template.json` ('tool')."""
    if kind not in ("model", "tool"):
        raise ValueError("kind must be 'model' or 'tool'")
    return Path(str(resources.files("raygent.compat") / "templates" / f"cfg_{kind}_template.json"))


def _from_env_or_template(kind: str, env_vars: tuple[str, ...]) -> Config:
    for var in env_vars:
        if os.environ.get(var):
            return Config.from_file(os.environ[var])
    return Config.from_file(template_path(kind))


def default_model_config() -> Config:
    """MODEL_CONFIG_FILE / LLM_CONFIG_FILE if set (the seed's .env names), else raygent's template."""
    return Config.from_file(default_model_config_file())


def default_tool_config() -> Config:
    """TOOL_CONFIG_FILE if set, else raygent's template (built-in tools on, the seed's others off)."""
    return _from_env_or_template("tool", TOOL_CONFIG_VARS)
