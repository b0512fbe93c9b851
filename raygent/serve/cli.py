"""`raygent serve`: models and agents over an OpenAI-compatible HTTP API (plus runs, sessions, rooms,
artifacts and A2A), on local Ray or RAY_ADDRESS."""

from __future__ import annotations

import argparse
import asyncio
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve models and agents over an OpenAI-compatible HTTP API (Ray Serve)")
    p.add_argument("--config", default=None, help="serve config (YAML/JSON); default: the embedded model and an 'assistant' agent")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or the config's)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000, or the config's)")
    p.add_argument("--ingress", choices=("proxy", "haproxy"), default=None,
                   help="what receives HTTP: Ray Serve's proxy (default) or Serve's HAProxy ingress "
                        "(lower latency; pip install 'raygent[haproxy]')")
    p.add_argument("--replicas", type=int, default=None, help="replicas per model (overrides the config)")


async def run(args: argparse.Namespace) -> int:
    from raygent.serve import app

    config = app.load_config(args.config) if args.config else app.default_config()
    if args.replicas is not None:
        for entry in config.models.values():
            entry.pool.num_replicas = args.replicas
            entry.pool.autoscaling = None
    if args.ingress is not None:
        config.ingress = args.ingress
    url = app.start(config, host=args.host, port=args.port)
    agents = f"; agents {', '.join(sorted(config.agents))}" if config.agents else ""
    print(f"raygent: serving {', '.join(sorted(config.models))}{agents} at {url} (OpenAI-compatible; Ctrl-C stops)",
          flush=True)
    try:
        await wait_for_ctrl_c()
    finally:
        print("raygent: stopping", file=sys.stderr)
    return 0


async def wait_for_ctrl_c() -> None:
    """Sleep until this task is cancelled (Ctrl-C under asyncio.run): what a foreground server does."""
    try:
        while True:
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass
