"""The gradio page: Build (form or builder chat) + Preview, Publish, Story studio, Portrait studio.

Every handler talks to a `Backend` (raygent.ui.backend), so the page is the same against the
in-process components and against a remote `raygent serve`. gradio is imported here only.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from raygent.schema import Artifact
from raygent.ui import config as cfg
from raygent.ui import snippets
from raygent.ui.backend import Backend, ToolChoice
from raygent.ui.config import AgentForm

MESSAGE_PLACEHOLDER = "Type a message to the agent…"
MESSAGE_LABEL = "Message to the agent"

# gradio labels its text areas with a <label>; assistive technology also gets an aria-label on the
# message boxes (gradio renders them late, so an observer sets it when they appear)
_ARIA = {".raygent-message textarea": MESSAGE_LABEL, ".raygent-builder-message textarea": "Message to the builder"}
_HEAD = """<script>
(() => {
  const labels = %s;
  const label = () => Object.entries(labels).forEach(([selector, want]) =>
    document.querySelectorAll(selector).forEach((t) => {
      if (t.getAttribute('aria-label') !== want) t.setAttribute('aria-label', want);
    }));
  new MutationObserver(label).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>""" % json.dumps(_ARIA)

_CSS = """
.raygent-pages { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.raygent-page { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; }
.raygent-page img { width: 100%; border-radius: 6px; }
.raygent-page audio { width: 100%; }
.raygent-timeline { max-height: 640px; overflow-y: auto; font-size: 0.9em; }
.raygent-timeline li { margin: 2px 0; }
.raygent-verdict.ok { color: var(--color-green-600, green); }
.raygent-verdict.refused { color: var(--color-red-600, #c00); }
"""


def _file_url(path: str) -> str:
    return "/gradio_api/file=" + html.escape(str(path), quote=True)


def _json_block(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    if len(text) > 4000:
        text = text[:4000] + "\n…"
    return f"```json\n{text}\n```"


def _artifact_message(artifact: Artifact) -> dict[str, Any]:
    """An artifact as a chat message: an audio player, an inline image, or a download."""
    path = artifact.uri
    if artifact.kind == "audio":
        component: Any = gr.Audio(value=path, label=Path(path).name, interactive=False)
    elif artifact.kind == "image":
        component = gr.Image(value=path, label=Path(path).name, interactive=False)
    else:
        component = gr.File(value=path, label=Path(path).name, interactive=False)
    return {"role": "assistant", "content": component}


def _tool_choices(tools: list[ToolChoice]) -> list[tuple[str, str]]:
    out = []
    for t in tools:
        label = f"{t.name} — {t.description}"
        if t.missing:
            label += f" (not available here: {t.missing})"
        out.append((label, t.name))
    return out


class _Page:
    """The handlers, bound to one backend."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.tools = backend.tools()
        self.tool_names = [t.name for t in self.tools]

    # -- the form -----------------------------------------------------------------------------
    @staticmethod
    def form(name: str, description: str, instructions: str, model: str | None, tools: list[str] | None,
             knowledge: str, starters: str, max_steps: float) -> AgentForm:
        return AgentForm(name=name or "my-agent", description=description or "", instructions=instructions or "",
                         model=model or None, tools=list(tools or []), knowledge=(knowledge or "").strip() or None,
                         starters=(starters or "").splitlines(), max_steps=int(max_steps or 6))

    @staticmethod
    def fields(form: AgentForm) -> list[Any]:
        return [form.name, form.description, form.instructions, form.model, form.tools, form.knowledge or "",
                "\n".join(form.starters), form.max_steps]

    def config_with(self, form: AgentForm) -> Any:
        return cfg.with_agent(self.backend.config(), form)

    def show_yaml(self, *fields: Any) -> Any:
        try:
            return cfg.to_yaml(self.config_with(self.form(*fields)))
        except Exception as exc:
            return f"# the form is not valid yet: {exc}"

    def starters(self, text: str) -> Any:
        items = [s.strip() for s in (text or "").splitlines() if s.strip()]
        return gr.update(choices=items, value=None, visible=bool(items))

    def save(self, *fields: Any) -> tuple[Any, str]:
        form = self.form(*fields)
        path = Path(self._out_dir()) / "configs" / f"{form.name}.yaml"
        cfg.save(self.config_with(form), path)
        return str(path), f"Saved `{path}` — serve it with `raygent serve --config {path}`."

    def load(self, file: Any) -> list[Any]:
        if file is None:
            raise gr.Error("choose a YAML config to load")
        config = cfg.load(file if isinstance(file, str) else file.name)
        form = cfg.form_from_config(config)
        models = config.models
        if form.model is not None and form.model not in self.backend.config().models:
            gr.Warning(f"model {form.model!r} is not in this backend's pool {sorted(models)}; using the default")
            form = form.model_copy(update={"model": None})
        return [*self.fields(form), f"Loaded agent `{form.name}` from the config."]

    async def upload(self, kb: str, files: list[Any] | None) -> tuple[str, str]:
        if not files:
            return kb, "No files chosen."
        kb = (kb or "").strip() or "ui-knowledge"
        paths = [f if isinstance(f, str) else f.name for f in files]
        try:
            return kb, await self.backend.add_knowledge(kb, paths)
        except Exception as exc:
            return kb, f"Upload failed: {type(exc).__name__}: {exc}"

    def _out_dir(self) -> str:
        return str(getattr(self.backend, "out_dir", "."))

    # -- builder chat -------------------------------------------------------------------------
    async def build_chat(self, text: str, history: list[dict[str, Any]], *fields: Any) -> Any:
        from raygent.ui.builder import build_turn

        if not (text or "").strip():
            yield (gr.update(), history, *([gr.update()] * 8))
            return
        history = list(history or []) + [{"role": "user", "content": text}]
        yield ("", history, *([gr.update()] * 8))
        form = self.form(*fields)
        help_text = {t.name: t.description for t in self.tools}
        available = [t.name for t in self.tools if not t.missing]
        try:
            new_form, reply, _ = await build_turn(self.backend.builder_llm(), form, text, available, help_text)
        except Exception as exc:
            history.append({"role": "assistant", "content": f"The builder failed: {type(exc).__name__}: {exc}"})
            yield ("", history, *([gr.update()] * 8))
            return
        history.append({"role": "assistant", "content": reply or "Done."})
        yield ("", history, *self.fields(new_form))

    # -- preview chat -------------------------------------------------------------------------
    async def chat(self, text: str, history: list[dict[str, Any]], session: str, *fields: Any) -> Any:
        text = (text or "").strip()
        history = list(history or [])
        if not text:
            yield "", history, ""
            return
        try:
            form = self.form(*fields)
        except ValueError as exc:
            history.append({"role": "assistant", "content": f"The form is not valid: {exc}"})
            yield text, history, ""
            return
        history.append({"role": "user", "content": text})
        t0 = time.perf_counter()
        status = "The agent is working…"
        yield "", history, status
        answer: int | None = None
        steps: dict[str, int] = {}
        started: dict[str, float] = {}
        async for event in self.backend.chat(session, form, text):
            if event.type == "answer_delta" and event.text:
                if answer is None:
                    history.append({"role": "assistant", "content": ""})
                    answer = len(history) - 1
                history[answer]["content"] += event.text
            elif event.type == "thought" and event.text:
                if answer is not None:  # the streamed text was the model thinking before its call
                    history[answer]["metadata"] = {"title": "Thought", "status": "done"}
                    answer = None
                else:
                    history.append({"role": "assistant", "content": event.text,
                                    "metadata": {"title": "Thought", "status": "done"}})
            elif event.type == "tool_call" and event.tool_call:
                if answer is not None:
                    history[answer]["metadata"] = {"title": "Thought", "status": "done"}
                    answer = None
                call = event.tool_call
                history.append({"role": "assistant", "content": f"**arguments**\n\n{_json_block(call.arguments)}",
                                "metadata": {"title": f"Tool call: {call.name}", "status": "pending",
                                             "id": call.id}})
                steps[call.id] = len(history) - 1
                started[call.id] = time.perf_counter()
            elif event.type == "tool_result" and event.tool_result:
                r = event.tool_result
                index = steps.get(r.call_id)
                body = f"**error**\n\n{r.error}" if r.error else f"**result**\n\n{_json_block(r.output)}"
                if index is None:
                    history.append({"role": "assistant", "content": body,
                                    "metadata": {"title": f"Tool call: {r.name}", "status": "done"}})
                else:
                    message = history[index]
                    message["content"] += "\n\n" + body
                    message["metadata"] = {**message["metadata"], "status": "done",
                                           "duration": round(r.duration_s or time.perf_counter()
                                                             - started[r.call_id], 2)}
            elif event.type == "error" and event.text:
                history.append({"role": "assistant", "content": event.text,
                                "metadata": {"title": "Error", "status": "done"}})
                answer = None
            elif event.type == "done" and event.result is not None:
                result = event.result
                if answer is None and result.answer:
                    history.append({"role": "assistant", "content": result.answer})
                for artifact in result.artifacts:
                    history.append(_artifact_message(artifact))
                calls = len(result.tool_calls)
                status = (f"Answered ({result.stop_reason}) in {result.steps} step(s), {calls} tool call(s), "
                          f"{time.perf_counter() - t0:.1f} s, model {result.model}")
            yield "", history, status

    async def reset(self, session: str) -> tuple[list[Any], str, str]:
        await self.backend.reset(session)
        return [], "", "New conversation."

    # -- publish ------------------------------------------------------------------------------
    async def publish(self, *fields: Any) -> tuple[str, str, str]:
        try:
            form = self.form(*fields)
            info = await self.backend.publish(self.config_with(form), form.name)
        except Exception as exc:
            return f"**Publishing failed:** {type(exc).__name__}: {exc}", "", ""
        key_line = f"API key (shown once, keep it): `{info.key}`" if info.key else "No API key needed."
        status = (f"**Published** `{info.agent}` at `{info.url}`.\n\n{key_line}\n\n{info.note}")
        example = form.starters[0] if form.starters else snippets.EXAMPLE
        return (status, snippets.curl(info.url, info.key, info.agent, example),
                snippets.openai_sdk(info.url, info.key, info.agent, example))

    # -- story studio -------------------------------------------------------------------------
    async def story(self, topic: str, pages: float, language: str) -> Any:
        topic = (topic or "").strip()
        if not topic:
            raise gr.Error("give the story a topic")
        lines: list[str] = []
        book: dict[int, dict[str, str]] = {i: {} for i in range(1, int(pages) + 1)}
        t0 = time.perf_counter()
        state = {"title": "", "status": "The team is at work…", "html": None}

        def render() -> tuple[str, str, Any, str]:
            timeline = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            cards = []
            for index, page in sorted(book.items()):
                image = f'<img alt="page {index} picture" src="{_file_url(page["image"])}">' if "image" in page \
                    else "<p><em>picture…</em></p>"
                audio = f'<audio controls preload="none" src="{_file_url(page["audio"])}"></audio>' \
                    if "audio" in page else "<p><em>narration…</em></p>"
                text = html.escape(page.get("text", "…"))
                cards.append(f'<section class="raygent-page" data-page="{index}"><h4>Page {index}</h4>{image}'
                             f"<p>{text}</p>{audio}</section>")
            title = f"<h3>{html.escape(state['title'])}</h3>" if state["title"] else ""
            return (f'<ol class="raygent-timeline">{timeline}</ol>', f'{title}<div class="raygent-pages">'
                    f'{"".join(cards)}</div>', state["html"], state["status"])

        yield render()
        async for event in self.backend.story(topic, int(pages), None if language == "auto" else language):
            stamp = f"[{time.perf_counter() - t0:5.1f}s] "
            if event.type in ("message", "progress") and event.text:
                lines.append(stamp + event.text)
            elif event.type == "page" and event.page is not None and event.field and event.value:
                book.setdefault(event.page, {})[event.field] = event.value
            elif event.type == "error":
                lines.append(stamp + "error: " + event.text)
                state["status"] = f"**The story failed:** {event.text}"
            elif event.type == "done":
                state["title"] = event.title or ""
                state["html"] = event.html
                lines.append(stamp + (event.text or "done"))
                missing = f" Missing: {', '.join(event.missing)}." if event.missing else ""
                link = f' <a href="{_file_url(event.html)}" target="_blank">Open the book</a>' if event.html else ""
                state["status"] = f"**{event.title}** is ready ({event.seconds} s).{missing}{link}"
            yield render()

    # -- portrait studio ----------------------------------------------------------------------
    async def portrait(self, photos: list[Any] | None, style: str, use_llm: bool = True) -> Any:
        if not photos:
            raise gr.Error("upload at least one photo")
        paths = [p if isinstance(p, str) else p.name for p in photos]
        lines: list[str] = []
        verdicts = "<p><em>The inspector is looking at the photos…</em></p>"
        sheet = None
        yield "", verdicts, None
        async for event in self.backend.portrait(paths, style or "soft watercolour", use_llm=bool(use_llm)):
            if event.type == "progress":
                lines.append(event.text)
            elif event.type == "error":
                lines.append("error: " + event.text)
                verdicts = f"<p><strong>The portrait studio failed:</strong> {html.escape(event.text)}</p>"
            elif event.type == "done" and event.result:
                result = event.result
                rows = []
                for item in result["photos"]:
                    name = html.escape(Path(item["photo"]).name)
                    if item["accepted"]:
                        verdict = '<span class="raygent-verdict ok">accepted</span>'
                        if item.get("portrait"):
                            verdict += f' — <a href="{_file_url(item["portrait"])}" target="_blank">portrait</a>'
                        elif item.get("error"):
                            verdict += f" — painting failed: {html.escape(item['error'])}"
                    else:
                        verdict = (f'<span class="raygent-verdict refused">refused</span>: '
                                   f'{html.escape(item.get("reason") or "")}')
                    rows.append(f'<tr><td>{name}</td><td>{verdict}</td></tr>')
                style_used = result["style"]
                verdicts = (f'<table class="raygent-verdicts"><thead><tr><th>photo</th><th>inspector\'s verdict'
                            f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
                            f"<p>style: {html.escape(str(style_used.get('style')))} "
                            f"({html.escape(result['style_source'])})</p>")
                sheet = result.get("contact_sheet")
            yield "\n".join(lines), verdicts, sheet


def _styles() -> list[str]:
    try:
        from raygent.imaging.stylize import available_styles

        return [s.replace("_", " ") for s in available_styles() if s != "none"]
    except Exception:
        return ["watercolor", "pencil sketch", "oil painting"]


def build(backend: Backend) -> gr.Blocks:
    """The web app's Blocks for `backend`."""
    page = _Page(backend)
    config = backend.config()
    first = cfg.form_from_config(config) if config.agents else AgentForm(
        name="my-agent", model=config.default_model or next(iter(config.models)),
        tools=["address_parse", "calculator", "current_datetime"],
        starters=[snippets.EXAMPLE])
    where = ("in this process (the embedded model unless the config names others)" if backend.kind == "local"
             else f"on the server {getattr(backend, 'url', '')}")
    with gr.Blocks(title="raygent") as demo:
        session = gr.State("")
        gr.Markdown(f"## raygent — build, try and publish agents\nAgents run {where}.")
        with gr.Tabs():
            with gr.Tab("Build", id="build"):
                with gr.Row():
                    with gr.Column(scale=5):
                        with gr.Tabs():
                            with gr.Tab("Configure", id="configure"):
                                name = gr.Textbox(label="Name", value=first.name)
                                description = gr.Textbox(label="Description", value=first.description)
                                instructions = gr.Textbox(label="Instructions", lines=3, value=first.instructions,
                                                          placeholder="How the agent behaves (its system prompt)")
                                model = gr.Dropdown(label="Model", choices=cfg.describe_models(config),
                                                    value=first.model or next(iter(config.models)))
                                tools = gr.CheckboxGroup(label="Tools", choices=_tool_choices(page.tools),
                                                         value=[t for t in first.tools if t in page.tool_names])
                                with gr.Accordion("Knowledge", open=False):
                                    knowledge = gr.Textbox(label="Knowledge base", value=first.knowledge or "",
                                                           placeholder="a name, e.g. mydocs (adds knowledge_search)")
                                    uploads = gr.File(label="Knowledge files (txt, md, html, pdf)",
                                                      file_count="multiple")
                                    kb_status = gr.Markdown()
                                starters = gr.Textbox(label="Conversation starters (one per line)", lines=2,
                                                      value="\n".join(first.starters))
                                max_steps = gr.Slider(1, 20, step=1, value=first.max_steps, label="Max steps")
                                with gr.Accordion("Config (the file `raygent serve --config` reads)", open=False):
                                    yaml_view = gr.Code(language="yaml", label="YAML")
                                    with gr.Row():
                                        save_btn = gr.Button("Save YAML")
                                        load_file = gr.File(label="Load a YAML config", file_types=[".yaml", ".yml"])
                                    saved_file = gr.File(label="Saved config", interactive=False)
                                    config_status = gr.Markdown()
                            with gr.Tab("Create by chatting", id="create"):
                                builder_bot = gr.Chatbot(label="Builder", height=360)
                                builder_box = gr.Textbox(label="Message to the builder", elem_classes=["raygent-builder-message"],
                                                         placeholder="Describe the agent you want (message to the "
                                                                     "builder)…")
                    with gr.Column(scale=6):
                        gr.Markdown("### Preview")
                        chatbot = gr.Chatbot(label="Preview", height=520, elem_id="preview-chat")
                        starter_pick = gr.Radio(label="Conversation starters", choices=first.starters,
                                                visible=bool(first.starters))
                        message = gr.Textbox(label=MESSAGE_LABEL, placeholder=MESSAGE_PLACEHOLDER, show_label=False,
                                             elem_classes=["raygent-message"], elem_id="message", lines=1)
                        with gr.Row():
                            send = gr.Button("Send", variant="primary")
                            reset = gr.Button("Reset conversation")
                        preview_status = gr.Markdown(elem_id="preview-status")
            with gr.Tab("Publish", id="publish"):
                gr.Markdown("Serve this agent over HTTP (`raygent serve`) with an API key, then call it from any "
                            "OpenAI client.")
                publish_btn = gr.Button("Publish", variant="primary")
                publish_status = gr.Markdown()
                curl_code = gr.Code(language="shell", label="curl")
                sdk_code = gr.Code(language="python", label="openai SDK")
            with gr.Tab("Story studio", id="story"):
                with gr.Row():
                    topic = gr.Textbox(label="Topic", placeholder="a little fox who learns to share", scale=4)
                    pages = gr.Slider(1, 8, step=1, value=2, label="Pages", scale=1)
                    language = gr.Dropdown(["auto", "en", "zh"], value="auto", label="Language", scale=1)
                story_btn = gr.Button("Start the story", variant="primary")
                story_status = gr.Markdown()
                with gr.Row():
                    with gr.Column(scale=2):
                        gr.Markdown("#### The team's messages")
                        timeline = gr.HTML(elem_id="story-timeline")
                    with gr.Column(scale=3):
                        gr.Markdown("#### The book")
                        book_view = gr.HTML(elem_id="story-book")
                        book_file = gr.File(label="book.html", interactive=False)
            with gr.Tab("Portrait studio", id="portrait"):
                photos = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="portrait-photos")
                style = gr.Dropdown(_styles(), value=(_styles() or ["watercolor"])[0], allow_custom_value=True,
                                    label="Style (pick one, or describe it in your words)")
                stylist_llm = gr.Checkbox(value=True, label="The stylist reads the style with the model "
                                                            "(else with its word rules)")
                portrait_btn = gr.Button("Make portraits", variant="primary")
                verdicts = gr.HTML(elem_id="portrait-verdicts")
                with gr.Row():
                    team_log = gr.Textbox(label="The team", lines=8, interactive=False)
                    sheet = gr.Image(label="Contact sheet", interactive=False)

        form_fields = [name, description, instructions, model, tools, knowledge, starters, max_steps]
        demo.load(lambda: uuid.uuid4().hex, None, session)
        demo.load(page.show_yaml, form_fields, yaml_view)
        for field in form_fields:
            field.change(page.show_yaml, form_fields, yaml_view)
        starters.change(page.starters, starters, starter_pick)
        starter_pick.select(lambda choice: choice, starter_pick, message)
        uploads.upload(page.upload, [knowledge, uploads], [knowledge, kb_status])
        save_btn.click(page.save, form_fields, [saved_file, config_status])
        load_file.upload(page.load, load_file, [*form_fields, config_status])
        builder_box.submit(page.build_chat, [builder_box, builder_bot, *form_fields],
                           [builder_box, builder_bot, *form_fields])
        chat_inputs = [message, chatbot, session, *form_fields]
        message.submit(page.chat, chat_inputs, [message, chatbot, preview_status])
        send.click(page.chat, chat_inputs, [message, chatbot, preview_status])
        reset.click(page.reset, session, [chatbot, message, preview_status])
        publish_btn.click(page.publish, form_fields, [publish_status, curl_code, sdk_code])
        story_btn.click(page.story, [topic, pages, language], [timeline, book_view, book_file, story_status])
        portrait_btn.click(page.portrait, [photos, style, stylist_llm], [team_log, verdicts, sheet])
    return demo


def launch(backend: Backend | None = None, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True,
           quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Start the web app (the local backend by default); returns the Blocks and the URL.
    `block=False` returns at once, the server running in a thread (tests)."""
    if backend is None:
        from raygent.ui.local import LocalBackend

        backend = LocalBackend()
    demo = build(backend)
    demo.queue(default_concurrency_limit=4)
    # gradio's default theme: its fonts ship with gradio (themes with Google fonts would reach the network)
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=quiet,
                            allowed_paths=backend.allowed_paths(), head=_HEAD, css=_CSS, footer_links=[])
    if block:
        demo.block_thread()
    return demo, url


__all__ = ["build", "launch", "MESSAGE_LABEL", "MESSAGE_PLACEHOLDER"]
