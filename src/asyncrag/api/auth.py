"""Who is asking: a request's bearer key → the `Key` it is (a role, a tenant), or None.

The server accepts the collection's stored keys (store/keys.py, made with `asyncrag keys add`)
and its `ASYNCRAG_API_KEY`, an admin's key without a tenant, as before keys had roles. With
neither, the server is open, as it always was: every caller is an admin of the whole collection.
Stored keys are re-read at most every `REFRESH_S` seconds, so a revoked key stops working
within that time, and an unknown key costs a dictionary probe, never a Milvus query.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from pymilvus import MilvusClient

from asyncrag.store import keys
from asyncrag.store.keys import Key

log = logging.getLogger(__name__)
REFRESH_S = 5.0
TENANT_HEADER = "x-asyncrag-tenant"  # an admin acting within one tenant
ENV_KEY = Key("ASYNCRAG_API_KEY", "admin", None, 0.0)
NO_KEYS = Key("anyone (no keys are set)", "admin", None, 0.0)


def bearer(authorization: str) -> str:
    scheme, _, given = authorization.partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


class KeyRing:
    """The keys a server accepts; `caller` answers for each request."""

    def __init__(self, client: MilvusClient | None, collection: str) -> None:
        self.client, self.collection = client, collection
        self._keys: dict[str, Key] = {}
        self._loaded = -REFRESH_S
        self._lock = asyncio.Lock()

    async def caller(self, authorization: str, api_key: str | None) -> Key | None:
        """The key the `Authorization` header carries (`api_key`: the server's ASYNCRAG_API_KEY);
        None when it carries none the server knows."""
        await self._refresh()
        if api_key is None and not self._keys:
            return NO_KEYS
        given = bearer(authorization)
        if api_key is not None and hmac.compare_digest(given.encode(), api_key.encode()):
            return ENV_KEY
        return self._keys.get(keys.digest(given)) if given else None

    def expire(self) -> None:
        """Read the keys again before the next request (they were just changed)."""
        self._loaded = -REFRESH_S

    async def _refresh(self) -> None:
        if self.client is None or time.monotonic() - self._loaded < REFRESH_S:
            return
        async with self._lock:
            if time.monotonic() - self._loaded >= REFRESH_S:
                try:
                    self._keys = await asyncio.to_thread(keys.stored, self.client, self.collection)
                except Exception as e:  # noqa: BLE001 - Milvus away: keep the keys known, try again later
                    log.warning("could not re-read the API keys (%s); keeping the %d known", e, len(self._keys))
                self._loaded = time.monotonic()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
