"""The `asyncrag` command: a thin layer over `AsyncRAG`.

Exit codes: 0 done; 1 done in part (some files failed; the LLM failed or its answer failed the
checks, and the answer quotes the sources); 2 a user's error (bad setting, missing collection, Milvus unreachable, ...),
one line on stderr; 3 a bug (an unexpected error; `--debug` shows the traceback).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from asyncrag import evaluate
from asyncrag.errors import AsyncRAGError
from asyncrag.ingest.pipeline import IngestProgress
from asyncrag.query.answer import citations
from asyncrag.rag import AsyncRAG
from asyncrag.results import Answer, CollectionStats, IngestReport, Source

T = TypeVar("T")

app = typer.Typer(
    help="Fast asynchronous RAG over your documents, with LlamaIndex and Milvus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however narrow the terminal or pipe
state = {"debug": False}

Uri = Annotated[str | None, typer.Option(help="Milvus Lite path or server URI [env: ASYNCRAG_URI]")]
Token = Annotated[str | None, typer.Option(help="Milvus token, e.g. user:password [env: ASYNCRAG_TOKEN]")]
Collection = Annotated[str | None, typer.Option(help="Collection name [env: ASYNCRAG_COLLECTION]")]
Tenant = Annotated[
    str | None, typer.Option(help="Work within this tenant of a shared collection [env: ASYNCRAG_TENANT]")
]
TopK = Annotated[int | None, typer.Option("-k", "--top-k", help="How many chunks to retrieve")]
Filter = Annotated[
    str,
    typer.Option(
        "--where",
        "--filter",
        help="Milvus boolean expression over the metadata (source, file_name, page, doc_id, heading), "
        "e.g. 'source like \"%uber%\" and page > 10'",
    ),
]
Mode = Annotated[
    str | None,
    typer.Option(
        help="dense | sparse (BM25) | hybrid | auto: hybrid where the collection has BM25 [env: ASYNCRAG_SEARCH_MODE]"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON")]
# ingest's own options
Shard = Annotated[str | None, typer.Option(help="i/n: only the documents whose id hashes to shard i of n (0-based)")]
DocIdPrefix = Annotated[
    str | None, typer.Option(help="Document ids: this prefix + the path relative to the given folder")
]
ReportPath = Annotated[Path | None, typer.Option("--report", help="Write a JSON report (one entry per file) here")]
MaxConcurrency = Annotated[int | None, typer.Option(help="Embedding calls in flight [env: ASYNCRAG_MAX_CONCURRENCY]")]
EmbedRps = Annotated[float | None, typer.Option(help="Embedding calls per second, at most [env: ASYNCRAG_EMBED_RPS]")]
Ocr = Annotated[
    str | None,
    typer.Option(help="Reads scanned PDF pages and images: rapidocr (bundled) | tesseract | off [env: ASYNCRAG_OCR]"),
]

Ray = Annotated[
    str | None,
    typer.Option(
        help="Parse, embed and write on a Ray cluster: local (start one here) | auto (the one running here, or "
        "RAY_ADDRESS's) | its ADDRESS. Needs a Milvus server (--uri) and Ray installed [env: ASYNCRAG_RAY]",
    ),
]


class _ChunkRate(ProgressColumn):
    """Chunks written per second so far: files vary from 1 to 500 chunks, so files/s says little."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("chunks", 0) / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:.1f} chunks/s", style="progress.data.speed")


class _CurrentFile(ProgressColumn):
    """The file the run is waiting on, as plain text (a name is data, never markup), shortened from the left."""

    def render(self, task: Task) -> Text:
        name = task.fields.get("current") or ""
        return Text(name if len(name) <= 40 else "…" + name[-39:], style="dim", no_wrap=True)


def _show(bar: Progress, task: TaskID, p: IngestProgress) -> None:
    """The bar and time left follow bytes; files and chunks are counted beside them."""
    bar.update(
        task, completed=p.bytes_done, total=p.bytes_total or None, files=f"{p.files_done}/{p.files_total}",
        chunks=p.chunks, current=p.current,
    )


