"""`raygent ui`, the web app: unit tests of the config round trip and the CLI, then the page in a
real browser (Debian's headless chromium driven by Playwright) on the real components: the
embedded model, the built-in tools, the story and portrait teams, and `raygent serve` for Publish
and for the remote backend. Screenshots go to tests/artifacts/ui/ (and $RAYGENT_TEST_ARTIFACTS/ui)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from _local_servers import free_port
from _serve_apps import scripted_agents_config

ADDRESS_EXAMPLE = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"
ARTIFACTS = Path(__file__).parent / "artifacts" / "ui"
STEP_MS = 240_000  # the longest a page may take to show what a test waits for


def _run(coro):
    """Run a coroutine to its end in a thread of its own (Playwright's sync API holds this thread's loop)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# -- unit tests -----------------------------------------------------------------------------------
def _scripted_base(state_url: str):
    """The builder's pool: the embedded model, and a rule-based one (calls the calculator) that
    makes Publish cheap to serve; state (keys, sessions) in a test folder."""
    from raygent.serve.app import ServeConfig
    from raygent.ui.config import base_config

    scripted = scripted_agents_config(state_url)["models"]["calc-model"]
    data = base_config().model_dump()
    data["models"]["calc-model"] = scripted
    data["state"] = {"url": state_url}
    return ServeConfig(**data)


def test_form_yaml_round_trip_is_what_serve_reads(tmp_path):
    from raygent.serve.app import build_app, check_tools, load_config
    from raygent.ui import config as cfg

    base = _scripted_base(f"sqlite://{tmp_path}/memory.sqlite")
    form = cfg.AgentForm(name="address-helper", description="Parses Chinese addresses.",
                         instructions="Use the address tool, then list the elements.", model="qwen2.5-coder-0.5b-instruct",
                         tools=["address_parse"], knowledge="mydocs", starters=[ADDRESS_EXAMPLE, "  "], max_steps=4)
    config = cfg.with_agent(base, form)
    path = cfg.save(config, tmp_path / "agent.yaml")
    text = path.read_text(encoding="utf-8")
    assert "address-helper" in text and ADDRESS_EXAMPLE in text  # readable YAML, unicode kept
    loaded = load_config(path)  # exactly what `raygent serve --config` does
    check_tools(loaded)
    assert loaded == config and loaded.default_agent == "address-helper"
    back = cfg.form_from_config(loaded)
    assert back == form.model_copy(update={"starters": [ADDRESS_EXAMPLE]})
    assert loaded.agents["address-helper"].system == form.instructions
    # editing the form again replaces the agent and keeps the others and the models
    edited = cfg.with_agent(loaded, back.model_copy(update={"tools": ["address_parse", "calculator"]}))
    assert list(edited.agents) == ["address-helper"] and edited.models == loaded.models
    assert cfg.from_yaml(cfg.to_yaml(edited)) == edited
    with pytest.raises(ValueError, match="not one of the config's models"):
        cfg.with_agent(base, form.model_copy(update={"model": "gpt-9"}))
    with pytest.raises(ValueError, match="agent name"):
        cfg.AgentForm(name="two words")
    assert build_app  # (the same module builds the Serve app from it: see the publish test)


def test_cli_registers_ui_and_explains_a_missing_gradio(monkeypatch, capsys):
    from raygent.cli import build_parser
    from raygent.ui import cli as ui_cli

    args = build_parser().parse_args(["ui", "--port", "7999", "--remote", "http://127.0.0.1:1/v1", "--key", "k"])
    assert args.port == 7999 and args.remote.endswith("/v1") and args.handler is ui_cli.run
    monkeypatch.setattr(ui_cli, "_has_gradio", lambda: False)
    assert _run(ui_cli.run(args)) == 2
    assert "pip install 'raygent[ui]'" in capsys.readouterr().err
    # `import raygent` (and the CLI's parser) stay light: no gradio
    code = "import sys, raygent, raygent.cli, raygent.ui; raygent.cli.build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_snippets_carry_the_url_key_and_agent():
    from raygent.ui import snippets

    curl = snippets.curl("http://127.0.0.1:8000/v1", "rgk_x", "helper")
    assert "http://127.0.0.1:8000/v1/chat/completions" in curl and "Bearer rgk_x" in curl and '"model": "helper"' in curl
    code = snippets.openai_sdk("http://127.0.0.1:8000", "rgk_x", "helper")
    assert "base_url='http://127.0.0.1:8000/v1'" in code and "api_key='rgk_x'" in code and "model='helper'" in code
    compile(code, "snippet", "exec")


