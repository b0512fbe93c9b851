"""Offline checks of the cluster configuration files in cluster/ (no cloud account, no Kubernetes).

These are configuration checks, not deployments. What each test really checks is in its
docstring; in short:

- `ray up` files (aws, gcp, onprem): Ray's own `prepare_config` (merges the provider's
  defaults.yaml as `ray up` does; for the local provider, Ray's on-prem preparation of head_ip /
  worker_ips) and `validate_config` (the JSON schema ray-schema.json plus Ray's consistency rules).
  Not checked: the provider's bootstrap (IAM, key pairs, subnets, images, quotas), which needs the
  cloud's API.
- Serve configs (serve_openai.yaml, serve_agents.yaml, the RayService's serveConfigV2): Serve's
  `ServeDeploySchema`; raygent's application args through `ServeConfig`, a walk that refuses keys
  pydantic would silently drop, raygent's model-entry parsing, and the Serve controller's own build
  path (import the builder, `call_user_app_builder_with_args_if_necessary`, `build_app`); the vLLM
  application through Ray Serve LLM's `LLMConfig` (vLLM itself is not installed here, so its
  engine and `build_openai_app` cannot run).
- KubeRay manifests: kinds, API versions, the fields of KubeRay's ray.io/v1 Go types (v1.1-v1.4),
  and each group's resources as Ray's autoscaler derives them from the RayCluster spec (Ray's own
  KubeRay code). The CRDs' OpenAPI schema is not available offline.
- Across files: every resource the serve configs request is provided by some node group of every
  cluster, every group installs what its work needs, Redis is wired the same way everywhere.
- onprem.yaml's shell commands are executed with stand-in `ray`, `nvidia-smi`, `pip`, `sudo`,
  `apt-get`, `redis-server` and `redis-cli` programs that record their arguments, to see the
  resources and packages the real commands would pass (the shell text is what is under test).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import shlex
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlparse

import pytest
import ray
import yaml
from packaging.requirements import Requirement
from pydantic import BaseModel, ValidationError

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
RAY_UP = ("aws.yaml", "gcp.yaml", "onprem.yaml")
CLOUD = ("aws.yaml", "gcp.yaml")
KUBERAY = ("kuberay-rayservice.yaml", "kuberay-raycluster.yaml")
SERVE_FILES = ("serve_openai.yaml", "serve_agents.yaml")
CLUSTERS = RAY_UP + KUBERAY
RAYGENT_BUILDER = "raygent.serve.app:app_builder"
VLLM_BUILDER = "ray.serve.llm:build_openai_app"
#: the custom resources of the node groups (cluster/README.md)
TAGS = {"llm", "tools"}
#: raygent extras every node needs, and what the CPU tool workers need besides
BASE_EXTRAS = {"serve", "redis", "vllm"}
TOOLS_EXTRAS = BASE_EXTRAS | {"llama", "tools"}
REDIS_HOST = "raygent-redis"
GCS_PORT = 6379

# Field names of KubeRay's ray.io/v1 Go types (RayClusterSpec, HeadGroupSpec, WorkerGroupSpec,
# AutoscalerOptions, RayServiceSpec) across operator versions 1.1 to 1.4.
RAYCLUSTER_SPEC_KEYS = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                        "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
                        "gcsFaultToleranceOptions"}
HEAD_GROUP_KEYS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template", "resources",
                   "labels"}
WORKER_GROUP_KEYS = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                     "template", "scaleStrategy", "idleTimeoutSeconds", "suspend", "resources", "labels"}
AUTOSCALER_OPTIONS_KEYS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts",
                           "securityContext", "idleTimeoutSeconds", "upscalingMode", "version"}
RAYSERVICE_SPEC_KEYS = {"serveConfigV2", "rayClusterConfig", "serveService", "upgradeStrategy",
                        "excludeHeadPodFromServeSvc", "serviceUnhealthySecondThreshold",
                        "deploymentUnhealthySecondThreshold", "rayClusterDeletionDelaySeconds"}


# -- loading ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _text(name: str) -> str:
    return (CLUSTER / name).read_text(encoding="utf-8")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load(_text(name))


def load_all(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_text(name)) if d is not None]


def ray_doc(name: str) -> dict[str, Any]:
    (doc,) = [d for d in load_all(name) if d.get("apiVersion", "").startswith("ray.io/")]
    return doc


def cluster_spec(name: str) -> dict[str, Any]:
    doc = ray_doc(name)
    return doc["spec"]["rayClusterConfig"] if doc["kind"] == "RayService" else doc["spec"]


def serve_configs() -> dict[str, dict[str, Any]]:
    """Every Serve config in cluster/: the two files and the RayService's serveConfigV2."""
    configs = {name: load(name) for name in SERVE_FILES}
    configs["kuberay-rayservice.yaml:serveConfigV2"] = yaml.safe_load(
        ray_doc("kuberay-rayservice.yaml")["spec"]["serveConfigV2"])
    return configs


def apps(config: dict[str, Any], import_path: str) -> list[dict[str, Any]]:
    return [a for a in config["applications"] if a["import_path"] == import_path]


@functools.lru_cache(maxsize=None)
def _prepared(name: str) -> str:
    from ray.autoscaler._private.util import prepare_config

    return json.dumps(prepare_config(load(name)))


