"""The `asyncrag` command: a thin layer over `AsyncRAG`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

# gRPC's C core logs connection chatter ("too_many_pings" GOAWAYs from Milvus Lite's in-process
# server) straight to stderr; real failures reach us as exceptions, reported per command.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer
from pymilvus.exceptions import MilvusException
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from asyncrag.config import Settings
from asyncrag.llm import LLMUnavailable
from asyncrag.query.answer import citations
from asyncrag.rag import AsyncRAG
from asyncrag.results import Source
from asyncrag.store.milvus import StoreError

T = TypeVar("T")

app = typer.Typer(
    help="Fast asynchronous RAG over your documents, with LlamaIndex and Milvus.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however narrow the terminal or pipe

Uri = Annotated[str | None, typer.Option(help="Milvus Lite path or server URI [env: ASYNCRAG_URI]")]
Token = Annotated[str | None, typer.Option(help="Milvus token, e.g. user:password [env: ASYNCRAG_TOKEN]")]
Collection = Annotated[str | None, typer.Option(help="Collection name [env: ASYNCRAG_COLLECTION]")]
TopK = Annotated[int | None, typer.Option("-k", "--top-k", help="How many chunks to retrieve")]
Filter = Annotated[str, typer.Option(help="Milvus filter expression, e.g. 'file_name == \"a.pdf\"'")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _rag(**flags: Any) -> AsyncRAG:
    return AsyncRAG(Settings().override(**flags))


def _run(rag: AsyncRAG, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, turning known failures into one clear line and exit code 2."""

    async def main() -> T:
        async with rag:
            return await work

    try:
        return asyncio.run(main())
    except (StoreError, LLMUnavailable, ValueError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    except MilvusException as e:
        err.print(f"[red]Milvus error:[/red] {escape(e.message)}")
        raise typer.Exit(2) from None


def _print_sources(sources: list[Source]) -> None:
    for i, s in enumerate(sources, 1):
        out.print(f"[bold][{i}][/bold] {s.citation}  [dim]score {s.score:.3f}[/dim]")
        out.print("    " + " ".join(s.text.split())[:300], markup=False, highlight=False)


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursive)")],
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
    json_out: Json = False,
) -> None:
    """Parse, chunk, embed and store documents (.txt .md .pdf .html .docx)."""
    rag = _rag(collection=collection, uri=uri, token=token)

    async def work():
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks"),
            TimeElapsedColumn(),
            console=err,
            disable=json_out or not err.is_terminal,
        ) as bar:
            task = bar.add_task("ingesting", total=None, chunks=0)
            return await rag.ingest(
                list(paths),
                on_progress=lambda done, total, chunks: bar.update(task, completed=done, total=total, chunks=chunks),
            )

    report = _run(rag, work())
    if json_out:
        out.print_json(json.dumps(report.to_dict()))
    else:
        for f in report.failures:
            err.print(f"[red]failed[/red] {escape(f.path)}: {escape(f.reason)}", highlight=False)
        out.print(
            f"{report.files} files, {report.chunks} chunks, {len(report.failures)} failures "
            f"in {report.seconds:.1f} s ({report.chunks_per_second:.1f} chunks/s)"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def search(
    query: str,
    k: TopK = None,
    filter: Filter = "",
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
    json_out: Json = False,
) -> None:
    """The chunks most similar to QUERY, with score, source and page."""
    rag = _rag(collection=collection, uri=uri, token=token)
    sources = _run(rag, rag.search(query, k, filter))
    if json_out:
        out.print_json(json.dumps([s.to_dict() for s in sources]))
    else:
        _print_sources(sources)


@app.command()
def ask(
    question: str,
    k: TopK = None,
    filter: Filter = "",
    llm: Annotated[
        str | None, typer.Option(help="local | llamacpp | transformers | openai:MODEL [env: ASYNCRAG_LLM]")
    ] = None,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Answer with the retrieved passages only")] = False,
    collection: Collection = None,
    uri: Uri = None,
    token: Token = None,
    json_out: Json = False,
) -> None:
    """Answer QUESTION from the collection, streaming, with numbered citations."""
    rag = _rag(collection=collection, uri=uri, token=token, llm="none" if no_llm else llm)

    async def work():
        try:
            await rag.llm()
        except LLMUnavailable as e:
            err.print(f"[yellow]no LLM:[/yellow] {escape(str(e))}\nAnswering with the retrieved passages only.")
            rag.disable_llm()
        streaming = not json_out and rag.settings.llm != "none" and await rag.llm() is not None
        printed: list[str] = []

        def show(piece: str) -> None:
            printed.append(piece)
            out.print(piece, end="", markup=False, highlight=False)

        try:
            answer = await rag.ask(question, k, filter, on_token=show if streaming else None)
        except LLMUnavailable as e:  # e.g. an OpenAI-compatible server that does not answer
            if printed:  # half an answer is out: do not follow it with the passages
                raise
            err.print(f"[yellow]no LLM:[/yellow] {escape(str(e))}\nAnswering with the retrieved passages only.")
            rag.disable_llm()
            answer, streaming = await rag.ask(question, k, filter), False
        return answer, streaming

    answer, streamed = _run(rag, work())
    if json_out:
        out.print_json(json.dumps(answer.to_dict()))
        return
    if not streamed:
        out.print(answer.answer, markup=False, highlight=False)
    out.print("\n" if streamed else "")
    for line in citations(answer.sources):
        out.print(line, highlight=False)


@app.command()
def stats(collection: Collection = None, uri: Uri = None, token: Token = None, json_out: Json = False) -> None:
    """What one collection holds."""
    rag = _rag(collection=collection, uri=uri, token=token)
    _print_stats([_run(rag, rag.stats())], json_out)


@app.command()
def collections(uri: Uri = None, token: Token = None, json_out: Json = False) -> None:
    """Every collection at the URI."""
    rag = _rag(uri=uri, token=token)
    _print_stats(_run(rag, rag.collections()), json_out)


def _print_stats(rows: list, json_out: bool) -> None:
    if json_out:
        out.print_json(json.dumps([r.to_dict() for r in rows]))
        return
    table = Table("collection", "documents", "chunks", "embedding model", "dim")
    for r in rows:
        table.add_row(r.name, str(r.documents), str(r.chunks), r.embed_model or "?", str(r.dim or "?"))
    out.print(table)


def main() -> None:  # pragma: no cover
    sys.exit(app())