def test_the_builder_agents_tool_is_the_form():
    from raygent.ui.builder import ConfigureAgentTool, apply
    from raygent.ui.config import AgentForm

    tool = ConfigureAgentTool(["address_parse", "calculator"], {"address_parse": "parse a Chinese address"})
    spec = tool.spec
    assert spec.parameters["properties"]["tools"]["items"]["enum"] == ["address_parse", "calculator"]
    _run(tool.call(name="Address Helper", description="Parses addresses.", instructions="Be brief.",
                          tools=["address_parse", "web_search"], starters=["浙江杭州市江干区", " "]))
    form = apply(AgentForm(name="old"), tool.applied, ["address_parse", "calculator"])
    assert form.name == "address-helper" and form.tools == ["address_parse"] and form.starters == ["浙江杭州市江干区"]
    assert apply(form, {"name": "!!"}, []).name == "address-helper"  # an unusable name keeps the old one


@pytest.mark.model
def test_the_builder_fills_the_form_from_a_request_on_the_embedded_model(embedded_llm):
    """The builder chat on the embedded 0.5B: one request gives a named form with the right tool and
    conversation starters; the reply lists what changed."""
    from raygent.toolhub.builtin import default_tools
    from raygent.ui.builder import build_turn
    from raygent.ui.config import AgentForm

    tools = default_tools()
    names = [t.spec.name for t in tools]
    form, reply, completion = _run(build_turn(
        embedded_llm, AgentForm(name="new-agent"),
        "I want an agent that finds the province, city and district in Chinese addresses.",
        names, {t.spec.name: t.spec.description for t in tools}))
    assert completion.tool_calls and completion.tool_calls[0].name == "configure_agent", completion.raw
    assert form.tools == ["address_parse"], form
    assert form.name != "new-agent" and form.description and form.instructions and form.starters, form
    assert reply.startswith("I filled in the form:") and "- tools: address_parse" in reply