def prepared(name: str) -> dict[str, Any]:
    """The config as `ray up` has it after Ray's prepare_config (defaults merged, setup commands
    merged into head/worker setup commands, node-type min/max workers filled)."""
    return json.loads(_prepared(name))


# -- raygent's application args -----------------------------------------------------------------
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _walk(annotation: Any, value: Any, where: str) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return unknown_keys(annotation, value, where)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        models = _models_in(annotation)
        return unknown_keys(models[0], value, where) if models and isinstance(value, dict) else []
    if origin is dict and isinstance(value, dict):
        value_type = get_args(annotation)[1]
        return [bad for key, item in value.items() for bad in _walk(value_type, item, f"{where}.{key}")]
    if origin is list and isinstance(value, list):
        item_type = get_args(annotation)[0]
        return [bad for i, item in enumerate(value) for bad in _walk(item_type, item, f"{where}[{i}]")]
    return []


def unknown_keys(model: type[BaseModel], data: Any, where: str = "args") -> list[str]:
    """Keys of `data` that `model` (and the models nested in it) do not declare. ServeConfig,
    ModelEntry and PoolConfig ignore such keys, so a misspelled `resources` or `autoscaling` would
    otherwise vanish without a word."""
    if not isinstance(data, dict):
        return []
    fields = {**{n: f for n, f in model.model_fields.items()},
              **{f.alias: f for f in model.model_fields.values() if f.alias}}
    bad: list[str] = []
    for key, value in data.items():
        if key not in fields:
            bad.append(f"{where}.{key}")
        else:
            bad += _walk(fields[key].annotation, value, f"{where}.{key}")
    return bad


def check_raygent_args(args: dict[str, Any]) -> Any:
    """raygent's own validation of inline app args, strict: ServeConfig (names of models, agents,
    default model/agent resolve), no undeclared keys, every model entry parses as raygent's model
    config and yields a backend (class and arguments; nothing loaded), every agent's tools exist."""
    from raygent.llm_pool.config import as_model_config, chat_model_spec
    from raygent.serve.app import ServeConfig
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    bad = unknown_keys(ServeConfig, args)
    if bad:
        raise ValueError(f"keys raygent's ServeConfig does not know (they would be ignored): {bad}")
    config = ServeConfig(**args)
    for name, entry in config.models.items():
        chat_model_spec(as_model_config(entry.model, name))
    for name, agent in config.agents.items():
        unknown = [t for t in agent.tools if t != "*" and t not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(f"agent {name!r} names unknown tools {unknown}")
    return config


@functools.lru_cache(maxsize=None)
def _built(import_path: str, name: str, args_json: str) -> tuple:
    """The application as the Serve controller builds it (application_state.build_serve_application):
    import the builder, call it with the args through Serve's own helper, build_app, check the
    FastAPI ingress; returns each deployment's (name, resources, placement bundles, strategy)."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    app = call_user_app_builder_with_args_if_necessary(import_attr(import_path), json.loads(args_json))
    built = build_app(app, name=name)
    built.validate_single_fastapi_ingress()
    out = []
    for d in built.deployments:
        rc = d._replica_config
        out.append((d.name, json.dumps(rc.resource_dict), json.dumps(rc.placement_group_bundles),
                    rc.placement_group_strategy))
    return tuple(out)


# -- demands and node groups --------------------------------------------------------------------
@dataclass
class Demand:
    what: str
    bundles: list[dict[str, float]]
    strategy: str = "PACK"


def vllm_demand(llm_config: dict[str, Any]) -> Demand:
    """What one Ray Serve LLM replica reserves, computed as Ray 2.60 does (VLLMEngineConfig.
    placement_bundles and LLMServer.get_deployment_options, which need vLLM to import): one bundle
    per engine worker (tensor x pipeline parallel size), the replica actor's own resources (1 CPU
    by default) added to the first bundle."""
    engine = llm_config.get("engine_kwargs") or {}
    workers = int(engine.get("tensor_parallel_size", 1)) * int(engine.get("pipeline_parallel_size", 1))
    pg = llm_config.get("placement_group_config") or {}
    if pg.get("bundle_per_worker") is not None:
        bundles = [dict(pg["bundle_per_worker"]) for _ in range(workers)]
    elif pg.get("bundles") is not None:
        bundles = [dict(b) for b in pg["bundles"]]
    else:
        bundles = [{"GPU": 1} for _ in range(workers)]
    actor = (llm_config.get("deployment_config") or {}).get("ray_actor_options") or {}
    replica = {"CPU": actor.get("num_cpus", 1), "GPU": actor.get("num_gpus", 0), **(actor.get("resources") or {})}
    bundles[0] = {k: bundles[0].get(k, 0) + replica.get(k, 0) for k in set(bundles[0]) | set(replica)}
    model = llm_config["model_loading_config"]["model_id"]
    return Demand(f"vLLM {model}", bundles, pg.get("strategy", "PACK"))


def demands(config: dict[str, Any]) -> list[Demand]:
    """Every replica's reservation in a Serve config: raygent's deployments as Serve builds them,
    each agent's as its config declares (also where this checkout's app_builder does not build
    agent deployments yet), the vLLM engines as Ray Serve LLM would place them."""
    out: list[Demand] = []
    for app in apps(config, RAYGENT_BUILDER):
        parsed = check_raygent_args(app["args"])
        for name, agent in parsed.agents.items():
            spec = agent.deployment
            out.append(Demand(f"{app['name']}/agent {name}",
                              [{"CPU": spec.num_cpus, "GPU": spec.num_gpus, **spec.resources}]))
        for name, resources, bundles, strategy in _built(app["import_path"], app["name"],
                                                        json.dumps(app["args"], sort_keys=True)):
            pg = json.loads(bundles)
            out.append(Demand(f"{app['name']}/{name}", pg or [json.loads(resources)], strategy or "PACK"))
    for app in apps(config, VLLM_BUILDER):
        out += [vllm_demand(c) for c in app["args"]["llm_configs"]]
    return out


def fits(bundle: dict[str, float], node: dict[str, float]) -> bool:
    return all(amount <= node.get(key, 0) + 1e-9 for key, amount in bundle.items() if amount > 0)


def unplaceable(demand: Demand, nodes: dict[str, dict[str, float]]) -> str | None:
    """Why no node group can hold `demand` (None when one can). STRICT_PACK needs all bundles on
    one node; other strategies need each bundle to fit some group."""
    if demand.strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for b in demand.bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0) + v
        return None if any(fits(total, n) for n in nodes.values()) else f"{total} (STRICT_PACK) fits no node"
    for b in demand.bundles:
        if not any(fits(b, n) for n in nodes.values()):
            return f"bundle {b} fits no node"
    return None


# -- stand-in programs for the on-prem shell commands -------------------------------------------
FAKE = r"""#!/bin/sh
{ printf '%s' "$(basename "$0")"; for a in "$@"; do printf '\037%s' "$a"; done;
  if [ "$(basename "$0")" = sudo ]; then printf '\037<stdin>%s' "$(cat)"; fi; printf '\n'; } >> "$RECORD"
