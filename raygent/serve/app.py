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

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raygent.llm_pool.pool import AutoscalingSpec, PoolConfig, model_app
from raygent.toolhub.builtin import DEFAULT_TOOL_NAMES

APP_NAME = "raygent"


class ModelEntry(BaseModel):
    """One served model: its config entry (backend type and arguments) and its pool settings."""

    model: dict[str, Any] = Field(default_factory=lambda: {"type": "llama_cpp"})
    pool: PoolConfig = Field(default_factory=PoolConfig)


class AgentDeploymentSpec(BaseModel):
    """How one agent is deployed: its replicas (or autoscaling) and their resources. An agent's
    replicas hold no model: they call the model pool through handles, so they are light."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int = Field(default=1, ge=1)
    autoscaling: AutoscalingSpec | None = None
    num_cpus: float = Field(default=0.25, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    max_ongoing_requests: int = Field(default=16, ge=1)
    #: runs waiting for a replica beyond this are refused at once: the caller gets 503 with Retry-After
    #: instead of waiting without bound (-1: unbounded)
    max_queued_requests: int = Field(default=64, ge=-1)


class AgentEntry(BaseModel):
    """One served agent: a model from `models`, a system prompt, tools, memory, its deployment.

    `tools` names built-in tools (`raygent tools list`); "*" means every built-in that can run on
    the replica's machine. Sessions (multi-turn through `session_id`) live in the shared state
    store (`state`), so any replica of the agent continues any session.
    """

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    model: str | None = None
    system: str | None = None
    tools: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOL_NAMES))
    max_steps: int = Field(default=6, ge=1, le=50)
    memory: bool = True
    #: a knowledge base (a name under $RAYGENT_HOME/knowledge, or a folder): adds `knowledge_search`
    knowledge: str | None = None
    #: example requests shown to users (the web app's conversation starters)
    starters: list[str] = Field(default_factory=list)
    deployment: AgentDeploymentSpec = Field(default_factory=AgentDeploymentSpec)


class StateConfig(BaseModel):
    """Where sessions, API keys and run records live. None: SQLite files under RAYGENT_HOME (one
    machine). `redis://host:port/db`: the Redis server the message hub uses on a cluster, so
    replicas on different nodes see the same state and a restarted store loses nothing."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None


class SecurityConfig(BaseModel):
    """API keys and limits. `require_keys`: "auto" asks for a key whenever any key exists, and
    always when the server binds a non-loopback address; "always"; "never" (local experiments)."""

    model_config = ConfigDict(extra="forbid")

    require_keys: Literal["auto", "always", "never"] = "auto"
    requests_per_minute: int = Field(default=600, ge=1)
    concurrent_runs: int = Field(default=8, ge=1)
    cors_origins: list[str] = Field(default_factory=list)


