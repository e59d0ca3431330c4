"""Settings: command-line flags > `ASYNCRAG_*` environment variables > a TOML config file > defaults.

The config file is `./asyncrag.toml`, or the path in `ASYNCRAG_CONFIG`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _config_file() -> Path:
    return Path(os.environ.get("ASYNCRAG_CONFIG", "asyncrag.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASYNCRAG_", extra="ignore")

    # Where the vectors live: a local path is Milvus Lite; http(s)://... a Milvus server or Zilliz Cloud.
    uri: str = "./asyncrag.db"
    token: str = ""
    collection: str = "asyncrag"
    consistency_level: str = "Strong"

    # "minilm" (bundled all-MiniLM-L6-v2), a local sentence-transformers folder, or "openai:MODEL".
    embed_model: str = "minilm"
    embed_batch_size: int = 64  # chunks handed to the embedder at a time
    # None: fit the embedding model's window (its max sequence length, in its own tokens).
    chunk_size: int | None = None
    chunk_overlap: int = 32

    # "local" (bundled SmolLM2 via transformers), "llamacpp", "openai:MODEL", or "none".
    llm: str = "local"
    max_answer_tokens: int = 200
    top_k: int = 3  # small local LLMs answer best from few sources

    # 0: parse in one thread beside the embedder (fastest when parsing is light: PDFium is C);
    # N: N parser processes, for corpora whose parsing is heavy pure Python (HTML).
    parse_workers: int = 0
    pdf_pages_per_task: int = 16
    max_file_mb: int = 100

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _config_file()))

    def override(self, **flags: Any) -> Settings:
        """These settings with the flags a user actually gave (None means 'not given')."""
        given = {k: v for k, v in flags.items() if v is not None}
        return self.model_copy(update=given) if given else self