class _StatusHandler(logging.Handler):
    """The library's progress notes and warnings, one dim line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "yellow" if record.levelno >= logging.WARNING else "dim"
        err.print(f"[{style}]{escape(record.getMessage())}[/{style}]", highlight=False)


@app.callback()
def _start(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks [env: ASYNCRAG_DEBUG=1]")] = False,
) -> None:
    """Process-wide set-up belongs to the program, not to the library it imports."""
    state["debug"] = debug or os.environ.get("ASYNCRAG_DEBUG", "") not in ("", "0")
    # gRPC's C core logs connection chatter ("too_many_pings" GOAWAYs from Milvus Lite's in-process
    # server) straight to stderr; pymilvus logs every failed RPC with a traceback, and Milvus Lite a
    # database it cannot open. Real failures reach us as exceptions, reported per command.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: models load from local folders only
    # Ray's C++ core logs its own bookkeeping as errors (an actor's arguments in the object store, an
    # error it could not push to a driver that is leaving); a run's failures reach us as its rows.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)  # e.g. its lock error, with a traceback
    log = logging.getLogger("asyncrag")
    if not any(isinstance(h, _StatusHandler) for h in log.handlers):
        log.addHandler(_StatusHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


def _run(flags: dict[str, Any], work: Callable[[AsyncRAG], Awaitable[T]]) -> T:
    """Run `work` with an AsyncRAG built from `flags`: a user's error is one line and exit code 2."""

    async def main() -> T:
        async with AsyncRAG(**flags) as rag:
            return await work(rag)

    try:
        return asyncio.run(main())
    except AsyncRAGError as e:
        if state["debug"]:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as e:
        if state["debug"]:
            raise
        err.print(
            f"[red]internal error[/red] (a bug; please report it, with the output of --debug): "
            f"{escape(type(e).__name__)}: {escape(str(e))}",
            highlight=False,
        )
        raise typer.Exit(3) from None


def _require_folders(option: str, folders: list[Path] | None) -> None:
    """Each folder an option names must be one: else a one-line error, exit 2, before any work."""
    for folder in folders or []:
        if not folder.expanduser().is_dir():
            err.print(f"[red]error:[/red] {option} {escape(str(folder))}: not a folder; give folders that exist")
            raise typer.Exit(2)


def _where(collection: str | None, uri: str | None, token: str | None, tenant: str | None) -> dict[str, Any]:
    """The flags that say which collection (and tenant) a command works on."""
    return {"collection": collection, "uri": uri, "token": token, "tenant": tenant}


def _print_sources(sources: list[Source]) -> None:
    for i, s in enumerate(sources, 1):
        out.print(f"[bold][{i}][/bold] {escape(s.citation)}  [dim]score {s.score:.3f}[/dim]", highlight=False)
        out.print("    " + " ".join(s.text.split())[:300], markup=False, highlight=False)


def _shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' (i counts from 0) -> (i, n)."""
    if text is None:
        return None
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise typer.BadParameter(f"{text!r}: use i/n with 0 <= i < n, e.g. 0/4")
    return int(index), int(count)


