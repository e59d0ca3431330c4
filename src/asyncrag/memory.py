"""Allocator settings for the `asyncrag` command: memory a long ingest frees goes back to the system.

An ingest into Milvus Lite allocates and frees many short-lived buffers (gRPC messages, Arrow
tables while segments are sealed, LlamaIndex nodes). With the defaults, the C allocator keeps
what was freed, in up to 8 arenas per core, and pyarrow's jemalloc pool keeps its own: RSS only
grows. Measured on 120 python-doc pages (5,730 chunks, a hashing embedder, Lite, 2 cores):
peak RSS 768 MB with the defaults; 696 MB with Arrow on the system allocator; 651 MB adding
two arenas; 573-576 MB adding a 1 MiB trim threshold (docs/runtime-notes.md).

Only the command tunes them (a library must not change its host process's allocator), first
thing, before pyarrow is imported and before any thread exists; a value the user set wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
ARENAS = 2
TRIM_THRESHOLD = 1 << 20  # give the top of the heap back once 1 MiB of it is free


def tune_allocators() -> None:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # read when pyarrow is imported
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        return
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, ARENAS)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def main() -> None:
    """The `asyncrag` command: tune the allocators, then run the CLI."""
    tune_allocators()
    from asyncrag.cli import app

    app()
