"""`raygent ui`: the web app (builder, preview chat, publish, story and portrait studios)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

INSTALL_HINT = "the web app needs gradio: pip install 'raygent[ui]'"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="the web app: build, try and publish agents; story and portrait studios")
    p.add_argument("--port", type=int, default=7860, help="the page's port (default 7860)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--config", default=None,
                   help="a serve config (YAML) to start from: its models are the pool, its agent fills the form")
    p.add_argument("--remote", default=None, metavar="URL",
                   help="use a running `raygent serve` (e.g. http://host:8000/v1) instead of in-process components")
    p.add_argument("--key", default=None, help="the remote server's API key (default: $RAYGENT_API_KEY)")
    p.add_argument("--serve-port", type=int, default=8000, help="where Publish serves the agent (default 8000)")
    p.set_defaults(handler=run)


def _has_gradio() -> bool:
    import importlib.util

    return importlib.util.find_spec("gradio") is not None


async def run(args: argparse.Namespace) -> int:
    if not _has_gradio():
        print(f"raygent: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from raygent.serve.cli import wait_for_ctrl_c
    from raygent.ui.layout import launch

    if args.remote:
        from raygent.ui.remote import RemoteBackend

        backend = RemoteBackend(args.remote, args.key or os.environ.get("RAYGENT_API_KEY"))
        backend.config()  # fail fast: the server answers and the key is accepted
    else:
        from raygent.ui import config as cfg
        from raygent.ui.local import LocalBackend

        config = cfg.load(args.config) if args.config else None
        backend = LocalBackend(config, serve_port=args.serve_port)
    demo, url = await asyncio.to_thread(launch, backend, host=args.host, port=args.port, block=False, quiet=True)
    print(f"raygent: the web app is at {url} ({backend.kind} backend; Ctrl-C stops)", flush=True)
    try:
        await wait_for_ctrl_c()
    finally:
        demo.close()
    return 0