"""
NVIDIA_SMI = r"""#!/bin/sh
[ "${FAKE_GPUS:-0}" -gt 0 ] || exit 9
i=0; while [ "$i" -lt "$FAKE_GPUS" ]; do echo "GPU $i: NVIDIA L4 (UUID: GPU-$i)"; i=$((i+1)); done
"""


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """Run ray up commands in bash with stand-ins for ray, pip, sudo, apt-get, redis-server,
    redis-cli (they record their arguments) and nvidia-smi (lists FAKE_GPUS GPUs, or fails like
    on a machine without them); /etc/hosts is read from an empty file instead, so this machine's
    own hosts file does not matter. Returns the recorded calls, each [program, arg, ...]."""
    root = tmp_path_factory.mktemp("onprem")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for prog in ("ray", "pip", "sudo", "apt-get", "redis-server", "redis-cli"):
        (bin_dir / prog).write_text(FAKE + ("exit 1\n" if prog == "redis-cli" else ""))
    (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI)
    for p in bin_dir.iterdir():
        p.chmod(0o755)

    def run(commands: list[str], gpus: int = 0) -> list[list[str]]:
        record = root / "record"
        record.write_text("")
        home = root / "home"
        home.mkdir(exist_ok=True)
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "RECORD": str(record),
               "FAKE_GPUS": str(gpus), "RAY_HEAD_IP": "192.168.10.10"}
        hosts = root / "hosts"
        hosts.write_text("")
        for cmd in commands:
            subprocess.run(["bash", "-c", cmd.replace("/etc/hosts", str(hosts))], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False)
        return [line.split("\x1f") for line in record.read_text().splitlines() if line]

    return run


def _ray_start_resources(calls: list[list[str]]) -> dict[str, float]:
    starts = [c for c in calls if c[:2] == ["ray", "start"]]
    assert len(starts) == 1, calls
    flags = [a for a in starts[0] if a.startswith("--resources=")]
    return json.loads(flags[0].split("=", 1)[1]) if flags else {}


def _onprem_nodes(shell) -> dict[str, dict[str, float]]:
    """On-prem node kinds as their start commands make them: the head, a worker without GPUs and
    one with 2 (GPUs as Ray detects them, CPUs unknown here so unbounded)."""
    cfg = prepared("onprem.yaml")
    nodes = {"head": {"CPU": math.inf, **_ray_start_resources(shell(cfg["head_start_ray_commands"]))},
             "cpu worker": {"CPU": math.inf, **_ray_start_resources(shell(cfg["worker_start_ray_commands"]))}}
    gpu = _ray_start_resources(shell(cfg["worker_start_ray_commands"], gpus=2))
    nodes["gpu worker"] = {"CPU": math.inf, "GPU": 2, **gpu}
    return nodes


def _kuberay_node_types(name: str) -> dict[str, dict[str, Any]]:
    """The autoscaler's node types, derived from the RayCluster spec by Ray's own KubeRay code
    (which also runs validate_config on the result)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    doc = ray_doc(name)
    ray_cr = {"metadata": {"name": doc["metadata"]["name"], "namespace": "default"},
              "spec": copy.deepcopy(cluster_spec(name))}
    return _derive_autoscaling_config_from_ray_cr(ray_cr)["available_node_types"]


