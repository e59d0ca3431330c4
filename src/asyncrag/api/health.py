"""Is the server alive, is it ready, and how is it doing: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from asyncrag.api import models as m
from asyncrag.api.deps import AdminDep, ApiError, ServerDep

READY_TIMEOUT_S = 5.0
public_router = APIRouter(tags=["health"])  # no key: a probe of liveness learns nothing about the data
router = APIRouter(tags=["health"])


@public_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": m.ErrorResponse}})
async def readyz(server: ServerDep) -> dict[str, Any]:
    """Readiness: Milvus answers and the models are loaded."""
    store = await server.rag.store()
    try:
        await asyncio.wait_for(asyncio.to_thread(store.client.has_collection, store.collection_name), READY_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - any failure means: not ready
        raise ApiError(503, "not_ready", f"Milvus does not answer: {type(e).__name__}") from None
    return {"status": "ready", "collection": store.collection_name, "llm": server.llm_name}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(server: AdminDep) -> Response:
    """Prometheus metrics (an admin's: they count every tenant's requests)."""
    return server.metrics.response()
