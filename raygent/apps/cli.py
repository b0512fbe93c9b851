"""`raygent story` and `raygent portrait`: the multi-agent apps from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_commands(sub: argparse._SubParsersAction) -> None:
    story = sub.add_parser("story", help="a team of agents writes, illustrates and narrates a storybook")
    story.add_argument("topic")
    story.add_argument("--pages", type=int, default=4)
    story.add_argument("--out", required=True, help="folder for book.html, book.epub, manifest.json, assets/")
    story.add_argument("--language", choices=["en", "zh"], default=None, help="default: detected from the topic")
    story.add_argument("--writers", type=int, default=2, help="writer replicas (they write pages concurrently)")
    story.add_argument("--style", default=None, help="illustration style (see docs/imaging.md)")
    story.add_argument("--image-backend", default="offline", help="offline (default), dashscope, modelscope, diffusers")
    story.add_argument("--remote", action="store_true", help="every agent a Ray actor (RAY_ADDRESS or local Ray)")
    story.add_argument("--seed", type=int, default=0)
    story.add_argument("--json", action="store_true", help="print the result as one JSON object")
    story.set_defaults(handler=story_command)

    portrait = sub.add_parser("portrait", help="a team of agents turns photos into styled portraits")
    portrait.add_argument("photos", nargs="+")
    portrait.add_argument("--style", required=True, help='the style in your words, e.g. "soft watercolour"')
    portrait.add_argument("--out", required=True, help="folder for the portraits and contact_sheet.png")
    portrait.add_argument("--remote", action="store_true", help="every agent a Ray actor")
    portrait.add_argument("--no-llm", action="store_true",
                          help="the stylist reads your words with rules only (no language model)")
    portrait.add_argument("--json", action="store_true")
    portrait.set_defaults(handler=portrait_command)


def _progress(quiet: bool):
    start = time.perf_counter()

    def show(line: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {line}", file=sys.stderr, flush=True)
    return show


async def story_command(args: argparse.Namespace) -> int:
    from raygent.apps.story.studio import StoryRequest, StoryStudio

    studio = StoryStudio(writers=args.writers, remote=args.remote, image_backend=args.image_backend,
                         progress=_progress(quiet=False))
    request = StoryRequest(topic=args.topic, pages=args.pages, language=args.language, style=args.style,
                           seed=args.seed)
    result = await studio.make(request, args.out)
    book, bound = result.book, result.bound
    if args.json:
        print(json.dumps({"title": book.title, "html": str(bound.html), "epub": str(bound.epub),
                          "manifest": str(bound.manifest), "missing": bound.missing,
                          "seconds": round(result.seconds, 1)}, ensure_ascii=False))
    else:
        print(f"{book.title}: {len(book.pages)} pages in {result.seconds:.0f} s")
        print(f"  {bound.html}\n  {bound.epub}\n  {bound.manifest}")
        if bound.missing:
            print(f"  missing: {', '.join(bound.missing)}")
    return 0 if not bound.missing else 3


async def portrait_command(args: argparse.Namespace) -> int:
    from raygent.apps.portrait import PortraitStudio

    studio = PortraitStudio(remote=args.remote, use_llm=not args.no_llm, progress=_progress(quiet=False))
    result = await studio.make(args.photos, args.style, args.out)
    if args.json:
        print(result.model_dump_json())
    else:
        for item in result.photos:
            status = f"-> {item.portrait}" if item.portrait else f"refused: {item.reason}"
            print(f"  {item.photo}: {status}")
        if result.contact_sheet:
            print(f"  contact sheet: {result.contact_sheet}")
    return 0 if all(p.portrait for p in result.photos) else 3
