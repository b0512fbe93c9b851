"""The artifact store: files become typed references with sizes and probed metadata."""

from __future__ import annotations

import io
import wave

import pytest

from raygent.toolhub.artifacts import ArtifactStore, default_artifact_dir


def _wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def test_save_bytes_probes_wav_duration(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.save_bytes(_wav_bytes(0.5), mime_type="audio/wav")
    assert art.kind == "audio" and art.uri.endswith(".wav")
    assert art.size_bytes == store.open_path(art).stat().st_size
    assert art.metadata["duration_s"] == 0.5 and art.metadata["sample_rate"] == 8000


def test_save_file_copies_and_keeps_source(tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text("hello")
    art = ArtifactStore(tmp_path / "store").save_file(src)
    assert art.kind == "file" and art.mime_type == "text/plain"
    assert src.read_text() == "hello"
    with pytest.raises(FileNotFoundError, match="is not a file"):
        ArtifactStore(tmp_path).save_file(tmp_path / "missing.png")


def test_default_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYGENT_ARTIFACTS", str(tmp_path / "a"))
    assert default_artifact_dir() == tmp_path / "a"
    monkeypatch.delenv("RAYGENT_ARTIFACTS")
    monkeypatch.setenv("RAYGENT_HOME", str(tmp_path / "h"))
    assert default_artifact_dir() == tmp_path / "h" / "artifacts"


def test_open_path_of_missing_artifact_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="artifact not found"):
        ArtifactStore(tmp_path).open_path(str(tmp_path / "nope.wav"))
