"""Settings: command-line flags > `ASYNCRAG_*` environment variables > a TOML config file > defaults.

The config file is `./asyncrag.toml` if present, or the file named by `ASYNCRAG_CONFIG` (which must
exist; set it empty for none). Every setting is validated when it is read: a bad one stops the run
before it touches stored data, with one line naming the setting, where it came from, and what is
allowed (`Settings.load`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from asyncrag.errors import ConfigError

ENV_PREFIX = "ASYNCRAG_"
LLM_NAMES = ("local", "llamacpp", "transformers", "none")
PositiveInt = Annotated[int, Field(ge=1)]
TOP_K_MAX = 1000  # the one limit for every caller (library, CLI, HTTP API): evaluations rank deep lists
TENANT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # a tenant's name (store/tenants.py)
TENANT_NAME_RULE = "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
SearchMode = Literal["auto", "dense", "sparse", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
AnswerMode = Literal["auto", "extract", "generate"]
OcrEngine = Literal["rapidocr", "tesseract", "off"]  # ingest/ocr.py


def config_file() -> Path | None:
    """The TOML file to read, or None; a file named by ASYNCRAG_CONFIG must exist."""
    named = os.environ.get("ASYNCRAG_CONFIG")
    if named is None:
        default = Path("asyncrag.toml")
        return default if default.is_file() else None
    if not named:
        return None
    path = Path(named).expanduser()
    if not path.is_file():
        raise ConfigError(f"ASYNCRAG_CONFIG names {named}, which is not a file: fix the path, or unset it")
    return path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_assignment=True)

    # Where the vectors live: a local path is Milvus Lite; http(s)://... a Milvus server or Zilliz Cloud.
    uri: str = Field("./asyncrag.db", min_length=1)
    token: str = Field("", repr=False)
    collection: str = Field("asyncrag", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    consistency_level: Literal["Strong", "Session", "Bounded", "Eventually"] = "Strong"
    # Work within one tenant of a shared collection (store/tenants.py); None: the whole collection.
    tenant: str | None = Field(None, pattern=f"^{TENANT_NAME}$")
    # Per-tenant quotas on what `serve` accepts (documents stored, their bytes); None: no limit.
    tenant_max_documents: int | None = Field(None, ge=1)
    tenant_max_mb: float | None = Field(None, gt=0)

    # "minilm" (bundled all-MiniLM-L6-v2), a local sentence-transformers folder, or "openai:MODEL".
    embed_model: str = Field("minilm", min_length=1)
    embed_batch_size: int = Field(64, ge=1, le=4096)  # chunks handed to the embedder at a time
    max_concurrency: int = Field(1, ge=1, le=64)  # embedding calls in flight (more helps a remote endpoint)
    embed_rps: float | None = Field(None, gt=0)  # at most this many embedding calls a second (a remote quota)
    # None: 128 tokens of the embedding model's own, or its window if smaller (ingest/chunk.py says why).
    chunk_size: int | None = Field(None, ge=16, le=32768)
    chunk_overlap: int = Field(32, ge=0)  # capped at a quarter of chunk_size

    # "local" (llama.cpp if installed, else transformers), "llamacpp", "transformers", "openai:MODEL", "none".
    llm: str = "local"
    # "extract": quote the sentences that answer, cited [n] (query/extract.py); "generate": the LLM
    # writes the answer, checked before it is shown (query/check.py); "auto": generate with an
    # openai: model, extract otherwise (the bundled model's answers were wrong: docs/architecture.md, "Answers").
    answer_mode: AnswerMode = "auto"
    max_answer_tokens: int = Field(200, ge=1, le=32768)
    top_k: int = Field(3, ge=1, le=TOP_K_MAX)  # small local LLMs answer best from few sources
    # "auto": hybrid (dense + BM25, fused) where the collection has a BM25 field, else dense.
    search_mode: SearchMode = "auto"
    bm25: bool = True  # new collections get a BM25 field where the server has BM25 (Milvus Lite, Milvus >= 2.5)

    # 0: parse in one thread beside the embedder (fastest when parsing is light: PDFium is C);
    # N: N parser processes, for corpora whose parsing is heavy pure Python (HTML).
    parse_workers: int = Field(0, ge=0, le=256)
    pdf_pages_per_task: PositiveInt = 16
    # Scanned PDF pages and images: "rapidocr" (bundled), "tesseract" (apt-get install tesseract-ocr), "off".
    ocr: OcrEngine = "rapidocr"
    pdf_tables: bool = True  # a PDF page's ruled tables as Markdown tables; False: PDFium's loose lines
    max_file_mb: float = Field(100, gt=0)
    # Ingest on a Ray cluster (ingest/on_ray.py): "local" (start one here), "auto" (the one running
    # here, or RAY_ADDRESS), or its address; None: in this process. Needs a Milvus server.
    ray: str | None = Field(None, min_length=1)
    ray_embed_actors: int = Field(0, ge=0, le=10_000)  # at most this many embedding actors (0: as resources allow)
    ray_embed_cpus: float = Field(1.0, gt=0, le=256)  # CPUs per embedding actor (its model's worker threads)
    ray_gpus: float = Field(0.0, ge=0, le=64)  # GPUs per embedding actor (0: none)
    ray_writers: int = Field(2, ge=1, le=256)  # writer actors, each with its own Milvus clients

    @field_validator("uri")
    @classmethod
    def _expand_home(cls, uri: str) -> str:
        return uri if "://" in uri else os.path.expanduser(uri)

    @field_validator("collection")
    @classmethod
    def _not_a_manifest(cls, collection: str) -> str:
        for suffix, what in (("__documents", "document records"), ("__keys", "API keys")):
            if collection.endswith(suffix):
                raise ValueError(f"names ending in {suffix} are reserved for asyncrag's {what}")
        return collection

    @field_validator("llm")
    @classmethod
    def _known_llm(cls, llm: str) -> str:
        if llm in LLM_NAMES or (llm.startswith("openai:") and len(llm) > len("openai:")):
            return llm
        raise ValueError(f"must be one of {', '.join(LLM_NAMES)}, or openai:MODEL")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Settings from every source, with `flags` on top (None means 'not given').

        Raises ConfigError, one line naming the bad setting and its source.
        """
        given = {k: v for k, v in flags.items() if v is not None}
        try:
            return cls(**given)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{config_file()} is not valid TOML: {e}") from None
        except ValidationError as e:
            raise ConfigError(_describe(e, given)) from None

    def override(self, **flags: Any) -> Settings:
        """These settings with the flags a user actually gave (None means 'not given'), validated."""
        given = {k: v for k, v in flags.items() if v is not None}
        if not given:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **given})
        except ValidationError as e:
            raise ConfigError(_describe(e, given)) from None


def _source(name: str, given: dict[str, Any]) -> str:
    if name in given:
        return "given as an option"
    env = ENV_PREFIX + name.upper()
    if any(key.upper() == env for key in os.environ):
        return f"from {env}"
    path = config_file()
    return f"from {path}" if path is not None else "default"


def _describe(error: ValidationError, given: dict[str, Any]) -> str:
    """The first problem as one line: 'chunk_size = -5 (from ASYNCRAG_CHUNK_SIZE): ...'."""
    first: ErrorDetails = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    name = str(first["loc"][0])
    if first["type"] == "extra_forbidden":
        known = ", ".join(Settings.model_fields)
        return f"unknown setting {name!r} ({_source(name, given)}); known settings: {known}"
    if first["type"] == "string_pattern_mismatch" and name == "collection":
        message = "use letters, digits and underscores, starting with a letter or underscore"
    if first["type"] == "string_pattern_mismatch" and name == "tenant":
        message = TENANT_NAME_RULE
    return f"invalid setting {name} = {first['input']!r} ({_source(name, given)}): {message}"
