"""The key routes, an admin's: make, list and revoke keys over HTTP, as `asyncrag keys` does.

On Milvus Lite the running server holds the database (Lite serves one process), so `asyncrag keys`
cannot reach it while the server runs: these routes can. The server reads a change at once.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from asyncrag.api import models as m
from asyncrag.api.deps import AdminDep, ApiError, require_json

router = APIRouter(tags=["keys"], responses={403: {"model": m.ErrorResponse}})


@router.get("/v1/keys")
async def list_keys(server: AdminDep) -> m.KeyList:
    """Every key's name, role, tenant and date (never the key)."""
    return m.KeyList(keys=[m.KeyOut(**k.to_dict()) for k in await server.rag.keys()])


@router.post("/v1/keys", status_code=201, dependencies=[Depends(require_json)])
async def add_key(body: m.NewKey, server: AdminDep) -> m.KeyMade:
    """Make a key; the answer holds it, and nothing else ever will (only its hash is kept)."""
    key = await server.rag.add_key(body.name, body.role, body.tenant)
    server.keyring.expire()
    made = next(k for k in await server.rag.keys() if k.name == body.name)
    return m.KeyMade(**made.to_dict(), key=key)


@router.delete("/v1/keys/{name:any_text}", responses={404: {"model": m.ErrorResponse}})
async def revoke_key(name: str, server: AdminDep) -> m.KeyOut:
    """Revoke the key named `name`: it stops working at once on this server (within 5 s on others)."""
    found = [k for k in await server.rag.keys() if k.name == name]
    if not found or not await server.rag.revoke_key(name):
        raise ApiError(404, "not_found", f"no key named {name!r}: GET /v1/keys lists them")
    server.keyring.expire()
    return m.KeyOut(**found[0].to_dict())
