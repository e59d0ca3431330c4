"""Settings precedence: flags (Settings.override) > ASYNCRAG_* env > the TOML file > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncrag.config import Settings
from asyncrag.rag import AsyncRAG


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ASYNCRAG_* from the caller's shell, and no ./asyncrag.toml from the repo."""
    for name in list(os.environ):
        if name.startswith("ASYNCRAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _toml(tmp_path: Path, body: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_defaults() -> None:
    s = Settings()
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert s.model_dump() == defaults  # nothing from env or a file leaked in
    assert s.uri == "./asyncrag.db"
    assert s.collection == "asyncrag"
    assert s.embed_model == "minilm"
    assert s.llm == "local"
    assert s.chunk_size is None
    assert s.max_file_mb == 100
    assert s.consistency_level == "Strong"


def test_toml_named_by_env_beats_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _toml(tmp_path, 'collection = "from_toml"\ntop_k = 9\nchunk_size = 128\nllm = "none"\n')
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(path))
    s = Settings()
    assert (s.collection, s.top_k, s.chunk_size, s.llm) == ("from_toml", 9, 128, "none")
    assert s.uri == "./asyncrag.db"  # what the file does not set keeps its default


def test_default_config_file_is_asyncrag_toml_in_cwd(tmp_path: Path) -> None:
    _toml(tmp_path, 'collection = "cwd_toml"\n', name="asyncrag.toml")
    assert Settings().collection == "cwd_toml"


def test_missing_config_file_means_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _toml(tmp_path, 'collection = "ignored"\n', name="asyncrag.toml")
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(tmp_path / "nope.toml"))  # names another file: cwd's is not read
    assert Settings().collection == "asyncrag"


def test_env_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _toml(tmp_path, 'collection = "from_toml"\ntop_k = 9\nuri = "toml.db"\n')
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(path))
    monkeypatch.setenv("ASYNCRAG_COLLECTION", "from_env")
    monkeypatch.setenv("ASYNCRAG_TOP_K", "3")
    s = Settings()
    assert s.collection == "from_env"
    assert s.top_k == 3  # env strings are parsed into the field's type
    assert s.uri == "toml.db"  # not in env: the file still counts


def test_env_names_are_case_insensitive_prefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCRAG_MAX_FILE_MB", "7")
    monkeypatch.setenv("COLLECTION", "unprefixed")  # not ours
    s = Settings()
    assert s.max_file_mb == 7
    assert s.collection == "asyncrag"


def test_flags_beat_env_and_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _toml(tmp_path, 'collection = "from_toml"\ntop_k = 9\nllm = "none"\n')
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(path))
    monkeypatch.setenv("ASYNCRAG_COLLECTION", "from_env")
    s = Settings().override(collection="from_flag", top_k=None, uri=None)
    assert s.collection == "from_flag"
    assert s.top_k == 9  # None means "flag not given"
    assert s.llm == "none"
    assert s.uri == "./asyncrag.db"


def test_override_returns_a_copy_and_keeps_falsy_flags() -> None:
    base = Settings()
    changed = base.override(top_k=0, token="", llm="none")
    assert (changed.top_k, changed.token, changed.llm) == (0, "", "none")
    assert base.llm == "local"  # the original is unchanged
    assert base.override() is base


def test_invalid_env_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCRAG_TOP_K", "many")
    with pytest.raises(ValueError, match="top_k"):
        Settings()


def test_asyncrag_applies_overrides_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCRAG_COLLECTION", "from_env")
    monkeypatch.setenv("ASYNCRAG_LLM", "none")
    rag = AsyncRAG(collection="from_kwarg", top_k=None)
    assert rag.settings.collection == "from_kwarg"
    assert rag.settings.llm == "none"
    explicit = AsyncRAG(Settings(collection="explicit"), top_k=2)
    assert (explicit.settings.collection, explicit.settings.top_k) == ("explicit", 2)
