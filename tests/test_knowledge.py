"""Knowledge QA: ingest txt / md / html / pdf, chunk with overlap, search with citations, persist under
RAYGENT_HOME, the knowledge_search tool in an agent, the CLI, and the retriever as a Ray actor."""

from __future__ import annotations

import json

import pytest

from raygent import Agent
from raygent.cli import main as cli_main
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.retrieval.documents import chunk_text, html_to_text, read_document
from raygent.retrieval.knowledge import KnowledgeRetriever, KnowledgeSearchTool, format_context


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF (Helvetica text, one line per page) with a correct xref table."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    font_id = 3 + 2 * n_pages
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for num, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{num} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "leave.txt").write_text("Employees get 25 days of paid annual leave per year. Unused leave expires "
                                      "on March 31 of the following year.")
    (folder / "sub" / "travel.md").write_text("# Travel policy\n\nTrain tickets are reimbursed in second class. "
                                              "Flights need approval from a director.")
    (folder / "office.html").write_text("<html><head><style>.x{color:red}</style><script>var a=1;</script></head>"
                                        "<body><h1>Office</h1><p>The Hangzhou office is open from 9:00 to 18:00."
                                        "</p><p>Visitors sign in at the front desk.</p></body></html>")
    (folder / "handbook.pdf").write_bytes(make_pdf(["Welcome to the company handbook.",
                                                    "Remote work is allowed two days per week."]))
    (folder / "公司简介.txt").write_text("我们公司成立于二零一五年，总部位于杭州，主要从事人工智能研发。")
    (folder / "image.png").write_bytes(b"\x89PNG not a document")
    return folder


def test_readers_and_chunking(docs):
    assert [s.page for s in read_document(docs / "handbook.pdf")] == [1, 2]
    assert "Remote work is allowed two days per week." in read_document(docs / "handbook.pdf")[1].text
    html = html_to_text((docs / "office.html").read_text())
    assert "color" not in html and "var a" not in html and "Hangzhou office is open" in html
    with pytest.raises(ValueError, match="unsupported document type '.png'"):
        read_document(docs / "image.png")
    text = " ".join(f"Sentence number {i} of a long document." for i in range(200))
    chunks = chunk_text(text, size=300, overlap=60)
    assert len(chunks) > 10 and all(len(c) <= 300 for c in chunks)
    assert all(c.endswith(".") for c in chunks[:-1])  # cut at sentence ends
    assert chunks[1][:20] in chunks[0]  # consecutive chunks overlap
    zh = "人工智能正在改变世界。" * 100
    zh_chunks = chunk_text(zh, size=200, overlap=40)
    assert all(c.endswith("。") for c in zh_chunks[:-1]) and "".join(zh_chunks).count("人工智能") > 100


async def test_ingest_search_cite_and_persist(docs, tmp_path):
    kb = KnowledgeRetriever(tmp_path / "kb", chunk_chars=200, overlap=40)
    report = await kb.add_path(docs)
    assert report["files"] == 5 and report["errors"] == [] and report["total_chunks"] >= 6
    [top] = await kb.search("how many days of paid annual leave do I get?", 1)
    assert top.citation == "leave.txt#chunk0" and "25 days" in top.text
    [top] = await kb.search("can I work remotely from home?", 1)
    assert top.citation == "handbook.pdf#chunk1, p. 2" and top.page == 2
    [top] = await kb.search("when does the Hangzhou office open?", 1)
    assert top.source.endswith("office.html")
    [top] = await kb.search("公司总部在哪里？", 1)
    assert top.citation == "公司简介.txt#chunk0"
    assert "[leave.txt#chunk0]" in format_context(await kb.search("annual leave", 1))

    again = await kb.add_path(docs)  # unchanged files are not re-ingested
    assert again["files"] == 0 and again["unchanged"] == 5
    (docs / "leave.txt").write_text("Employees get 30 days of paid annual leave per year.")
    assert (await kb.add_path(docs / "leave.txt"))["files"] == 1

    reopened = KnowledgeRetriever(tmp_path / "kb")
    [top] = await reopened.search("how many days of paid annual leave do I get?", 1)
    assert "30 days" in top.text and await reopened.count() == await kb.count()
    assert await reopened.remove_source(str(docs / "leave.txt"))
    assert all("leave" not in c.source for c in await reopened.search("annual leave", 5))


async def test_agent_answers_from_the_knowledge_base_with_citations(docs, tmp_path):
    kb = KnowledgeRetriever(tmp_path / "kb2")
    await kb.add_path(docs)
    call = ('<tool_call>\n{"name": "knowledge_search", "arguments": {"query": "train ticket reimbursement"}}'
            '\n</tool_call>')
    llm = ScriptedChatModel([call, "Train tickets are reimbursed in second class [travel.md#chunk0]."])
    result = await Agent(llm=llm, tools=[KnowledgeSearchTool(kb)]).run("Which train class is reimbursed?")
    out = result.tool_calls[0].result["results"]
    assert out[0]["citation"] == "travel.md#chunk0" and "second class" in out[0]["text"]
    assert "travel.md#chunk0" in llm.requests[1]["messages"][-1].content  # the model saw the citation


def test_cli_knowledge_add_search_and_run_flag(docs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path / "home"))
    assert cli_main(["knowledge", "add", str(docs), "--kb", "handbook", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 5 and report["folder"] == str(tmp_path / "home" / "knowledge" / "handbook")
    assert cli_main(["knowledge", "search", "paid annual leave", "--kb", "handbook", "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["citation"] == "leave.txt#chunk0"
    assert cli_main(["knowledge", "list", "--kb", "handbook"]) == 0
    assert "handbook.pdf" in capsys.readouterr().out
    # --knowledge with a base that does not exist fails with the command that creates it
    assert cli_main(["run", "hi", "--knowledge", "nope"]) == 1
    assert "raygent knowledge add PATH --kb nope" in capsys.readouterr().err


@pytest.mark.ray
async def test_knowledge_retriever_as_actor_and_tool_pickles(ray_cluster, docs, tmp_path):
    import pickle

    from raygent import runtime

    folder = tmp_path / "kb3"
    await KnowledgeRetriever(folder).add_path(docs)
    proxy = runtime.deploy(KnowledgeRetriever, remote=True, init_kwargs={"kb": str(folder)})
    try:
        [top] = await proxy.search("remote work days", 1)
        assert top.citation == "handbook.pdf#chunk1, p. 2"
        tool = KnowledgeSearchTool(proxy)
        assert (await tool.call("visitors front desk"))["results"][0]["citation"].startswith("office.html")
    finally:
        runtime.kill(proxy)
    by_name = KnowledgeSearchTool(kb=str(folder))
    await by_name.call("leave")
    clone = pickle.loads(pickle.dumps(by_name))  # reopens from disk instead of shipping the index
    assert clone._retriever is None and (await clone.call("leave"))["results"]
