"""The builder's form and the serve config: one format, the one `raygent serve --config` reads.

An `AgentForm` is what the page edits (name, instructions, model, tools, knowledge base, starters).
It lives inside a `ServeConfig` (raygent.serve.app) as one entry under `agents`; the models the
form can pick are that config's `models`. Saving writes the whole ServeConfig as YAML, loading
reads one with `raygent.serve.app.load_config`, so a file saved here is served as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
import yaml
from pydantic import BaseModel, Field, field_validator

from raygent.serve.app import AgentEntry, ServeConfig, default_config, load_config

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AgentForm(BaseModel):
    """The builder form's fields (an AgentEntry with its name, in the words of the page)."""

    name: str = "my-agent"
    description: str = ""
    instructions: str = ""
    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    knowledge: str | None = None
    starters: list[str] = Field(default_factory=list)
    max_steps: int = Field(default=6, ge=1, le=50)
    memory: bool = True

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        name = name.strip()
        if not _NAME.match(name):
            raise ValueError(f"agent name {name!r}: use letters, digits, '-', '_' or '.' (at most 64, no spaces)")
        return name

    @field_validator("starters")
    @classmethod
    def _clean_starters(cls, starters: list[str]) -> list[str]:
        return [s.strip() for s in starters if s and s.strip()]

    def entry(self, base: AgentEntry | None = None) -> AgentEntry:
        """The serve config's entry for this agent (keeping `base`'s deployment settings)."""
        fields = {"description": self.description, "model": self.model, "system": self.instructions or None,
                  "tools": list(self.tools), "max_steps": self.max_steps, "memory": self.memory,
                  "knowledge": self.knowledge or None, "starters": list(self.starters)}
        if base is not None:
            return base.model_copy(update=fields)
        return AgentEntry(**fields)

    @classmethod
    def from_entry(cls, name: str, entry: AgentEntry) -> AgentForm:
        return cls(name=name, description=entry.description, instructions=entry.system or "", model=entry.model,
                   tools=list(entry.tools), knowledge=entry.knowledge, starters=list(entry.starters),
                   max_steps=entry.max_steps, memory=entry.memory)


def base_config() -> ServeConfig:
    """The models the builder offers when no config is loaded: raygent serve's default (the embedded model)."""
    config = default_config()
    return config.model_copy(update={"agents": {}, "default_agent": None})


def with_agent(config: ServeConfig, form: AgentForm, *, default: bool = True) -> ServeConfig:
    """`config` with the form's agent added or replaced (validated as `raygent serve` would)."""
    if form.model is not None and form.model not in config.models:
        raise ValueError(f"model {form.model!r} is not one of the config's models {sorted(config.models)}")
    agents = dict(config.agents)
    agents[form.name] = form.entry(agents.get(form.name))
    data = config.model_dump()
    data["agents"] = {name: entry.model_dump() for name, entry in agents.items()}
    if default or not data.get("default_agent"):
        data["default_agent"] = form.name
    return ServeConfig(**data)


def form_from_config(config: ServeConfig, name: str | None = None) -> AgentForm:
    """The form for agent `name` (default: the config's default agent, else its first one)."""
    name = name or config.default_agent or next(iter(config.agents), None)
    if name is None:
        return AgentForm(model=config.default_model or next(iter(config.models)))
    if name not in config.agents:
        raise ValueError(f"no agent {name!r} in the config; agents: {sorted(config.agents)}")
    return AgentForm.from_entry(name, config.agents[name])


def to_yaml(config: ServeConfig) -> str:
    """The config as YAML for `raygent serve --config` (defaults left out, so the file stays short)."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("models", {})
    for name in config.models:  # a model entry equal to the default would vanish: keep its name
        data["models"].setdefault(name, {})
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def from_yaml(text: str) -> ServeConfig:
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("a serve config must be a mapping with a `models` section")
    return ServeConfig(**data)


def save(config: ServeConfig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config), encoding="utf-8")
    return path


def load(path: str | os.PathLike[str]) -> ServeConfig:
    """Read a config exactly as `raygent serve --config` does."""
    return load_config(path)


def describe_models(config: ServeConfig) -> list[tuple[str, str]]:
    """(label, name) pairs for the model dropdown."""
    out = []
    for name, entry in config.models.items():
        kind = entry.model.get("type", "llama_cpp")
        out.append((f"{name} ({kind})", name))
    return out


__all__ = ["AgentForm", "base_config", "with_agent", "form_from_config", "to_yaml", "from_yaml", "save", "load",
           "describe_models"]