def cluster_nodes(name: str, shell) -> dict[str, dict[str, float]]:
    if name in CLOUD:
        return {t: dict(v["resources"]) for t, v in prepared(name)["available_node_types"].items()}
    if name == "onprem.yaml":
        return _onprem_nodes(shell)
    return {t: dict(v["resources"]) for t, v in _kuberay_node_types(name).items()}


def pip_installs(commands: list[str] | list[list[str]]) -> dict[str, Requirement]:
    """Requirements named in `pip install` commands (shell strings or recorded argument lists)."""
    reqs: dict[str, Requirement] = {}
    for cmd in commands:
        for seg in re.split(r"&&|\|\||;", cmd) if isinstance(cmd, str) else [cmd]:
            tokens = shlex.split(seg) if isinstance(seg, str) else seg
            if tokens[:2] != ["pip", "install"]:
                continue
            skip = False
            for tok in tokens[2:]:
                if skip:
                    skip = False
                elif tok in ("--find-links", "-f", "--index-url", "-i", "--extra-index-url"):
                    skip = True
                elif not tok.startswith("-"):
                    req = Requirement(tok)
                    reqs[req.name] = req
    return reqs


def check_node_packages(where: str, reqs: dict[str, Requirement], tools_node: bool) -> None:
    ray_req, raygent_req = reqs.get("ray"), reqs.get("raygent")
    assert ray_req is not None and raygent_req is not None, f"{where}: installs {sorted(reqs)}"
    assert {"serve", "llm"} <= ray_req.extras and str(ray_req.specifier) == f"=={ray.__version__}", \
        f"{where}: {ray_req} (Ray Serve LLM's ingress and build step may run on any node; Ray pinned to the image's)"
    need = TOOLS_EXTRAS if tools_node else BASE_EXTRAS
    assert need <= raygent_req.extras, f"{where}: {raygent_req} lacks {sorted(need - raygent_req.extras)}"


# -- ray up -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RAY_UP)
def test_ray_up_config_passes_rays_validation(name):
    """Ray's prepare_config (defaults.yaml of the provider merged in as `ray up` does; the local
    provider's head_ip/worker_ips preparation) then validate_config (ray-schema.json, head type among
    the node types, sum of min_workers within max_workers). Ray's provider bootstrap, which talks
    to the cloud, is not run."""
    from ray.autoscaler._private.util import validate_config

    raw = load(name)
    cfg = prepared(name)
    validate_config(cfg)
    assert cfg["cluster_name"] == raw["cluster_name"]
    types_ = cfg["available_node_types"]
    assert cfg["head_node_type"] in types_
    for t, spec in types_.items():
        assert 0 <= spec["min_workers"] <= spec["max_workers"], t
    if name in CLOUD:
        # the config's own node types survived the merge (shallow: ours replace the defaults')
        assert set(types_) == set(raw["available_node_types"])
        assert cfg["max_workers"] >= sum(v["max_workers"] for k, v in types_.items() if k != cfg["head_node_type"])


def test_validate_config_rejects_what_the_files_could_get_wrong():
    """The validation above bites: a misspelled top-level key, a fractional node resource (Ray's
    schema wants integers) and a head type that is not a node type all fail."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad_key = load("aws.yaml")
    bad_key["worker_start_ray_command"] = bad_key.pop("worker_start_ray_commands")
    bad_amount = load("aws.yaml")
    bad_amount["available_node_types"]["cpu-tools"]["resources"]["tools"] = 0.5
    bad_head = load("gcp.yaml")
    bad_head["head_node_type"] = "ray.head.default"
    for cfg, why in ((bad_key, "worker_start_ray_command' was unexpected"), (bad_amount, "is not of type 'integer'"),
                     (bad_head, "must be one of `available_node_types`")):
        with pytest.raises(Exception, match=re.escape(why)):
            validate_config(prepare_config(cfg))


@pytest.mark.parametrize("name", CLOUD)
def test_cloud_node_types_carry_the_tags(name):
    """AWS/GCP: the head takes no work (CPU 0) and has no tag, the GPU types advertise GPUs and
    {"llm": 1}, the CPU worker types {"tools": 1} and no GPU, each with an image for its hardware
    on the Ray version installed here. The tags are in the node types' `resources`, which Ray's
    updater exports to `ray start` as RAY_OVERRIDE_RESOURCES (updater.py); so the start commands
    must not pass --resources / --num-gpus of their own, which the override would contradict."""
    cfg = prepared(name)
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not TAGS & set(head["resources"])
    docker = cfg["docker"]
    assert docker["image"].endswith(f":{ray.__version__}-py311-cpu")
    groups = {"llm": 0, "tools": 0}
    for t, spec in cfg["available_node_types"].items():
        if t == cfg["head_node_type"]:
            continue
        res = spec["resources"]
        image = (spec.get("docker") or {}).get("worker_image") or docker.get("worker_image") or docker["image"]
        if res.get("GPU", 0) > 0:
            assert res.get("llm") == 1 and "tools" not in res, (t, res)
            assert image.endswith(f":{ray.__version__}-py311-gpu"), (t, image)
            groups["llm"] += 1
        else:
            assert res.get("tools") == 1 and "llm" not in res, (t, res)
            assert image.endswith(f":{ray.__version__}-py311-cpu"), (t, image)
            groups["tools"] += 1
        assert res.get("CPU", 0) >= 1, t
    assert groups == {"llm": 1, "tools": 1}
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assert not re.search(r"--(resources|num-gpus|num-cpus)\b", cmd), cmd


def test_onprem_start_commands_tag_each_host(shell):
    """onprem.yaml (local provider: one node type, Ray passes no resources): run the real head and
    worker start commands with stand-ins. The head starts Redis on 6380, then Ray's GCS on 6379
    with {"tools": 1}; a worker without GPUs joins with {"tools": 1}, one whose nvidia-smi lists
    GPUs with {"llm": 1}; workers join the head's address."""
    cfg = prepared("onprem.yaml")
    head = shell(cfg["head_start_ray_commands"])
    assert [c[:2] for c in head if c[0] == "ray"] == [["ray", "stop"], ["ray", "start"]]
    (redis,) = [c for c in head if c[0] == "redis-server"]
    assert redis[redis.index("--port") + 1] == "6380"
    start = [c for c in head if c[:2] == ["ray", "start"]][0]
    assert "--head" in start and f"--port={GCS_PORT}" in start
    assert _ray_start_resources(head) == {"tools": 1}
    for gpus, expected in ((0, {"tools": 1}), (1, {"llm": 1}), (4, {"llm": 1})):
        calls = shell(cfg["worker_start_ray_commands"], gpus=gpus)
        assert _ray_start_resources(calls) == expected, gpus
        start = [c for c in calls if c[:2] == ["ray", "start"]][0]
        assert f"--address=192.168.10.10:{GCS_PORT}" in start


