"""`raygent keys create | list | revoke`: API keys for `raygent serve` (see raygent.serve.keys).

Keys live where the server's state does: SQLite under RAYGENT_HOME by default, or the Redis of
`--state redis://host:port/db` (the serve config's `state.url`). A running server sees a new or
revoked key at its next request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys for `raygent serve`")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="make a key (its secret is printed once)")
    create.add_argument("--name", default=None, help="a label to recognise the key by")
    create.add_argument("--rpm", type=_positive, default=None, help="requests per minute (default: the server's)")
    create.add_argument("--concurrent", type=_positive, default=None,
                        help="runs in progress at once (default: the server's)")
    listing = ksub.add_parser("list", help="keys (ids and limits, never the secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = ksub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id", help="the key's id (key_...), as `raygent keys list` shows it")
    for p in (create, listing, revoke):
        p.add_argument("--state", default=None, metavar="URL",
                       help="redis://host:port/db of the server's state (default: SQLite under RAYGENT_HOME)")
        if p is not revoke:
            p.add_argument("--json", action="store_true", help="print JSON")
    keys.set_defaults(handler=run)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


async def run(args: argparse.Namespace) -> int:
    from raygent.serve.keys import open_key_store

    store = open_key_store(args.state)
    try:
        if args.keys_command == "create":
            created = await store.create(name=args.name, requests_per_minute=args.rpm,
                                         concurrent_runs=args.concurrent)
            if args.json:
                print(json.dumps({"id": created.id, "key": created.key}))
            else:
                print(f"created {created.id}{f' ({args.name})' if args.name else ''}; the key is shown only "
                      f"this once, store it now:\n{created.key}")
            return 0
        if args.keys_command == "list":
            infos = await store.list(include_revoked=args.all)
            if args.json:
                print(json.dumps([i.model_dump() for i in infos], ensure_ascii=False))
            else:
                for i in infos:
                    rpm = i.requests_per_minute or "default"
                    runs = i.concurrent_runs or "default"
                    status = f"revoked {_when(i.revoked_at)}" if i.revoked_at else "active"
                    print(f"{i.id}  {(i.name or '-'):20s} created {_when(i.created_at)}  rpm {rpm}  "
                          f"concurrent {runs}  {status}")
            return 0
        if not await store.revoke(args.id):
            print(f"raygent: error: no API key with id {args.id!r} (see `raygent keys list --all`)", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
        return 0
    finally:
        await store.close()