# -- the browser ----------------------------------------------------------------------------------
def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: apt-get install chromium (the browser tests need it)")
        pytest.skip("no chromium: apt-get install chromium (Debian's package; Playwright drives it)")
    return path


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _shot(page, artifacts: Path, name: str, *, full_page: bool = True) -> Path:
    path = artifacts / name
    page.screenshot(path=str(path), full_page=full_page)
    extra = os.environ.get("RAYGENT_TEST_ARTIFACTS")
    if extra:
        target = Path(extra) / "ui"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return path


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    pytest.importorskip("gradio", reason="pip install 'raygent[ui]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def serve_port():
    """The port Publish serves on (Ray starts only if a test publishes; Serve is shut down at the end)."""
    port = free_port()
    yield port
    import ray

    if ray.is_initialized():
        from ray import serve

        try:
            serve.delete("raygent")
        except Exception:
            pass
        serve.shutdown()


@pytest.fixture(scope="module")
def local_app(embedded_llm, tmp_path_factory, serve_port):
    from raygent.ui.layout import launch
    from raygent.ui.local import LocalBackend

    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    state = tmp_path_factory.mktemp("ui-state")
    # the story team's model: the embedded 0.5B as `raygent story` runs it (two slots, no adapter), on one
    # thread: on a shared 2-core machine two spinning llama.cpp threads ran ~10x slower than one
    story_llm = LlamaCppChatModel(parallel=2, lora=None, n_threads=1)
    backend = LocalBackend(_scripted_base(f"sqlite://{state}/memory.sqlite"), llm=embedded_llm, story_llm=story_llm,
                           serve_port=serve_port, out_dir=tmp_path_factory.mktemp("ui-out"))
    demo, url = launch(backend, port=free_port(), block=False, quiet=True)
    yield url
    demo.close()


@pytest.fixture()
def page(browser, local_app, artifacts, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(STEP_MS)
    p.goto(local_app)
    p.get_by_role("textbox", name="Message to the agent").wait_for()
    failed = request.session.testsfailed
    yield p
    if request.session.testsfailed > failed:  # what the page showed when the test failed
        _shot(p, artifacts, f"FAILED-{request.node.name}.png")
    context.close()


@pytest.mark.model
def test_build_an_address_agent_and_ask_it_in_the_preview(page, artifacts):
    # the form: a name and only the address tool
    page.get_by_label("Name", exact=True).fill("address-helper")
    for other in ("calculator", "current_datetime"):
        page.get_by_role("checkbox", name=other).uncheck()
    assert page.get_by_role("checkbox", name="address_parse").is_checked()
    box = page.get_by_role("textbox", name="Message to the agent")
    assert box.get_attribute("aria-label") == "Message to the agent"
    assert "message" in box.get_attribute("placeholder").lower()
    box.fill(ADDRESS_EXAMPLE)
    box.press("Enter")
    chat = page.locator("#preview-chat")
    step = chat.get_by_text("Tool call: address_parse")
    step.wait_for()
    page.locator("#preview-status").get_by_text("Answered").wait_for()  # the run is over
    answer = chat.locator("[data-testid=bot]").last  # the answer: the message after the step
    text = answer.inner_text()
    assert all(part in text for part in ("浙江省", "杭州市", "江干区")) and "arguments" not in text, text
    page.wait_for_timeout(1500)  # gradio re-renders the chatbot once the handler completes (steps fold again)
    arrow = chat.locator(".thought-group .arrow").first  # a finished step is shown collapsed: open it
    if "180deg" not in (arrow.get_attribute("style") or ""):
        step.click()
    page.wait_for_function("(document.querySelector('#preview-chat .thought-group .arrow').getAttribute('style')"
                           " || '').includes('180deg')")
    chat.get_by_text("arguments").first.wait_for()
    chat.get_by_text("result", exact=True).first.wait_for()
    # (a full-page shot resizes the page, and the chatbot folds its steps again when it re-renders)
    _shot(page, artifacts, "preview_address_agent.png", full_page=False)
    assert "九堡镇" in chat.inner_text()
    assert "1 tool call" in page.locator("#preview-status").inner_text()
    # multi-turn with reset: the conversation goes away
    page.get_by_role("button", name="Reset conversation").click()
    page.wait_for_function("!document.querySelector('#preview-chat').innerText.includes('浙江省')")


@pytest.mark.model
def test_story_studio_fills_two_pages_with_pictures_and_narration(page, artifacts):
    page.get_by_role("tab", name="Story studio").click()
    page.get_by_label("Topic", exact=True).fill("a little fox who learns to share")
    page.get_by_role("button", name="Start the story").click()
    page.locator("#story-timeline li").first.wait_for()  # the team's messages, live
    book = page.locator("#story-book")
    page.wait_for_function("document.querySelectorAll('#story-book .raygent-page img').length === 2 && "
                           "document.querySelectorAll('#story-book .raygent-page audio').length === 2",
                           timeout=STEP_MS)
    page.get_by_text("Open the book").wait_for()
    assert book.locator(".raygent-page").count() == 2
    # the pictures are real images the page loaded, the recordings real WAV files
    widths = book.locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths), widths
    src = book.locator("audio").first.get_attribute("src")
    wav = httpx.get(page.url.rstrip("/") + src)
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    timeline = page.locator("#story-timeline").inner_text()
    assert "planner" in timeline and "illustrator" in timeline and "narrator" in timeline and "writer" in timeline
    _shot(page, artifacts, "story_studio_two_pages.png")


@pytest.fixture()
def landscape(tmp_path) -> str:
    """A real picture without a person: a landscape drawn by the offline image backend."""
    from raygent.imaging.offline import OfflineSceneBackend

    artifact = _run(OfflineSceneBackend().generate({"prompt": "green hills under a blue sky", "seed": 3}))
    path = tmp_path / "hills.png"
    shutil.copyfile(artifact.uri, path)
    return str(path)


def test_portrait_studio_shows_the_inspectors_refusal(page, artifacts, landscape):
    page.get_by_role("tab", name="Portrait studio").click()
    page.locator("#portrait-photos input[type=file]").set_input_files(landscape)
    page.get_by_text("hills.png").first.wait_for()  # uploaded
    page.get_by_label("The stylist reads the style with the model").uncheck()  # its word rules: no model call
    page.get_by_role("button", name="Make portraits").click()
    verdicts = page.locator("#portrait-verdicts")
    verdicts.get_by_text("refused").wait_for()
    text = verdicts.inner_text()
    assert "hills.png" in text and "no face" in text, text
    _shot(page, artifacts, "portrait_refused_no_face.png")


@pytest.mark.ray
def test_publish_serves_the_agent_with_a_key_and_the_remote_backend_uses_it(ray_cluster, page, artifacts, tmp_path):
    page.get_by_label("Name", exact=True).fill("calc-helper")
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="calc-model (scripted)").click()
    page.get_by_role("tab", name="Publish").click()
    page.get_by_role("button", name="Publish", exact=True).click()
    status = page.get_by_text("API key (shown once")
    status.wait_for()
    key = page.locator("code").filter(has_text="rgk_").first.inner_text().strip()
    assert key.startswith("rgk_")
    page.get_by_text("/v1/chat/completions").first.wait_for()
    _shot(page, artifacts, "publish_snippets.png")
    codes = page.locator(".cm-content").all_inner_texts()
    curl = next(c for c in codes if c.startswith("curl"))
    url = curl.split()[2].rsplit("/chat/completions", 1)[0]
    assert f"Bearer {key}" in curl and '"model": "calc-helper"' in curl

    # the snippet's call, by HTTP and by the openai SDK: the served agent answers with its tool
    body = {"model": "calc-helper", "messages": [{"role": "user", "content": "6*7"}]}
    assert httpx.post(f"{url}/chat/completions", json=body, timeout=60).status_code == 401  # a key is needed now
    reply = httpx.post(f"{url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert reply.status_code == 200 and '"result": 42' in reply.json()["choices"][0]["message"]["content"]
    import openai

    sdk = openai.OpenAI(base_url=url, api_key=key, max_retries=0).chat.completions.create(**body)
    assert sdk.model_extra["raygent"]["tool_calls"][0]["name"] == "calculator"

    # the remote backend: the same server through its URL and key (runs + SSE, sessions)
    from raygent.ui.config import AgentForm
    from raygent.ui.remote import RemoteBackend

    remote = RemoteBackend(url, key, out_dir=tmp_path)
    config = remote.config()
    assert "calc-helper" in config.agents and "calc-model" in config.models

    async def talk() -> list:
        form = AgentForm(name="calc-helper", model="calc-model")
        first = [e async for e in remote.chat("tab-1", form, "2**10")]
        second = [e async for e in remote.chat("tab-1", form, "1+1")]
        session = remote._sessions["tab-1"][1]
        await remote.reset("tab-1")
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as client:
            gone = await client.get(f"{url}/sessions/{session}")
        return [first, second, gone.status_code]

    first, second, gone = _run(talk())
    kinds = [e.type for e in first]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("done")
    assert first[-1].result.tool_calls[0].result["result"] == 1024
    assert second[-1].result.tool_calls[0].result["result"] == 2 and gone == 404
