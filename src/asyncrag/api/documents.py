"""The document routes: upload files (an ingest job), follow a job, list and delete documents, stats."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from asyncrag.api import models as m
from asyncrag.api.deps import ApiError, ServerDep, WriterDep
from asyncrag.api.jobs import MAX_JOBS_KEPT

router = APIRouter(tags=["documents"])



UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}


@router.post(
    "/v1/documents",
    status_code=202,
    openapi_extra=UPLOAD_BODY,
    responses={400: {"model": m.ErrorResponse}, 411: {"model": m.ErrorResponse}, 413: {"model": m.ErrorResponse}},
)
async def upload(request: Request, server: WriterDep) -> m.Job:
    """Upload files (multipart field `files`, one or more) → an ingest job; poll GET /v1/jobs/{id}.

    .txt .md .pdf .html .docx .pptx .xlsx .epub .csv .tsv .json, and images (.png .jpg .jpeg .tif
    .tiff .webp) and scanned PDF pages by OCR; a file that cannot be ingested is reported in the
    job's report.
    A writer's or admin's key; within a tenant, its quotas (documents, bytes) apply (403 past them).
    """
    opts = server.options
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "upload files as multipart/form-data, in the field 'files'")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():  # (one over the limit was refused before: api/guard.py)
        raise ApiError(411, "length_required", "send the upload with a Content-Length")
    async with request.form(max_files=opts.max_files, max_fields=opts.max_files) as form:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise ApiError(400, "invalid_request", "no files: send them in the multipart field 'files'")
        return await server.submit(uploads)


@router.get("/v1/jobs/{job_id}", responses={404: {"model": m.ErrorResponse}})
async def job(job_id: str, server: ServerDep) -> m.Job:
    """An ingest job's status, progress and, when done, its per-file report."""
    found = server.jobs.get(job_id, server.tenant)
    if found is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} (the server keeps the last {MAX_JOBS_KEPT})")
    return found


@router.get("/v1/documents")
async def documents(server: ServerDep) -> m.DocumentList:
    """Every document with a complete version (what searches show), with its chunk count.

    A document whose first version is still being written (or was left half-written by a crash)
    is not listed: its upload job tells how it goes.
    """
    stored = [d for d in await server.rag.documents() if d.hash]
    docs = [m.Document(id=server.source_name(d.doc_id), name=Path(d.doc_id).name, chunks=d.chunks) for d in stored]
    return m.DocumentList(documents=docs)


@router.delete(
    "/v1/documents/{doc_id:any_text}", responses={404: {"model": m.ErrorResponse}, 409: {"model": m.ErrorResponse}}
)
async def delete(doc_id: str, server: WriterDep) -> m.Deleted:
    """Delete a document's chunks and record (and, for an upload, its file), by its id as listed.
    A writer's or admin's key.

    The id is matched against the listed ones, never used as a path: nothing outside the
    collection's documents can be reached, whatever it holds.
    """
    matches = [d for d in await server.rag.documents() if server.source_name(d.doc_id) == doc_id]
    if not matches:
        raise ApiError(404, "not_found", f"no document {doc_id!r}: GET /v1/documents lists them")
    if len(matches) > 1:
        raise ApiError(409, "ambiguous", f"{len(matches)} documents are listed as {doc_id!r}: use `asyncrag delete`")
    (document,) = matches
    await server.rag.delete([document.doc_id])
    if document.doc_id.startswith(str(server.upload_root) + os.sep):
        Path(document.doc_id).unlink(missing_ok=True)
    return m.Deleted(id=doc_id, chunks=document.chunks)


@router.get("/v1/stats")
async def stats(server: ServerDep) -> m.Stats:
    """Documents, chunks, embedding model and dimension of the collection (within the caller's tenant)."""
    return m.Stats(**(await server.rag.stats()).to_dict())
