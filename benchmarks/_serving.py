"""What the serving benchmarks share: stopping Serve and raygent's Ray, and removing their files."""

from __future__ import annotations

import shutil
from pathlib import Path


def stop_serving(tmp: str | Path | None = None) -> None:
    """Shut Serve down (if Ray is up), then raygent's Ray, then remove `tmp`, whatever fails first.
    Imports late: the benchmarks set RAYGENT_HOME before raygent is imported."""
    from raygent import runtime

    try:
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
    finally:
        runtime.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
