"""Creating a collection's indexes without pymilvus's fixed sleep.

pymilvus's `create_index` (and so `create_collection(index_params=...)`) sleeps 0.5 s before its
first look at the index's state. A collection of asyncrag has up to three indexes (dense, BM25, and
its document records'), all on empty collections, which Milvus finishes at once: 1.5 s of sleep
per collection, most of the test suite's wall time. Here the index is asked for without waiting,
and its state is polled from the first millisecond, backing off to the same 0.5 s.
"""

from __future__ import annotations

import time

from pymilvus import MilvusClient
from pymilvus.milvus_client.index import IndexParams

from asyncrag.errors import StoreError

FIRST_POLL_S = 0.002
MAX_POLL_S = 0.5
TIMEOUT_S = 120.0


def create_indexes(client: MilvusClient, collection: str, index_params: IndexParams, *, load: bool = True) -> None:
    """Create every index of `index_params` on `collection`, wait until each is built, then load it."""
    client.create_index(collection, index_params, sync=False)
    deadline = time.monotonic() + TIMEOUT_S
    for index in index_params:
        delay = FIRST_POLL_S
        while True:
            state = client.describe_index(collection, index.index_name).get("state", "Finished")
            if state == "Finished":
                break
            if state == "Failed":
                raise StoreError(f"Milvus could not build the index {index.index_name!r} of {collection!r}")
            if time.monotonic() > deadline:
                raise StoreError(f"Milvus did not build the index {index.index_name!r} of {collection!r} in time")
            time.sleep(delay)
            delay = min(delay * 2, MAX_POLL_S)
    if load:
        client.load_collection(collection)