class ServeConfig(BaseModel):
    models: dict[str, ModelEntry]
    agents: dict[str, AgentEntry] = Field(default_factory=dict)
    default_model: str | None = None
    default_agent: str | None = None
    #: static keys from the config or RAYGENT_API_KEYS, besides those made with `raygent keys create`
    api_keys: list[str] = Field(default_factory=list)
    state: StateConfig = Field(default_factory=StateConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    max_body_bytes: int = 4 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    #: what receives HTTP: Ray Serve's proxy actor, or Serve's HAProxy ingress (the ingress replicas
    #: serve HTTP themselves behind an HAProxy; ~4 ms less per request, needs `raygent[haproxy]`).
    #: Read when raygent starts the local Ray; a cluster chooses it in its `ray start` environment.
    ingress: Literal["proxy", "haproxy"] | None = None

    @field_validator("models")
    @classmethod
    def _not_empty(cls, models: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        if not models:
            raise ValueError("a serve config needs at least one model under `models`")
        return models

    @model_validator(mode="after")
    def _names_resolve(self) -> ServeConfig:
        if self.default_model and self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not one of the models {sorted(self.models)}")
        clash = sorted(set(self.agents) & set(self.models))
        if clash:
            raise ValueError(f"{clash} name both a model and an agent; `model` in a request must name one thing")
        for name, agent in self.agents.items():
            if agent.model is not None and agent.model not in self.models:
                raise ValueError(f"agent {name!r} uses model {agent.model!r}, which is not one of the models "
                                 f"{sorted(self.models)}")
        if self.default_agent and self.default_agent not in self.agents:
            raise ValueError(f"default_agent {self.default_agent!r} is not one of the agents {sorted(self.agents)}")
        return self

    def agent_model(self, agent: str) -> str:
        """The model an agent runs on: its own, else the default model, else the first one."""
        return self.agents[agent].model or self.default_model or next(iter(self.models))


DEFAULT_AGENT = "assistant"


def default_config() -> ServeConfig:
    """The embedded Qwen2.5-Coder-0.5B on llama.cpp (one replica using one CPU) and a default agent
    on it with the offline built-in tools, so the two-command experience includes an agent."""
    from raygent.llm_pool.embedded import DEFAULT_MODEL

    return ServeConfig(models={DEFAULT_MODEL: ModelEntry(model={"type": "llama_cpp", "model": DEFAULT_MODEL})},
                       agents={DEFAULT_AGENT: AgentEntry(description="A helpful assistant with raygent's offline "
                                                                     "built-in tools (address parsing, a calculator, "
                                                                     "the current date and time).")},
                       default_agent=DEFAULT_AGENT)


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


def agent_app(name: str, entry: AgentEntry, model_handle: Any, model_name: str, state_url: str | None) -> Any:
    """The Serve Application node for one agent: its own deployment, bound to its model's handle."""
    from ray import serve

    from raygent.ray_env import replica_actor_options
    from raygent.serve.agent_server import AgentServer

    spec = entry.deployment
    actor: dict[str, Any] = {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus}
    if spec.resources:
        actor["resources"] = dict(spec.resources)
    options: dict[str, Any] = {"name": f"agent-{name}", "ray_actor_options": replica_actor_options(actor),
                               "max_ongoing_requests": spec.max_ongoing_requests,
                               "max_queued_requests": spec.max_queued_requests}
    if spec.autoscaling is not None:
        options["autoscaling_config"] = spec.autoscaling.to_serve()
    else:
        options["num_replicas"] = spec.num_replicas
    deployment = serve.deployment(AgentServer).options(**options)
    return deployment.bind(name, entry.model_dump(), model_handle, model_name, state_url)


def check_tools(config: ServeConfig) -> None:
    """Every agent's tools exist (a typo fails at `raygent serve`, not at the first request)."""
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    for name, agent in config.agents.items():
        unknown = [t for t in agent.tools if t != "*" and t not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(f"agent {name!r} names unknown tools {unknown}; built-in tools: {sorted(BUILTIN_TOOLS)} "
                             f"(or '*' for every one that can run)")


def build_app(config: ServeConfig | None = None) -> Any:
    """The Serve Application: one deployment per model, one per agent, and the ingress in front."""
    from raygent.serve.ingress import RaygentIngress

    config = config or default_config()
    check_tools(config)
    models = {name: model_app(name, {**entry.model, "name": name}, pool=entry.pool)
              for name, entry in config.models.items()}
    agents = {name: agent_app(name, entry, models[config.agent_model(name)], config.agent_model(name),
                              config.state.url)
              for name, entry in config.agents.items()}
    from raygent.ray_env import replica_actor_options

    ingress = RaygentIngress.options(ray_actor_options=replica_actor_options({"num_cpus": 0}))
    return ingress.bind(models, agents, config.model_dump(mode="json"))


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

    config = (config or default_config()).model_copy()
    host = host or config.host
    port = config.port if port is None else port
    config.host, config.port = host, port  # the ingress asks for keys by default on a non-loopback bind
    runtime.init(ingress=config.ingress)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/v1"