# -- Serve configs ------------------------------------------------------------------------------
@pytest.mark.parametrize("label", list(serve_configs()))
def test_serve_config_passes_serve_schema(label):
    """Serve's ServeDeploySchema (what `serve deploy` and KubeRay send to the dashboard's REST API
    is validated against it: app names and route prefixes unique, import paths well formed). That
    schema accepts unknown keys for forward compatibility, so the keys are also checked against its
    fields here."""
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    config = serve_configs()[label]
    schema = ServeDeploySchema(**config)
    assert not set(config) - set(ServeDeploySchema.model_fields), label
    for app in config["applications"]:
        assert not set(app) - set(ServeApplicationSchema.model_fields), app["name"]
    assert {a.import_path for a in schema.applications} <= {RAYGENT_BUILDER, VLLM_BUILDER}
    assert apps(config, RAYGENT_BUILDER), "no raygent application"


@pytest.mark.parametrize("label", list(serve_configs()))
def test_raygent_app_args_build_as_serve_would(label):
    """raygent's application args: strict ServeConfig (check_raygent_args), then the Serve
    controller's build path on them. The deployments it yields are one per model, one per agent
    (when this checkout's app_builder builds agents) and the ingress."""
    config = serve_configs()[label]
    for app in apps(config, RAYGENT_BUILDER):
        parsed = check_raygent_args(app["args"])
        built = _built(app["import_path"], app["name"], json.dumps(app["args"], sort_keys=True))
        names = {name for name, *_ in built}
        assert set(parsed.models) <= names, names
        assert len(built) >= len(parsed.models) + 1


def test_raygent_args_check_rejects_mistakes():
    """The args check bites: a misspelled pool field (ignored by PoolConfig), an unknown top-level
    key, an agent on a model that is not served, an unknown tool, a vllm model without `url`."""
    from raygent.llm_pool.errors import BackendConfigError

    base = apps(load("serve_agents.yaml"), RAYGENT_BUILDER)[0]["args"]
    check_raygent_args(base)

    def broken(edit):
        args = copy.deepcopy(base)
        edit(args)
        return args

    cases = [
        broken(lambda a: a["models"]["qwen2.5-coder-0.5b-instruct"]["pool"].update(resource={"tools": 0.001})),
        broken(lambda a: a.update(agent=a["agents"])),
        broken(lambda a: a["agents"]["quick"].update(model="qwen-3b")),
        broken(lambda a: a["agents"]["quick"].update(tools=["calculator", "calculater"])),
        broken(lambda a: a["models"]["qwen2.5-7b-instruct"]["model"].pop("url")),
    ]
    for args in cases:
        with pytest.raises((ValueError, ValidationError, BackendConfigError)):
            check_raygent_args(args)