@app.command("ingest")
def ingest_cmd(
    # str, not Path: typer would refuse an unreadable path for the whole run; it is one file's failure.
    paths: Annotated[list[str], typer.Argument(help="Files and folders (recursive)")],
    prune: Annotated[bool, typer.Option("--prune", help="Delete the documents gone from these paths")] = False,
    shard: Shard = None,
    doc_id_prefix: DocIdPrefix = None,
    report_path: ReportPath = None,
    max_concurrency: MaxConcurrency = None,
    embed_rps: EmbedRps = None,
    ocr: Ocr = None,
    ray: Ray = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Then keep them indexed: ingest again (with --prune) after each change")
    ] = False,
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
    json_out: Json = False,
) -> None:
    """Bring the collection up to date with documents: only what changed is redone.

    Formats: .txt .md .pdf .html .docx .pptx .xlsx .epub .csv .tsv .json; images (.png .jpg .jpeg
    .tif .tiff .webp) and scanned PDF pages are read by OCR (--ocr).

      asyncrag ingest docs/ --watch       # and keep docs/ indexed as it changes (Ctrl-C stops)
      asyncrag ingest docs/ --uri http://milvus:19530 --ray auto   # on the Ray cluster running here
    """
    shard_of = _shard(shard)
    flags = {
        **_where(collection, uri, token, tenant),
        "max_concurrency": max_concurrency, "embed_rps": embed_rps, "ocr": ocr, "ray": ray,
    }
    if watch:
        _watch(flags, paths, doc_id_prefix, json_out)
        return

    async def work(rag: AsyncRAG) -> IngestReport:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]} files · {task.fields[chunks]} chunks"),
            _ChunkRate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            _CurrentFile(),
            console=err,
            disable=json_out or not err.is_terminal,
        ) as bar:
            task = bar.add_task("ingesting", total=None, files="0/?", chunks=0, current=None)
            return await rag.ingest(
                list(paths),
                on_progress=functools.partial(_show, bar, task),
                prune=prune,
                shard=shard_of,
                doc_id_prefix=doc_id_prefix,
            )

    report = _run(flags, work)
    if report_path is not None:
        report_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    _print_report(report, json_out)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: IngestReport, json_out: bool) -> None:
    if json_out:
        out.print_json(json.dumps(report.to_dict()))
        return
    for f in report.failures:
        err.print(f"[red]failed[/red] {escape(f.path)}: {escape(f.reason)}", highlight=False)
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items() if n)
    out.print(
        f"{report.files} files, {report.chunks} chunks, {len(report.failures)} failures "
        f"in {report.seconds:.1f} s ({report.chunks_per_second:.1f} chunks/s)" + (f": {counts}" if counts else ""),
        highlight=False,
    )


def _watch(flags: dict[str, Any], paths: list[str], doc_id_prefix: str | None, json_out: bool) -> None:
    """`ingest --watch`: a run now, then one after each burst of changes, until Ctrl-C."""
    from asyncrag.ingest.watch import watch

    err.print("watching for changes; Ctrl-C stops (a run stopped midway is finished by the next one)")
    try:
        _run(flags, lambda rag: watch(rag, paths, lambda r: _print_report(r, json_out), doc_id_prefix=doc_id_prefix))
    except KeyboardInterrupt:
        err.print("stopped watching")


@app.command()
def documents(
    tenant: Tenant = None, collection: Collection = None, uri: Uri = None, token: Token = None, json_out: Json = False
) -> None:
    """The documents stored in the collection: id, chunks, content hash, when written."""
    docs = _run(_where(collection, uri, token, tenant), lambda rag: rag.documents())
    if json_out:
        out.print_json(json.dumps([d.to_dict() for d in docs]))
        return
    table = Table("document", "chunks", "sha256", "written")
    table.columns[0].overflow = "fold"
    for d in docs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.updated_at))
        written = when if d.complete else f"{when} (unfinished)"
        table.add_row(escape(d.doc_id), str(d.chunks), d.hash[:12] or "-", written)
    out.print(table)


@app.command()
def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids, as `asyncrag documents` lists them")],
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """Delete documents (their chunks and records) from the collection."""
    deleted = _run(_where(collection, uri, token, tenant), lambda rag: rag.delete(list(doc_ids)))
    missing = [d for d in doc_ids if d not in deleted]
    out.print(f"{len(deleted)} documents deleted", highlight=False)
    for doc_id in missing:
        err.print(f"[yellow]not stored:[/yellow] {escape(doc_id)}", highlight=False)
    if missing:
        raise typer.Exit(1)


@app.command()
def search(
    query: str,
    k: TopK = None,
    filter: Filter = "",
    mode: Mode = None,
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
    json_out: Json = False,
) -> None:
    """The chunks that best match QUERY, with score, source and page."""
    flags = {**_where(collection, uri, token, tenant), "search_mode": mode}
    sources = _run(flags, lambda rag: rag.search(query, k, filter))
    if json_out:
        out.print_json(json.dumps([s.to_dict() for s in sources]))
    else:
        _print_sources(sources)


