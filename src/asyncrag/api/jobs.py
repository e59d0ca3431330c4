"""Uploads and the ingest jobs that index them (the routes are in `documents.py`).

An upload is stored as `<upload dir>/<job id>/<sanitised name>`: the server picks every path
component, so no client-given name can point anywhere else. The library's document id is the
file's path; the API shows it without the upload dir (`<job id>/<name>`). Jobs run one at a time
(they share the embedder and the CPU) and live in memory: the only state the server keeps.
No routes or HTTP errors here: `deps.Server` owns a `Jobs`, so this module must not import `deps`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile

from asyncrag.api import models as m
from asyncrag.api.metrics import Metrics
from asyncrag.errors import AsyncRAGError
from asyncrag.ingest.pipeline import IngestProgress
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport

log = logging.getLogger(__name__)
MAX_NAME_BYTES = 200  # a file system's limit is 255 bytes; room for the "-2" of a second upload of one name
MAX_JOBS_KEPT = 1000
STATE_FILE = ".job.json"  # in the job's folder; never an upload's name (safe_name strips leading dots)


def safe_name(name: str | None) -> str:
    """A client's file name reduced to a plain name in one folder: no separators, no leading dots,
    at most `MAX_NAME_BYTES` of UTF-8 (100 CJK characters are 300), its suffix kept."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^\w.\- ]", "_", base).strip(" .")
    if len(base.encode()) > MAX_NAME_BYTES:
        suffix = base.rpartition(".")[2] if "." in base else ""
        tail = "." + suffix if suffix and len(suffix) < 10 else ""
        head = base[: len(base) - len(tail)]
        base = head.encode()[: MAX_NAME_BYTES - len(tail.encode())].decode(errors="ignore") + tail
    return base or "upload"


