"""vLLM on GPUs through Ray Serve LLM, configured from raygent's model config.

raygent does not wrap the vLLM engine: a `type: vllm` entry becomes a `ray.serve.llm.LLMConfig`
(model loading, engine kwargs with tensor/pipeline parallelism, Serve deployment options with
autoscaling, accelerator type, placement-group strategy), deployed with Ray Serve LLM's
`build_openai_app` on the GPU cluster, and reached by raygent through the OpenAI-compatible
backend at the entry's `url`. Native tool calls need vLLM's tool parser; it is switched on to
match the entry's format (hermes for Qwen2.5) unless engine_kwargs say otherwise.

Where vLLM is not installed (CPU machines), `ray.serve.llm` does not import, but its LLMConfig
model does (Ray 2.60: ray.llm._internal.serve.core.configs.llm_config), so configs are built and
validated here anyway; building the app itself raises VLLMUnavailableError.

    python -m raygent.llm_pool.vllm_serve models.yaml vllm-qwen > serve_vllm.yaml   # then: serve run serve_vllm.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from raygent.llm_pool.config import ModelConfig, ModelConfigError, as_model_config, load_model_configs
from raygent.llm_pool.errors import BackendConfigError

INSTALL_HINT = "pip install 'ray[llm]' vllm"
#: tool-call format -> vLLM --tool-call-parser, for native tools on the OpenAI endpoint
TOOL_PARSERS = {"hermes": "hermes", "native": "hermes"}


class VLLMUnavailableError(BackendConfigError):
    """vLLM / Ray Serve LLM is not installed where the app is being built."""


def llm_config_class() -> type:
    """Ray Serve LLM's LLMConfig: the public class, or the same model from its internal module when
    `ray.serve.llm` cannot import (it needs vLLM); None-safe error when Ray has no LLM support."""
    try:
        from ray.serve.llm import LLMConfig

        return LLMConfig
    except ImportError:
        pass
    try:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

        return LLMConfig
    except ImportError as exc:
        raise VLLMUnavailableError(f"this Ray has no Serve LLM support to validate vLLM configs: {INSTALL_HINT} "
                                   f"(Ray >= 2.44)") from exc


def llm_config_dict(cfg: ModelConfig | Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """The LLMConfig fields (plain data, as in a Serve config YAML) for a `type: vllm` entry."""
    c = as_model_config(cfg, name)
    if c.type != "vllm":
        raise ModelConfigError(f"model config {c.name!r} has type {c.type!r}; Ray Serve LLM configs are built from "
                               f"type 'vllm' entries")
    source = c.path or c.extras.get("model_source") or c.model_id or c.model
    if not source:
        raise ModelConfigError(f"model config {c.name!r} (type vllm) needs `model_id` (a Hugging Face id) or `path` "
                               f"(a folder or s3:// / gs:// URI on the cluster)")
    engine: dict[str, Any] = {"tensor_parallel_size": c.tensor_parallel_size}
    if c.pipeline_parallel_size > 1:
        engine["pipeline_parallel_size"] = c.pipeline_parallel_size
    for key in ("max_model_len", "gpu_memory_utilization", "dtype", "quantization", "max_num_seqs",
                "enable_prefix_caching", "trust_remote_code"):
        if key in c.extras:
            engine[key] = c.extras[key]
    if c.dtype and "dtype" not in engine:
        engine["dtype"] = c.dtype
    parser = TOOL_PARSERS.get(c.format or "native")
    if parser:
        engine.update(enable_auto_tool_choice=True, tool_call_parser=parser)
    engine.update(c.engine_kwargs)
    out: dict[str, Any] = {
        "model_loading_config": {"model_id": c.served_name(), "model_source": source},
        "engine_kwargs": engine,
    }
    if c.deployment:
        out["deployment_config"] = dict(c.deployment)
    if c.accelerator_type:
        out["accelerator_type"] = c.accelerator_type
    placement = c.extras.get("placement_group_config")
    if placement is None and c.placement_strategy:
        placement = {"bundle_per_worker": {"GPU": 1}, "strategy": c.placement_strategy}
    if placement is not None:
        out["placement_group_config"] = placement
    if c.extras.get("runtime_env"):
        out["runtime_env"] = c.extras["runtime_env"]
    return out


def _check_parallelism(c: ModelConfig, data: dict[str, Any]) -> None:
    """GPUs per replica = tensor x pipeline parallel size; explicit bundles must match that count."""
    engine = data["engine_kwargs"]
    workers = int(engine.get("tensor_parallel_size", 1)) * int(engine.get("pipeline_parallel_size", 1))
    bundles = (data.get("placement_group_config") or {}).get("bundles")
    if bundles is not None and len(bundles) != workers:
        raise ModelConfigError(
            f"model config {c.name!r}: placement_group_config has {len(bundles)} bundles, but tensor_parallel_size x "
            f"pipeline_parallel_size = {workers} engine workers need one bundle each")
    auto = (data.get("deployment_config") or {}).get("autoscaling_config") or {}
    if auto and auto.get("min_replicas", 1) > auto.get("max_replicas", auto.get("min_replicas", 1)):
        raise ModelConfigError(f"model config {c.name!r}: autoscaling min_replicas > max_replicas")


def vllm_llm_config(cfg: ModelConfig | Mapping[str, Any], name: str | None = None) -> Any:
    """A validated Ray Serve LLM `LLMConfig` for a `type: vllm` entry (vLLM itself not needed)."""
    from pydantic import ValidationError

    c = as_model_config(cfg, name)
    data = llm_config_dict(c)
    _check_parallelism(c, data)
    cls = llm_config_class()
    try:
        return cls(**data)
    except (ValidationError, ValueError) as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()) \
            if isinstance(exc, ValidationError) else str(exc)
        raise ModelConfigError(f"model config {c.name!r} does not make a valid Ray Serve LLMConfig: {detail}") from None


def vllm_serve_config(cfgs: Sequence[ModelConfig | Mapping[str, Any]], *, app_name: str = "raygent-vllm",
                      route_prefix: str = "/", host: str = "0.0.0.0", port: int = 8000) -> dict[str, Any]:
    """A Serve config (for `serve run` / `serve deploy`) running every given vLLM entry behind one
    OpenAI-compatible app; each config is validated first."""
    if not cfgs:
        raise ModelConfigError("no vllm model configs given")
    llm_configs = []
    for cfg in cfgs:
        c = as_model_config(cfg)
        vllm_llm_config(c)  # validation
        llm_configs.append(llm_config_dict(c))
    return {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port},
            "applications": [{"name": app_name, "route_prefix": route_prefix,
                              "import_path": "ray.serve.llm:build_openai_app",
                              "args": {"llm_configs": llm_configs}}]}


def build_vllm_app(cfgs: Sequence[ModelConfig | Mapping[str, Any]]) -> Any:
    """The Ray Serve application (Ray Serve LLM's OpenAI app) for the entries; needs vLLM installed."""
    llm_cfgs = [vllm_llm_config(c) for c in cfgs]
    try:
        from ray.serve.llm import build_openai_app
    except ImportError as exc:
        raise VLLMUnavailableError(
            f"building the vLLM app needs vLLM and Ray Serve LLM on this machine ({exc}): {INSTALL_HINT} on the GPU "
            f"cluster, or write a Serve config with vllm_serve_config() and `serve run` it there") from exc
    return build_openai_app({"llm_configs": llm_cfgs})


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m raygent.llm_pool.vllm_serve MODEL_CONFIG [NAME ...]`: print the Serve config YAML."""
    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    configs = load_model_configs(args[0])
    names = args[1:] or [n for n, c in configs.items() if c.type == "vllm"]
    missing = [n for n in names if n not in configs]
    if missing:
        print(f"not in {args[0]}: {missing}; vllm entries: {[n for n, c in configs.items() if c.type == 'vllm']}",
              file=sys.stderr)
        return 2
    try:
        serve_cfg = vllm_serve_config([configs[n] for n in names])
    except BackendConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(serve_cfg, sort_keys=False, allow_unicode=True), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