AnswerModeOpt = Annotated[
    str | None,
    typer.Option(
        "--answer",
        help="extract: quote the sentences that answer | generate: the LLM writes it, checked | "
        "auto: generate with openai: models, else extract [env: ASYNCRAG_ANSWER_MODE]",
    ),
]
LlmOpt = Annotated[
    str | None, typer.Option(help="local | llamacpp | transformers | openai:MODEL | none [env: ASYNCRAG_LLM]")
]
NoLlm = Annotated[bool, typer.Option("--no-llm", help="Never load an LLM: quote the sources")]


class _Stream:
    """Prints an LLM's tokens as they come, and remembers whether any were printed."""

    def __init__(self) -> None:
        self.printed = False

    def __call__(self, piece: str) -> None:
        self.printed = True
        out.print(piece, end="", markup=False, highlight=False)


def _notice(answer: Answer, stream: _Stream) -> None:
    if answer.llm_error:
        if stream.printed:
            out.print()
        err.print(f"[yellow]no LLM answer:[/yellow] {escape(answer.llm_error)}", highlight=False)
        err.print("Quoting the sources instead.")


def _show_answer(answer: Answer, stream: _Stream) -> None:
    """The answer (unless its tokens were streamed), a notice when the LLM's was set aside, the sources."""
    _notice(answer, stream)
    if answer.method != "generated":
        out.print(answer.answer, markup=False, highlight=False)
    out.print("\n" if answer.method == "generated" else "")
    for line in citations(answer.sources):
        out.print(line, markup=False, highlight=False)


def _answer_flags(flags: dict[str, Any], llm: str | None, no_llm: bool, answer_mode: str | None) -> dict[str, Any]:
    return {**flags, "llm": "none" if no_llm else llm, "answer_mode": answer_mode}


@app.command()
def ask(
    question: str,
    k: TopK = None,
    filter: Filter = "",
    mode: Mode = None,
    answer_mode: AnswerModeOpt = None,
    llm: LlmOpt = None,
    no_llm: NoLlm = False,
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
    json_out: Json = False,
) -> None:
    """Answer QUESTION from the collection with numbered citations [n].

    By default the answer quotes the sentences of the sources that answer it; with --answer generate
    (or an openai: LLM) the LLM writes it, streaming, and an answer that cites nothing, repeats
    itself or says what its sources do not is replaced by the quoted one, with the reason on stderr
    (and in --json's "llm") and exit code 1.

      asyncrag ask "What does json.loads raise on invalid input?"
      asyncrag ask "Summarise the risk factors" --llm openai:gpt-4o-mini -k 8
    """
    stream = _Stream()
    flags = _answer_flags(
        {**_where(collection, uri, token, tenant), "search_mode": mode}, llm, no_llm, answer_mode
    )
    answer: Answer = _run(flags, lambda rag: rag.ask(question, k, filter, on_token=None if json_out else stream))
    if json_out:
        _notice(answer, stream)
        out.print_json(json.dumps(answer.to_dict()))
    else:
        _show_answer(answer, stream)
    if answer.llm_error:
        raise typer.Exit(1)