def test_vllm_app_matches_raygents_vllm_model():
    """serve_agents.yaml's vLLM application: each llm_config passes Ray Serve LLM's own LLMConfig
    model (Ray 2.60; its build_openai_app needs vLLM, absent here), equals what raygent derives from
    its `type: vllm` entry (raygent.llm_pool.vllm_serve.llm_config_dict), and that entry's `url`
    points at this application's route on the Serve HTTP port (the proxy on the local node)."""
    from raygent.llm_pool.vllm_serve import llm_config_class, llm_config_dict

    config = load("serve_agents.yaml")
    (vllm_app,) = apps(config, VLLM_BUILDER)
    assert set(vllm_app["args"]) <= {"llm_configs", "ingress_cls_config", "ingress_deployment_config"}
    by_id = {}
    for c in vllm_app["args"]["llm_configs"]:
        llm_config_class()(**c)
        by_id[c["model_loading_config"]["model_id"]] = c
    port = config["http_options"]["port"]
    vllm_models = {name: m["model"] for app in apps(config, RAYGENT_BUILDER)
                   for name, m in app["args"]["models"].items() if m["model"]["type"] == "vllm"}
    assert vllm_models
    for name, entry in vllm_models.items():
        derived = llm_config_dict(entry, name)
        assert by_id[derived["model_loading_config"]["model_id"]] == derived, name
        url = urlparse(entry["url"])
        assert url.hostname in ("127.0.0.1", "localhost") and url.port == port, entry["url"]
        assert url.path.rstrip("/") == vllm_app["route_prefix"].rstrip("/") + "/v1", entry["url"]
    with pytest.raises(ValidationError, match="engine_kwarg"):  # LLMConfig refuses unknown fields
        llm_config_class()(**{**next(iter(by_id.values())), "engine_kwarg": {}})


# -- placement across files ---------------------------------------------------------------------
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_every_requested_resource_is_provided(cluster, shell):
    """For every cluster file and every Serve config: each replica's reservation (raygent's
    deployments as Serve builds them, vLLM's placement bundles as Ray Serve LLM makes them) fits a
    node group the cluster provides: CPUs, GPUs and custom resources; STRICT_PACK bundles together
    on one node. Custom resources asked for are only the group tags, as fractions. Node groups: the
    prepared ray up node types, the on-prem start commands' resources, Ray's derivation of the
    KubeRay groups."""
    nodes = cluster_nodes(cluster, shell)
    assert any(TAGS & set(n) for n in nodes.values()), nodes
    for label, config in serve_configs().items():
        for demand in demands(config):
            for bundle in demand.bundles:
                custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory") and v > 0}
                assert set(custom) <= TAGS and all(v <= 1 for v in custom.values()), (label, demand)
            why = unplaceable(demand, nodes)
            assert why is None, f"{cluster}: {label} {demand.what}: {why}; groups {nodes}"


def test_placement_check_rejects_a_resource_no_node_provides(shell):
    """The placement check bites: an agent asking for a misspelled tag, and a vLLM engine wanting
    2 GPUs with STRICT_PACK where nodes have one, are refused on the AWS cluster."""
    nodes = cluster_nodes("aws.yaml", shell)
    assert unplaceable(Demand("agent", [{"CPU": 0.25, "tool": 0.001}]), nodes)
    two_gpus = vllm_demand({"model_loading_config": {"model_id": "m"},
                            "engine_kwargs": {"tensor_parallel_size": 2},
                            "placement_group_config": {"bundle_per_worker": {"GPU": 1, "llm": 0.001},
                                                       "strategy": "STRICT_PACK"}})
    assert unplaceable(two_gpus, nodes)
    assert unplaceable(Demand("ok", [{"CPU": 1, "tools": 0.001}]), nodes) is None


# -- KubeRay ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_manifest_structure(name):
    """Each manifest: every document has apiVersion, kind and metadata.name; the Ray object is
    ray.io/v1 RayService / RayCluster with only fields of KubeRay's ray.io/v1 types; rayVersion is
    the Ray installed here; in-tree autoscaling is on with valid autoscalerOptions; head and worker
    groups have rayStartParams (strings, as the CRD's map[string]string), a pod template with a
    named container and image, unique group names and minReplicas <= replicas <= maxReplicas, with
    room to scale."""
    docs = load_all(name)
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), d
    doc = ray_doc(name)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == {"kuberay-rayservice.yaml": "RayService", "kuberay-raycluster.yaml": "RayCluster"}[name]
    if doc["kind"] == "RayService":
        assert set(doc["spec"]) <= RAYSERVICE_SPEC_KEYS
        assert {"serveConfigV2", "rayClusterConfig"} <= set(doc["spec"])
    spec = cluster_spec(name)
    assert set(spec) <= RAYCLUSTER_SPEC_KEYS and {"headGroupSpec", "workerGroupSpecs"} <= set(spec)
    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    assert set(options) <= AUTOSCALER_OPTIONS_KEYS
    assert options["upscalingMode"] in ("Default", "Aggressive", "Conservative")
    assert isinstance(options["idleTimeoutSeconds"], int) and options["idleTimeoutSeconds"] > 0
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_KEYS
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for g in [head, *groups]:
        assert all(isinstance(v, str) for v in g["rayStartParams"].values()), g["rayStartParams"]
        containers = g["template"]["spec"]["containers"]
        assert containers and all(c.get("name") and c.get("image") for c in containers)
    for g in groups:
        assert set(g) <= WORKER_GROUP_KEYS
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
    assert any(g["maxReplicas"] > g["minReplicas"] for g in groups)


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_groups_as_rays_autoscaler_reads_them(name):
    """Ray's own KubeRay code derives the autoscaler's node types from the spec (parsing
    rayStartParams.resources in KubeRay's quoted-JSON form and the containers' limits) and
    validates them: the head has no CPUs and no tag, one group is the GPU group with {"llm": 1}
    whose Ray GPU count equals the container's nvidia.com/gpu limit and request, one is the CPU
    group with {"tools": 1} and no GPU; GPU pods tolerate the nvidia.com/gpu taint."""
    node_types = _kuberay_node_types(name)
    head = node_types.pop("headgroup")["resources"]
    assert head["CPU"] == 0 and not TAGS & set(head)
    by_group = {g["groupName"]: g for g in cluster_spec(name)["workerGroupSpecs"]}
    kinds = []
    for group, spec in node_types.items():
        res = spec["resources"]
        container = by_group[group]["template"]["spec"]["containers"][0]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        if res.get("GPU", 0) > 0:
            assert res.get("llm") == 1 and "tools" not in res, (group, res)
            assert int(limits["nvidia.com/gpu"]) == int(requests["nvidia.com/gpu"]) == res["GPU"]
            tolerations = by_group[group]["template"]["spec"].get("tolerations", [])
            assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations), group
            kinds.append("llm")
        else:
            assert res.get("tools") == 1 and "llm" not in res and "nvidia.com/gpu" not in limits, (group, res)
            kinds.append("tools")
        assert res["CPU"] >= 1, group
    assert sorted(kinds) == ["llm", "tools"]


