"""A local GGUF chat model run by transformers: no compiler needed, slower than llama.cpp.

Converting the GGUF takes ~20 s on 2 cores, so the converted model is kept in a cache
folder (keyed by the GGUF's hash); later loads take under a second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from asyncrag.llm.base import Messages, stream_in_thread

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once and save it as a plain transformers folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are plain tensors now; transformers refuses to save "gguf-quantized"
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)  # atomic: a half-written folder is never mistaken for a model
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class TransformersGGUF:
    def __init__(self, gguf: Path, sha256: str, cache_dir: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = f"transformers:{gguf.name}"
        folder = cache_dir / f"{gguf.stem}-{sha256[:16]}"
        if not (folder / "config.json").is_file():
            _convert(gguf, folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder)

    def _generate(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        from threading import Thread

        from transformers import TextIteratorStreamer

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer)
        thread = Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        yield from (piece for piece in streamer if piece)
        thread.join()

    def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        return stream_in_thread(lambda: self._generate(messages, max_tokens))