@app.command()
def chat(
    k: TopK = None,
    filter: Filter = "",
    mode: Mode = None,
    answer_mode: AnswerModeOpt = None,
    llm: LlmOpt = None,
    no_llm: NoLlm = False,
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """A conversation: one question a line (from the terminal or a pipe), until an empty line or EOF.

    A follow-up that points back ("Does its input need to be sorted?") is searched together with
    the earlier questions; the query searched is shown when it differs from the question.

      asyncrag chat
      printf 'What does itertools.groupby do?\nDoes its input need to be sorted?\n' | asyncrag chat
    """
    flags = _answer_flags(
        {**_where(collection, uri, token, tenant), "search_mode": mode}, llm, no_llm, answer_mode
    )
    interactive = sys.stdin.isatty()

    async def converse(rag: AsyncRAG) -> None:
        history: list[str] = []
        while True:
            try:
                line = await asyncio.to_thread(input, "? " if interactive else "")
            except EOFError:
                return
            question = line.strip()
            if not question:
                return
            if not interactive:
                out.print(f"? {question}", markup=False, highlight=False)
            stream = _Stream()
            answer = await rag.ask(question, k, filter, on_token=stream, history=history)
            if answer.query:
                err.print(f"[dim]searched: {escape(answer.query)}[/dim]", highlight=False)
            _show_answer(answer, stream)
            out.print()
            history.append(question)

    _run(flags, converse)


@app.command()
def stats(
    tenant: Tenant = None, collection: Collection = None, uri: Uri = None, token: Token = None, json_out: Json = False
) -> None:
    """What one collection holds."""
    _print_stats([_run(_where(collection, uri, token, tenant), lambda rag: rag.stats())], json_out)


@app.command("reindex")
def reindex_cmd(collection: Collection = None, uri: Uri = None, token: Token = None) -> None:
    """Give a collection today's schema, keeping its vectors (nothing is embedded again): the BM25
    field (sparse and hybrid search) where the server has BM25, and the tenant field (--tenant)."""
    copied = _run({"collection": collection, "uri": uri, "token": token}, lambda rag: rag.reindex())
    if copied is None:
        out.print("the collection already has today's schema: nothing to do")
    else:
        out.print(f"{copied} rows (chunks and document records) copied into today's schema", highlight=False)


@app.command()
def collections(uri: Uri = None, token: Token = None, json_out: Json = False) -> None:
    """Every collection at the URI."""
    _print_stats(_run({"uri": uri, "token": token}, lambda rag: rag.collections()), json_out)


def _print_stats(rows: list[CollectionStats], json_out: bool) -> None:
    if json_out:
        out.print_json(json.dumps([r.to_dict() for r in rows]))
        return
    table = Table("collection", "documents", "chunks", "embedding model", "dim", "search modes")
    for r in rows:
        modes = "dense, sparse, hybrid" if r.bm25 else "dense"
        table.add_row(r.name, str(r.documents), str(r.chunks), r.embed_model or "?", str(r.dim or "?"), modes)
    out.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    upload_dir: Annotated[
        str | None, typer.Option(help="Where uploaded files are kept [default: ./asyncrag-uploads]")
    ] = None,
    max_upload_mb: Annotated[float | None, typer.Option(help="Largest upload request, in MiB [default: 50]")] = None,
    max_files: Annotated[int | None, typer.Option(help="Most files in one upload request [default: 20]")] = None,
    source_root: Annotated[
        str | None,
        typer.Option(help="Documents under this folder are named relative to it [default: the current folder]"),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host name the server answers to, besides loopback and --host (repeat it; "
            "e.g. the name behind your proxy) [env: ASYNCRAG_ALLOWED_HOSTS, comma-separated]"
        ),
    ] = None,
    llm: Annotated[
        str | None, typer.Option(help="local | llamacpp | transformers | openai:MODEL | none [env: ASYNCRAG_LLM]")
    ] = None,
    watch: Annotated[
        list[Path] | None,
        typer.Option(help="A folder to keep indexed as it changes, in the whole collection (repeat it)"),
    ] = None,
    tenant_max_documents: Annotated[
        int | None, typer.Option(help="Most documents a tenant may store [env: ASYNCRAG_TENANT_MAX_DOCUMENTS]")
    ] = None,
    tenant_max_mb: Annotated[
        float | None, typer.Option(help="Most MiB of files a tenant may store [env: ASYNCRAG_TENANT_MAX_MB]")
    ] = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """The HTTP API (OpenAPI at /docs), MCP at /mcp and the web page at /.

    Keys: `asyncrag keys add` (a role and a tenant each), or ASYNCRAG_API_KEY (an admin's); with
    neither, anyone who can reach the server can use it.
    """
    from pathlib import Path

    import uvicorn

    from asyncrag.api import ServeOptions, create_app
    from asyncrag.api.deps import allowed_hosts
    from asyncrag.config import Settings
    from asyncrag.errors import milvus_errors
    from asyncrag.store import keys, milvus

    _require_folders("--watch", watch)
    try:
        settings = Settings.load(
            collection=collection, uri=uri, token=token, llm=llm,
            tenant_max_documents=tenant_max_documents, tenant_max_mb=tenant_max_mb,
        )
        options = ServeOptions.from_env(
            upload_dir=Path(upload_dir) if upload_dir else None,
            max_upload_mb=max_upload_mb,
            max_files=max_files,
            source_root=Path(source_root) if source_root else None,
            watch=tuple(watch) if watch else None,
        )
        given = allowed_host or os.environ.get("ASYNCRAG_ALLOWED_HOSTS", "").split(",")
        options = dataclasses.replace(options, allowed_hosts=allowed_hosts(host, given))
        client = milvus.connect(settings.uri, settings.token, create=True)  # one line now, not a traceback later
        try:
            with milvus_errors():
                stored_keys = keys.stored(client, settings.collection)
        finally:
            client.close()
            milvus.release_lite(settings.uri)
    except AsyncRAGError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    if options.api_key is None and not stored_keys and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/yellow] serving on {host} without keys (`asyncrag keys add`, or ASYNCRAG_API_KEY): "
            "anyone who can reach it can use it"
        )
    app_ = create_app(settings, options=options)
    uvicorn.run(app_, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)


