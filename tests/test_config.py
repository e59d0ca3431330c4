"""Settings precedence: flags (Settings.override) > ASYNCRAG_* env > the TOML file > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncrag.config import Settings
from asyncrag.errors import ConfigError
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


def test_a_config_file_named_by_env_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _toml(tmp_path, 'collection = "ignored"\n', name="asyncrag.toml")
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(tmp_path / "nope.toml"))  # a typo is reported, not ignored
    with pytest.raises(ConfigError, match=r"ASYNCRAG_CONFIG names .*nope\.toml, which is not a file"):
        Settings.load()


def test_an_empty_asyncrag_config_means_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _toml(tmp_path, 'collection = "ignored"\n', name="asyncrag.toml")
    monkeypatch.setenv("ASYNCRAG_CONFIG", "")
    assert Settings.load().collection == "asyncrag"


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
    changed = base.override(top_k=5, token="", llm="none", parse_workers=0)
    assert (changed.top_k, changed.token, changed.llm, changed.parse_workers) == (5, "", "none", 0)
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


# -- bad settings stop the run before any work, in one line (issue 8) ------------------------------


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("EMBED_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("CHUNK_SIZE", "-5", "greater than or equal to 16"),
        ("CHUNK_SIZE", "abc", "valid integer"),
        ("MAX_FILE_MB", "-1", "greater than 0"),
        ("TOP_K", "0", "greater than or equal to 1"),
        ("PARSE_WORKERS", "-1", "greater than or equal to 0"),
        ("CONSISTENCY_LEVEL", "strong", "'Strong', 'Session', 'Bounded' or 'Eventually'"),
        ("LLM", "gpt4all:x", "local, llamacpp, transformers, none, or openai:MODEL"),
        ("COLLECTION", "bad name-with-dash!", "letters, digits and underscores"),
        ("URI", "", "at least 1 character"),
    ],
)
def test_a_bad_env_setting_names_itself_its_source_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(f"ASYNCRAG_{name}", value)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid setting {name.lower()} = {value!r} (from ASYNCRAG_{name}): ")
    assert says in message


def test_a_bad_flag_is_named_as_an_option() -> None:
    with pytest.raises(ConfigError, match=r"invalid setting top_k = 0 \(given as an option\)"):
        Settings.load(top_k=0)
    with pytest.raises(ConfigError, match=r"invalid setting chunk_size = 3 \(given as an option\)"):
        Settings.load().override(chunk_size=3)


def test_unknown_and_bad_keys_in_the_toml_file_name_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _toml(tmp_path, "top_k = 4\nchunk_sise = 100\n")
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(path))
    with pytest.raises(ConfigError, match=rf"unknown setting 'chunk_sise' \(from {path}\); known settings: uri, "):
        Settings.load()
    path.write_text("top_k = -3\n")
    with pytest.raises(ConfigError, match=rf"invalid setting top_k = -3 \(from {path}\)"):
        Settings.load()


def test_malformed_toml_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _toml(tmp_path, "top_k = \n[[[\n")
    monkeypatch.setenv("ASYNCRAG_CONFIG", str(path))
    with pytest.raises(ConfigError, match=rf"^{path} is not valid TOML: .*line 1") as caught:
        Settings.load()
    assert "\n" not in str(caught.value)


def test_home_in_a_lite_uri_is_expanded_and_server_uris_are_kept() -> None:
    assert Settings.load(uri="~/x.db").uri == str(Path.home() / "x.db")
    assert Settings.load(uri="http://127.0.0.1:19530").uri == "http://127.0.0.1:19530"


def test_the_pipeline_limits_come_from_the_settings_of_the_same_names() -> None:
    from asyncrag.ingest.pipeline import Limits

    settings = Settings.load(
        embed_batch_size=8, parse_workers=2, pdf_pages_per_task=4, max_file_mb=5, max_concurrency=3, embed_rps=1.5
    )
    limits = Limits.from_settings(settings)
    assert (limits.embed_batch_size, limits.parse_workers, limits.pdf_pages_per_task) == (8, 2, 4)
    assert (limits.max_file_mb, limits.max_concurrency, limits.embed_rps) == (5, 3, 1.5)
    assert limits.flush_every_rows == 2000  # Milvus Lite: small segments keep its memory peak low
    assert Limits.from_settings(settings.override(uri="http://milvus:19530")).flush_every_rows is None