def test_rayservice_carries_the_agents_serve_config():
    """serveConfigV2 is a string (as the CRD requires) holding YAML equal to serve_agents.yaml, so
    the RayService deploys exactly the config the other checks validate."""
    spec = ray_doc("kuberay-rayservice.yaml")["spec"]
    assert isinstance(spec["serveConfigV2"], str)
    assert yaml.safe_load(spec["serveConfigV2"]) == load("serve_agents.yaml")


def test_raycluster_is_the_rayservices_cluster():
    """kuberay-raycluster.yaml says it is the RayService's cluster without the applications: the
    RayCluster spec equals rayClusterConfig, and the Redis objects are the same in both files."""
    assert cluster_spec("kuberay-raycluster.yaml") == cluster_spec("kuberay-rayservice.yaml")
    others = [[d for d in load_all(n) if not d["apiVersion"].startswith("ray.io/")] for n in KUBERAY]
    assert others[0] == others[1] and others[0]


# -- packages, images, Redis --------------------------------------------------------------------
@pytest.mark.parametrize("name", CLOUD)
def test_cloud_nodes_install_what_their_work_needs(name):
    """The pip commands each node type really runs (after Ray merges setup_commands into head/worker
    setup commands; a node type's own worker_setup_commands replace both): Ray pinned to the
    installed version with serve and llm, raygent from the wheel directory copied by file_mounts with
    serve, redis and vllm everywhere and llama and tools on the tagged CPU workers and the head; the
    head also installs the autoscaler's cloud client."""
    cfg = prepared(name)
    (dist,) = [remote for remote, local in cfg["file_mounts"].items() if local.rstrip("/") == "./dist"]
    head_cmds = cfg["head_setup_commands"]
    check_node_packages(f"{name} head", pip_installs(head_cmds), tools_node=True)
    cloud_client = {"aws.yaml": "boto3", "gcp.yaml": "google-api-python-client"}[name]
    assert cloud_client in pip_installs(head_cmds)
    for t, spec in cfg["available_node_types"].items():
        if t == cfg["head_node_type"]:
            continue
        cmds = spec.get("worker_setup_commands", cfg["worker_setup_commands"])
        check_node_packages(f"{name} {t}", pip_installs(cmds), tools_node="tools" in spec["resources"])
        assert all(f"--find-links {dist}" in c for c in cmds if "raygent[" in c), t


def test_onprem_hosts_install_what_their_work_needs(shell):
    """onprem.yaml's setup commands run with stand-ins: a host without GPUs installs the head/CPU
    worker packages, a host with GPUs the GPU worker packages, both from the file_mounts wheel
    directory."""
    cfg = prepared("onprem.yaml")
    (dist,) = [remote for remote, local in cfg["file_mounts"].items() if local.rstrip("/") == "./dist"]
    cpu = [c for c in shell(cfg["worker_setup_commands"]) if c[0] == "pip"]
    gpu = [c for c in shell(cfg["worker_setup_commands"], gpus=1) if c[0] == "pip"]
    check_node_packages("on-prem CPU host", pip_installs(cpu), tools_node=True)
    check_node_packages("on-prem GPU host", pip_installs(gpu), tools_node=False)
    assert "llama" not in pip_installs(gpu)["raygent"].extras
    home = os.path.expanduser("~")
    for call in cpu + gpu:
        links = call[call.index("--find-links") + 1]
        assert links.endswith(dist.removeprefix("~")) and not links.startswith(home), call


def _dockerfiles() -> dict[str, dict[str, Any]]:
    """README's Dockerfile blocks: image tag (from the first comment) -> base image and pip line."""
    out = {}
    for block in re.findall(r"```dockerfile\n(.*?)```", _text("README.md"), flags=re.S):
        tag = re.match(r"#\s*(\S+)", block).group(1)
        base = re.search(r"^FROM\s+(\S+)", block, flags=re.M).group(1)
        (run,) = [line[4:] for line in block.splitlines() if line.startswith("RUN pip install")]
        out[tag] = {"base": base, "reqs": pip_installs([run])}
    return out