keys_app = typer.Typer(
    help="API keys for `serve`: each has a role (reader, writer, admin) and, usually, a tenant.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
Role = Annotated[str, typer.Option(help="reader: search and ask; writer: also upload and delete; admin: everything")]


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="A name for people (for `keys list` and `keys revoke`)")],
    role: Role = "reader",
    tenant: Annotated[
        str | None, typer.Option(help="The tenant the key works within [default: the whole collection]")
    ] = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """Make a key; it is printed once, and only its hash is kept.

      asyncrag keys add alice --tenant acme --role writer
    """
    key = _run(_where(collection, uri, token, None), lambda rag: rag.add_key(name, role, tenant))
    where = f"tenant {tenant}" if tenant else "the whole collection"
    err.print(f"a {role}'s key for {escape(where)}, named {escape(name)!r}; it is not shown again:", highlight=False)
    print(key)


@keys_app.command("list")
def keys_list(collection: Collection = None, uri: Uri = None, token: Token = None, json_out: Json = False) -> None:
    """Every key's name, role and tenant (never the key)."""
    found = _run(_where(collection, uri, token, None), lambda rag: rag.keys())
    if json_out:
        out.print_json(json.dumps([k.to_dict() for k in found]))
        return
    table = Table("name", "role", "tenant", "made")
    for k in found:
        made = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
        table.add_row(Text(k.name), k.role, Text(k.tenant or "(whole collection)"), made)
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name")],
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """Remove a key; servers stop taking it within 5 seconds."""
    if not _run(_where(collection, uri, token, None), lambda rag: rag.revoke_key(name)):
        err.print(f"[red]error:[/red] no key named {escape(name)!r}: `asyncrag keys list` shows them", highlight=False)
        raise typer.Exit(2)
    out.print(f"revoked {escape(name)!r}", highlight=False)


