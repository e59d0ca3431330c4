"""A local GGUF chat model run by transformers: no compiler needed, slower than llama.cpp."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from asyncrag.llm.base import Messages, stream_in_thread

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class TransformersGGUF:
    def __init__(self, gguf: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = f"transformers:{gguf.name}"
        self.tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        self.model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)

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
