"""Uploads, ingest jobs and the documents they make.

An upload is stored as `<upload dir>/<job id>/<sanitised name>`: the server picks every path
component, so no client-given name can point anywhere else. The library's document id is the
file's path; the API shows it without the upload dir (`<job id>/<name>`). Jobs run one at a time
(they share the embedder and the CPU) and live in memory: the only state the server keeps.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from asyncrag.api import models as m
from asyncrag.api.deps import ApiError, ServerDep
from asyncrag.errors import AsyncRAGError
from asyncrag.results import IngestReport

if TYPE_CHECKING:
    from asyncrag.api.deps import Server

log = logging.getLogger(__name__)
MAX_NAME_CHARS = 120
MAX_JOBS_KEPT = 1000
router = APIRouter(tags=["documents"])


def safe_name(name: str | None) -> str:
    """A client's file name reduced to a plain name in one folder: no separators, no leading dots."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^\w.\- ]", "_", base).strip(" .")
    if len(base) > MAX_NAME_CHARS:
        stem, dot, suffix = base.rpartition(".")
        base = (
            stem[: MAX_NAME_CHARS - len(suffix) - 1] + dot + suffix
            if dot and len(suffix) < 10
            else base[:MAX_NAME_CHARS]
        )
    return base or "upload"


class Jobs:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._jobs: dict[str, m.Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._one_at_a_time = asyncio.Lock()

    def get(self, job_id: str) -> m.Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id!r} (jobs live in the server's memory until it restarts)")
        return job

    async def submit(self, uploads: list[UploadFile]) -> m.Job:
        """Store the uploads under a new job's folder and start ingesting them."""
        job_id = secrets.token_hex(8)
        folder = self.server.upload_root / job_id
        paths = await asyncio.to_thread(_save, folder, uploads)
        job = m.Job(id=job_id, status="queued", files=[f"{job_id}/{p.name}" for p in paths], files_total=len(paths))
        self._jobs[job_id] = job
        self._forget_old()
        self._tasks[job_id] = asyncio.ensure_future(self._run(job, paths))
        return job

    async def _run(self, job: m.Job, paths: list[Path]) -> None:
        try:
            async with self._one_at_a_time:
                job.status = "running"
                report = await self.server.rag.ingest(list(paths), on_progress=lambda *p: _progress(job, *p))
        except AsyncRAGError as e:
            job.status, job.error = "failed", self.server.public(str(e))
        except Exception:
            log.exception("ingest job %s failed", job.id)
            job.status, job.error = "failed", "internal error; the server logged it"
        else:
            job.status = "done"
            job.report = self._report_out(report)
            job.files_done, job.chunks = len(paths), report.chunks
            for failure in report.failures:  # the folder holds what the collection holds
                Path(failure.path).unlink(missing_ok=True)
            self.server.metrics.ingested("done", report)
        finally:
            self._tasks.pop(job.id, None)
            if job.status == "failed":
                self.server.metrics.ingested("failed", None)

    def _report_out(self, report: IngestReport) -> m.IngestReportOut:
        data: dict[str, Any] = report.to_dict()
        for failure in data["failures"]:
            failure["path"] = self.server.public(failure["path"])
        return m.IngestReportOut(**data)

    def _forget_old(self) -> None:
        finished = [i for i, j in self._jobs.items() if j.status not in ("queued", "running")]
        for job_id in finished[: max(0, len(self._jobs) - MAX_JOBS_KEPT)]:
            del self._jobs[job_id]

    async def aclose(self) -> None:
        """Shutdown: queued jobs are cancelled (their files removed), the running one finishes."""
        queued = [job for job in self._jobs.values() if job.status == "queued"]
        for job in queued:
            self._tasks[job.id].cancel()  # a task cancelled before it starts never runs a line of _run
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for job in queued:
            job.status = "cancelled"
            shutil.rmtree(self.server.upload_root / job.id, ignore_errors=True)
            self.server.metrics.ingested("cancelled", None)


def _progress(job: m.Job, done: int, total: int, chunks: int) -> None:
    job.files_done, job.chunks = done, chunks


def _save(folder: Path, uploads: list[UploadFile]) -> list[Path]:
    folder.mkdir(parents=True)
    paths: list[Path] = []
    for upload in uploads:
        name = safe_name(upload.filename)
        path = folder / name
        n = 1
        while path.exists():  # two uploads of one name in one request
            n += 1
            stem, dot, suffix = name.rpartition(".")
            path = folder / (f"{stem}-{n}.{suffix}" if dot else f"{name}-{n}")
        with path.open("xb") as out:
            shutil.copyfileobj(upload.file, out)
        paths.append(path)
    return paths


# -- routes --------------------------------------------------------------------------------------

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
async def upload(request: Request, server: ServerDep) -> m.Job:
    """Upload files (multipart field `files`, one or more) → an ingest job; poll GET /v1/jobs/{id}.

    .txt .md .pdf .html .docx; a file that cannot be ingested is reported in the job's report.
    """
    opts = server.options
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "upload files as multipart/form-data, in the field 'files'")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "length_required", "send the upload with a Content-Length")
    if int(length) > opts.max_upload_mb * 2**20:
        raise ApiError(413, "too_large", f"the upload is over the limit of {opts.max_upload_mb:g} MiB per request")
    async with request.form(max_files=opts.max_files, max_fields=opts.max_files) as form:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise ApiError(400, "invalid_request", "no files: send them in the multipart field 'files'")
        return await server.jobs.submit(uploads)


@router.get("/v1/jobs/{job_id}", responses={404: {"model": m.ErrorResponse}})
async def job(job_id: str, server: ServerDep) -> m.Job:
    """An ingest job's status, progress and, when done, its per-file report."""
    return server.jobs.get(job_id)


@router.get("/v1/documents")
async def documents(server: ServerDep) -> m.DocumentList:
    """Every document in the collection, with its chunk count (from the collection's document records)."""
    stored = await server.rag.documents()
    docs = [m.Document(id=server.public(d.doc_id), name=Path(d.doc_id).name, chunks=d.chunks) for d in stored]
    return m.DocumentList(documents=docs)


@router.delete("/v1/documents/{doc_id:path}", responses={404: {"model": m.ErrorResponse}})
async def delete(doc_id: str, server: ServerDep) -> m.Deleted:
    """Delete a document's chunks and record (and, for an upload, its file)."""
    uploaded = (server.upload_root / doc_id).resolve()
    managed = uploaded.is_relative_to(server.upload_root) and uploaded != server.upload_root
    source = str(uploaded) if managed else doc_id
    known = {d.doc_id: d for d in await server.rag.documents()}
    if source not in known:
        raise ApiError(404, "not_found", f"no document {doc_id!r}: GET /v1/documents lists them")
    await server.rag.delete([source])
    if managed:
        uploaded.unlink(missing_ok=True)
    return m.Deleted(id=doc_id, chunks=known[source].chunks)