def test_kuberay_images_are_built_as_the_readme_says():
    """The KubeRay containers use the images cluster/README.md's Dockerfiles build: the GPU group
    the one on Ray's GPU image with the GPU packages, the head and CPU group the one with the CPU
    tool worker packages; both on the Ray version installed here."""
    dockerfiles = _dockerfiles()
    assert len(dockerfiles) == 2
    for tag, d in dockerfiles.items():
        gpu = d["base"].endswith("-gpu")
        assert d["base"] == f"rayproject/ray:{ray.__version__}-py311-{'gpu' if gpu else 'cpu'}"
        check_node_packages(f"README {tag}", d["reqs"], tools_node=not gpu)
    for name in KUBERAY:
        spec = cluster_spec(name)
        node_types = _kuberay_node_types(name)
        groups = [("headgroup", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
        for group, g in groups:
            image = g["template"]["spec"]["containers"][0]["image"]
            (tag,) = [t for t in dockerfiles if image.endswith("/" + t)]
            wants_gpu = node_types[group]["resources"].get("GPU", 0) > 0
            assert dockerfiles[tag]["base"].endswith("-gpu") == wants_gpu, (name, group, image)


def test_redis_is_wired_the_same_everywhere(shell):
    """serve_agents.yaml keeps state on redis://raygent-redis:6380 (6380: the head's 6379 is Ray's
    GCS). ray up clusters start Redis on that port on the head (AWS/GCP in the head type's
    initialization commands, on-prem in its start commands) and map the name to 127.0.0.1 on the
    head and to $RAY_HEAD_IP on every worker type; on Kubernetes a Service of that name and port
    selects a Deployment's pods running Redis on the target port."""
    url = urlparse(apps(load("serve_agents.yaml"), RAYGENT_BUILDER)[0]["args"]["state"]["url"])
    assert (url.scheme, url.hostname, url.port) == ("redis", REDIS_HOST, 6380)
    assert url.port != GCS_PORT
    head_map, worker_map = f"127.0.0.1 {REDIS_HOST}", f"$RAY_HEAD_IP {REDIS_HOST}"
    for name in CLOUD:
        cfg = prepared(name)
        head = cfg["available_node_types"][cfg["head_node_type"]]
        assert any("redis-server" in c and f"--port {url.port}" in c for c in head["initialization_commands"])
        assert any(head_map in c for c in cfg["head_setup_commands"])
        for t, spec in cfg["available_node_types"].items():
            if t != cfg["head_node_type"]:
                assert any(worker_map in c for c in spec.get("worker_setup_commands", cfg["worker_setup_commands"])), t
    cfg = prepared("onprem.yaml")
    for commands, expected in ((cfg["head_setup_commands"], "127.0.0.1"),
                               (cfg["worker_setup_commands"], "192.168.10.10")):
        tees = [c for c in shell(commands) if c[:3] == ["sudo", "tee", "-a"]]
        assert [(Path(t[3]).name, t[4]) for t in tees] == [("hosts", f"<stdin>{expected} {REDIS_HOST}")]
    for name in KUBERAY:
        docs = {(d["kind"], d["metadata"]["name"]): d for d in load_all(name)}
        svc = docs[("Service", REDIS_HOST)]["spec"]
        (port,) = [p for p in svc["ports"] if p["port"] == url.port]
        pods = [d["spec"]["template"] for (kind, _), d in docs.items() if kind == "Deployment"
                and svc["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1
        (container,) = pods[0]["spec"]["containers"]
        assert container["image"].startswith("redis:")
        assert any(port["targetPort"] in (p.get("name"), p["containerPort"]) for p in container["ports"])


def test_readme_covers_every_file_and_says_checks_are_offline():
    """cluster/README.md names every configuration file in cluster/, the two tags, and says the CI
    checks run offline and are not deployments."""
    text = _text("README.md")
    files = sorted(p.name for p in CLUSTER.glob("*.yaml"))
    assert set(files) >= set(RAY_UP + KUBERAY + SERVE_FILES)
    for f in files:
        assert f"`{f}`" in text, f
    assert '{"llm": 1}' in text and '{"tools": 1}' in text
    assert "offline" in text and "not deployments" in text


@pytest.mark.parametrize("name", RAY_UP)
def test_every_node_starts_ray_with_serves_fast_path(name):
    """The env raygent's embedded Ray starts with (ray_env.SERVE_FAST_PATH: gRPC handles, same-loop
    replicas) is exported in the shell command that runs `ray start` on the head and on every worker,
    so Serve's processes on every node inherit it."""
    from raygent import ray_env

    cfg = load(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in cfg[key] if "ray start" in c]
        before_start = start[:start.index("ray start")]
        for variable, value in ray_env.SERVE_FAST_PATH.items():
            assert re.search(rf"export [^;]*\b{variable}={value}\b", before_start), (key, variable, start)


@pytest.mark.parametrize("name", KUBERAY)
def test_every_kuberay_container_has_serves_fast_path(name):
    from raygent import ray_env

    spec = cluster_spec(name)
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for variable, value in ray_env.SERVE_FAST_PATH.items():
                assert env.get(variable) == value, (group.get("groupName", "head"), variable)
