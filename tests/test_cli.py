"""The `asyncrag` command end to end (typer's CliRunner), on examples/corpus and a fresh Milvus Lite.

Every command gets ASYNCRAG_* env pointing into a temporary folder, so nothing touches the repo. The
session's embedding model stands in for a reload per command (loading MiniLM takes seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_environment
from typer.testing import CliRunner, Result

from asyncrag import cli
from asyncrag.embed.local import LocalEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
CORPUS_FILES = {"about.md", "annual-report-2025.pdf", "brewing-guide.txt", "faq.html"}


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Iterator[dict[str, str]]:
    """The env of every command in this module, and examples/corpus ingested once into its collection."""
    home = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        env = {**cli_environment(mp, home, embedder), "ASYNCRAG_COLLECTION": "corpus"}
        result = CliRunner().invoke(cli.app, ["ingest", str(CORPUS), "--json"], env=env)
        assert result.exit_code == 0, result.output
        env["_REPORT"] = result.stdout
        yield env


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args), env={k: v for k, v in env.items() if not k.startswith("_")})


def test_ingest_report(cli_home: dict[str, str]) -> None:
    report = json.loads(cli_home["_REPORT"])
    assert set(report) == {"files", "chunks", "seconds", "chunks_per_second", "counts", "failures", "documents"}
    assert report["counts"]["added"] == 4 and {d["status"] for d in report["documents"]} == {"added"}
    assert report["files"] == 4 and report["failures"] == []
    assert report["chunks"] >= 4 and report["seconds"] > 0


def test_ingest_again_skips_what_is_unchanged(cli_home: dict[str, str]) -> None:
    before = json.loads(run(cli_home, "stats", "--json").stdout)[0]
    result = run(cli_home, "ingest", str(CORPUS / "about.md"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("0 files, 0 chunks, 0 failures") and result.stdout.rstrip().endswith(
        ": 1 unchanged"
    )
    after = json.loads(run(cli_home, "stats", "--json").stdout)[0]
    assert (after["documents"], after["chunks"]) == (before["documents"], before["chunks"]) == (4, before["chunks"])


def test_search_json_shape(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "search", "Who founded the cooperative and when?", "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert isinstance(hits, list) and len(hits) == 3
    for hit in hits:
        assert set(hit) == {"text", "score", "source", "page", "start", "end", "heading", "anchor", "ocr"}
        assert isinstance(hit["text"], str) and hit["text"]
        assert isinstance(hit["score"], float)
        assert Path(hit["source"]).name in CORPUS_FILES
        assert hit["page"] is None or isinstance(hit["page"], int)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert Path(hits[0]["source"]).name == "about.md" and "1987" in hits[0]["text"]


def test_search_pdf_hit_has_its_page(cli_home: dict[str, str]) -> None:
    hits = json.loads(run(cli_home, "search", "What was the revenue in 2025?", "--json", "-k", "1").stdout)
    assert Path(hits[0]["source"]).name == "annual-report-2025.pdf" and hits[0]["page"] == 1
    outlook = json.loads(run(cli_home, "search", "How big is the new solar array?", "--json", "-k", "1").stdout)
    assert outlook[0]["page"] == 2 and "640 kilowatts" in outlook[0]["text"]


def test_search_human_output(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "search", "How hot should the water be for green tea?", "-k", "2")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("[1] ") and first.split()[1].endswith("brewing-guide.txt") and "score" in first
    assert "[2] " in result.stdout


def test_search_filter(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "search", "tea", "--json", "-k", "4", "--filter", 'file_name == "faq.html"')
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits and {Path(h["source"]).name for h in hits} == {"faq.html"}


@pytest.mark.parametrize("bad_filter", ["file_name ==", "no_such_function(page) > 1", 'file_name = "a"'])
def test_bad_filter_is_a_clear_error(cli_home: dict[str, str], bad_filter: str) -> None:
    result = run(cli_home, "search", "tea", "--filter", bad_filter)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # handled, no traceback
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    *notes, error = result.stderr.strip().splitlines()  # progress notes, then the one error line
    assert error.startswith(f"error: invalid filter {bad_filter!r}: "), result.stderr
    assert not any(line.startswith("error") or "^" in line for line in notes), result.stderr


def test_ask_json_no_llm_shape(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "ask", "Do you ship abroad?", "--json", "--no-llm", "-k", "2", "--llm", "bogus")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) == {"answer", "cited", "sources", "method", "query", "llm"}
    assert answer["method"] == "extracted" and answer["query"] is None and answer["cited"]
    assert answer["llm"] == {"ok": True, "model": None, "error": None}  # no LLM wanted: none failed
    assert isinstance(answer["answer"], str)
    assert len(answer["sources"]) == 2
    for s in answer["sources"]:
        assert set(s) == {"text", "score", "source", "page", "start", "end", "heading", "anchor", "ocr"}
    top = answer["sources"][0]
    assert Path(top["source"]).name == "faq.html" and "31 countries" in top["text"]
    # No LLM: the answer quotes the sentence that answers, and cites it.
    assert answer["answer"].startswith("“") and "31 countries" in answer["answer"] and answer["cited"] == [1]
    assert "no LLM" not in result.stderr  # --no-llm wins over --llm: no warning about it


def test_ask_no_llm_human_output_cites_sources(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "ask", "How long should oolong steep?", "--no-llm", "-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("“") and "[1]" in result.stdout.split("\n\n")[0]
    citations = [line for line in lines if line.startswith("[") and line.split()[-1].startswith("/")]
    assert len(citations) == 2 and citations[0].endswith("brewing-guide.txt")


def test_stats_json(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "stats", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"name", "documents", "chunks", "embed_model", "dim", "bm25"} and row["bm25"] is True
    assert row["name"] == "corpus" and row["documents"] == 4
    assert row["chunks"] == json.loads(cli_home["_REPORT"])["chunks"]
    assert row["embed_model"] == "sentence-transformers/all-MiniLM-L6-v2" and row["dim"] == 384


def test_stats_table(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "stats")
    assert result.exit_code == 0
    assert "corpus" in result.stdout and "384" in result.stdout


def test_stats_of_a_missing_collection_is_a_clear_error(cli_home: dict[str, str]) -> None:
    result = run(cli_home, "stats", "--collection", "nothing_here")
    assert result.exit_code == 2
    assert "no collection 'nothing_here'" in result.stderr and "(collections there: corpus)" in result.stderr


def test_collections_json_and_flag_beats_env(cli_home: dict[str, str]) -> None:
    other = run(cli_home, "ingest", str(CORPUS / "faq.html"), "--collection", "faq_only")
    assert other.exit_code == 0, other.output
    result = run(cli_home, "collections", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"corpus", "faq_only"}
    assert rows["faq_only"]["documents"] == 1 and rows["corpus"]["documents"] == 4
    hits = json.loads(run(cli_home, "search", "tea", "--json", "--collection", "faq_only").stdout)
    assert {Path(h["source"]).name for h in hits} == {"faq.html"}


def test_no_arguments_prints_help() -> None:
    result = CliRunner().invoke(cli.app, [])
    assert "ingest" in result.output and "search" in result.output and "ask" in result.output


def test_ingest_needs_a_path(cli_home: dict[str, str]) -> None:
    assert run(cli_home, "ingest").exit_code == 2  # click's usage error