@app.command("mcp")
def mcp_cmd(
    allow: Annotated[
        list[Path] | None,
        typer.Option(help="A folder whose files the `ingest` tool may ingest (repeat it); none: ingesting is off"),
    ] = None,
    llm: LlmOpt = None,
    answer_mode: AnswerModeOpt = None,
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """An MCP server over stdio for AI tools: search, ask, list_documents, ingest, job_status, and the
    documents as resources. Nothing but the protocol goes to stdout; notes go to stderr.

      asyncrag mcp --uri ~/rag.db --allow ~/papers
    """
    from asyncrag.api import mcp

    _require_folders("--allow", allow)
    flags = {**_where(collection, uri, token, tenant), "llm": llm, "answer_mode": answer_mode}
    _run(flags, lambda rag: mcp.run_stdio(rag, allow or []))


@app.command("eval")
def eval_cmd(
    qa_file: Annotated[Path, typer.Argument(help="Questions and what a relevant chunk holds, one JSON object a line")],
    mode: Annotated[str, typer.Option(help="Search modes to compare, comma-separated")] = ",".join(evaluate.MODES),
    k: Annotated[int, typer.Option("-k", "--top-k", help="How many chunks count (hit@k, MRR, nDCG@k)")] = 5,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here")] = None,
    chart: Annotated[Path | None, typer.Option(help="Write a PNG chart comparing the modes here")] = None,
    answers: Annotated[
        bool, typer.Option("--answers", help="Also ask each question and score the answers (correct, cited, time)")
    ] = False,
    answer_mode: AnswerModeOpt = None,
    llm: LlmOpt = None,
    tenant: Tenant = None,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
) -> None:
    """Measure retrieval on QA_FILE: hit@k, MRR, nDCG@k and latency per mode, and the questions missed;
    with --answers, the answers too: correct (an expected phrase present), cited, cited to a relevant
    source, and seconds per answer (asked with the default top-k and search mode).

      asyncrag eval examples/eval/python-doc.jsonl --answers --json report.json
    """

    async def work(rag: AsyncRAG) -> tuple[evaluate.Report, evaluate.AnswerReport | None]:
        modes = evaluate.parse_modes(mode)
        questions = evaluate.load_questions(qa_file)
        report = await evaluate.evaluate(lambda q, k_, m: rag.search(q, k_, mode=m), questions, modes, k)
        if chart is not None:
            evaluate.write_chart(report, chart)
        if not answers:
            return report, None
        return report, await evaluate.evaluate_answers(lambda q: rag.ask(q.question, history=q.history), questions)

    flags = {**_where(collection, uri, token, tenant), "llm": llm, "answer_mode": answer_mode}
    report, answered = _run(flags, work)
    if json_path is not None:
        data = {**report.to_dict(), "answers": answered.to_dict() if answered else None}
        json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _print_eval(report)
    if answered:
        _print_answers(answered)


def _print_answers(report: evaluate.AnswerReport) -> None:
    """Answers overall and by kind, then each answer that was wrong or cited no relevant source."""
    table = Table("questions", "kind", "correct", "cited", "cited relevant", title="answers")
    for kind, s in [("all", report.scores), *report.by_kind.items()]:
        table.add_row(str(s.questions), kind, f"{s.correct:.3f}", f"{s.cited:.3f}", f"{s.cited_relevant:.3f}")
    out.print(table)
    out.print(f"seconds per answer: p50 {report.latency_s(50):.2f}, p95 {report.latency_s(95):.2f}")
    if report.wrong:
        wrong = Table("question", "correct", "cited relevant", "answer", title="answers not right or not cited right")
        for column in wrong.columns:
            column.overflow = "fold"
        for o in report.wrong:
            wrong.add_row(escape(o.question), "yes" if o.correct else "no", "yes" if o.cited_relevant else "no",
                          escape(o.answer[:300]))
        out.print(wrong)


def _print_eval(report: evaluate.Report) -> None:
    """Modes side by side, then by kind, then each question some mode did not rank first."""
    table = Table(
        "mode", f"hit@{report.k}", "MRR", f"nDCG@{report.k}", "p50 ms", "p95 ms", title=f"{report.questions} questions"
    )
    for m in report.modes:
        s = m.scores
        table.add_row(
            m.mode,
            f"{s.hit:.3f}",
            f"{s.mrr:.3f}",
            f"{s.ndcg:.3f}",
            f"{m.latency_ms(50):.1f}",
            f"{m.latency_ms(95):.1f}",
        )
    out.print(table)
    kinds = Table("mode", "kind", "questions", f"hit@{report.k}", "MRR")
    for m in report.modes:
        for kind, s in m.by_kind.items():
            kinds.add_row(m.mode, kind, str(s.questions), f"{s.hit:.3f}", f"{s.mrr:.3f}")
    if kinds.rows:
        out.print(kinds)
    missed = {o.question: o.kind for m in report.modes for o in m.misses}
    if missed:
        ranks = {(m.mode, o.question): o.rank for m in report.modes for o in m.outcomes}
        misses = Table(
            "question", "kind", *(m.mode for m in report.modes), title="not ranked first (- : not in the top k)"
        )
        misses.columns[0].overflow = "fold"
        for question, its_kind in missed.items():
            cells = [str(ranks[m.mode, question] or "-") for m in report.modes]
            misses.add_row(escape(question), its_kind or "", *cells)
        out.print(misses)


def main() -> None:  # pragma: no cover
    sys.exit(app())