class Jobs:
    """The server's ingest jobs: each one stores its uploads, then ingests them into `rag`."""

    def __init__(self, rag: AsyncRAG, upload_root: Path, metrics: Metrics, public: Callable[[str], str]) -> None:
        self.rag = rag
        self.upload_root = upload_root
        self.metrics = metrics
        self.public = public  # what a client may see of a path or message (`Server.public`)
        self._jobs: dict[str, m.Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.turn = asyncio.Lock()  # one ingest at a time: each job, and each run of `serve --watch`

    def resume(self) -> None:
        """Take up the jobs an earlier server left (each job's state is kept in its folder).

        Finished ones are listed again; queued or running ones (the server was stopped hard) run
        again: ingesting is incremental, so what was complete is kept, and a half-written
        document is redone (searches never showed it: `Collection.visible`). A folder left
        without a state (stopped between storing the uploads and recording the job) is removed.
        """
        if not self.upload_root.is_dir():
            return
        states = []
        for folder in self.upload_root.iterdir():
            state = folder / STATE_FILE
            if folder.is_dir() and re.fullmatch(r"[0-9a-f]{16}", folder.name):
                if state.is_file():
                    states.append((state.stat().st_mtime, state))
                else:
                    log.warning("removing %s: uploads of a job that was never recorded", folder.name)
                    shutil.rmtree(folder, ignore_errors=True)
        for _, state in sorted(states)[-MAX_JOBS_KEPT:]:
            try:
                job = m.Job.model_validate_json(state.read_bytes())
            except (OSError, ValueError) as e:
                log.warning("cannot read the state of job %s (%s); leaving it", state.parent.name, e)
                continue
            self._jobs[job.id] = job
            if job.status in ("queued", "running"):
                log.info("resuming job %s (%d files)", job.id, job.files_total)
                job.status = "queued"
                paths = [p for f in job.files if (p := self.upload_root / f).is_file()]
                self._tasks[job.id] = asyncio.ensure_future(self._run(job, paths))

    def get(self, job_id: str, tenant: str | None) -> m.Job | None:
        """The job, as `tenant` may see it (None: the whole collection), or None: never made, another
        tenant's, or forgotten (past `MAX_JOBS_KEPT` jobs the oldest finished ones go)."""
        job = self._jobs.get(job_id)
        return job if job is not None and tenant in (None, job.tenant) else None

    def pending(self, tenant: str | None) -> tuple[int, int]:
        """Files and bytes of `tenant`'s jobs not yet done (what a quota must count beside the stored)."""
        paths = [
            self.upload_root / name
            for job in self._jobs.values()
            if job.tenant == tenant and job.status in ("queued", "running")
            for name in job.files
        ]
        return len(paths), sum(p.stat().st_size for p in paths if p.is_file())

    async def submit(self, uploads: list[UploadFile], tenant: str | None = None) -> m.Job:
        """Store the uploads under a new job's folder and start ingesting them into `tenant`'s documents."""
        job_id = secrets.token_hex(8)
        folder = self.upload_root / job_id
        paths = await asyncio.to_thread(_save, folder, uploads)
        files = [f"{job_id}/{p.name}" for p in paths]
        job = m.Job(id=job_id, status="queued", tenant=tenant, files=files, files_total=len(paths))
        await asyncio.to_thread(self._keep, job)
        self._jobs[job_id] = job
        self._forget_old()
        self._tasks[job_id] = asyncio.ensure_future(self._run(job, paths))
        return job

    async def _run(self, job: m.Job, paths: list[Path]) -> None:
        try:
            async with self.turn:
                job.status = "running"
                await asyncio.to_thread(self._keep, job)
                started = time.perf_counter()
                rag = await self.rag.for_tenant(job.tenant)
                report = await rag.ingest(
                    list(paths), on_progress=lambda p: self._progress(job, time.perf_counter() - started, p)
                )
        except AsyncRAGError as e:
            job.status, job.error = "failed", self.public(str(e))
        except Exception:
            log.exception("ingest job %s failed", job.id)
            job.status, job.error = "failed", "internal error; the server logged it"
        else:
            job.status = "done"
            job.report = self._report_out(report)
            job.files_done, job.chunks = len(paths), report.chunks
            job.bytes_done, job.seconds_left, job.current = job.bytes_total, 0.0, None
            job.seconds, job.chunks_per_second = round(report.seconds, 3), round(report.chunks_per_second, 2)
            for failure in report.failures:  # the folder holds what the collection holds
                Path(failure.path).unlink(missing_ok=True)
            self.metrics.ingested("done", report)
        finally:
            self._tasks.pop(job.id, None)
            if job.status != "running":  # cancelled while running (shutdown): it is taken up again at start
                self._keep(job)
            if job.status == "failed":
                self.metrics.ingested("failed", None)

    def _progress(self, job: m.Job, seconds: float, p: IngestProgress) -> None:
        job.files_done, job.chunks = p.files_done, p.chunks
        job.bytes_done, job.bytes_total = p.bytes_done, p.bytes_total
        job.current = self.public(p.current) if p.current else None
        job.seconds, job.chunks_per_second = round(seconds, 3), round(p.chunks / seconds, 2) if seconds > 0 else 0.0
        done = p.bytes_done / p.bytes_total if p.bytes_total else 0.0
        job.seconds_left = round(seconds * (1 - done) / done, 1) if 0 < done < 1 else None

    def _report_out(self, report: IngestReport) -> m.IngestReportOut:
        data: dict[str, Any] = report.to_dict()
        for failure in data["failures"]:
            failure["path"] = self.public(failure["path"])
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
            for name in job.files:
                (self.upload_root / name).unlink(missing_ok=True)
            self._keep(job)
            self.metrics.ingested("cancelled", None)

    def _keep(self, job: m.Job) -> None:
        """Write the job's state into its folder, atomically (a restart reads it: `resume`)."""
        state = self.upload_root / job.id / STATE_FILE
        temporary = state.with_suffix(".tmp")
        temporary.write_text(job.model_dump_json())
        os.replace(temporary, state)


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
