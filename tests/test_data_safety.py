"""Bad names, settings and states must never cost stored data, and each is one clear line (issue 8).

Every test goes through the CLI, as a user would, and checks what is stored afterwards, not only
the message. The hash embedder stands in for the model: these are tests of plumbing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import HashEmbedder, cli_environment
from pymilvus import MilvusClient
from typer.testing import CliRunner, Result

from asyncrag import cli
from asyncrag.llm.base import Messages
from asyncrag.rag import AsyncRAG
from asyncrag.store.milvus import release_lite

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
CRAFTED = 'x"] or doc_id not in [".txt'
ASYNCRAG = str(Path(sys.executable).parent / "asyncrag")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hash_embedder: HashEmbedder) -> Iterator[dict[str, str]]:
    environment = cli_environment(monkeypatch, tmp_path, hash_embedder)
    yield environment
    release_lite(environment["ASYNCRAG_URI"])


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args), env=env)


def rows(env: dict[str, str], collection: str = "cli") -> dict[str, tuple[str, str]]:
    """Every stored chunk: id -> (doc_id, text)."""
    client = MilvusClient(env["ASYNCRAG_URI"])
    try:
        client.load_collection(collection)
        found = client.query(collection, filter="", output_fields=["doc_id", "text"], limit=16384)
    finally:
        client.close()
    return {row["id"]: (row["doc_id"], row["text"]) for row in found}


def one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert all(not line.startswith("error") for line in lines[:-1]), result.stderr  # the one error line
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture
def stored(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """examples/corpus ingested; the rows as they were."""
    result = run(env, "ingest", str(CORPUS))
    assert result.exit_code == 0, result.output
    before = rows(env)
    assert len({doc for doc, _ in before.values()}) == 4
    return before


# -- 1. file names are data, never code ----------------------------------------------------------


def test_a_crafted_file_name_deletes_nothing_else(env: dict[str, str], stored: dict, tmp_path: Path) -> None:
    (tmp_path / "inj").mkdir()
    crafted = tmp_path / "inj" / CRAFTED
    crafted.write_text("pelicans\n")
    for _ in range(2):  # the second run replaces the file's chunks: the path that once deleted everything
        result = run(env, "ingest", str(crafted))
        assert result.exit_code == 0, result.output
        after = rows(env)
        assert {k: v for k, v in after.items() if k in stored} == stored  # every other chunk, unchanged
        assert sorted(v for k, v in after.items() if k not in stored) == [(str(crafted), "pelicans")]


def test_odd_names_in_a_folder_are_each_stored(env: dict[str, str], stored: dict, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    names = [
        "new\nline.txt", 'q"uote.txt', "back\\slash.txt", "it's.md", "名前 🦜.txt", "tab\there.txt",
        "茶" * 80 + ".txt",  # 244 bytes: its name is longer than a chunk (it failed the document)
    ]
    for i, name in enumerate(names):
        (folder / name).write_text(f"document {i}\n")
    for summary in (f"{len(names)} files, {len(names)} chunks, 0 failures", f": {len(names)} unchanged"):
        result = run(env, "ingest", str(folder))
        assert result.exit_code == 0, result.output
        assert summary in result.stdout
        after = rows(env)
        assert {k: v for k, v in after.items() if k in stored} == stored
        assert sorted(doc for k, (doc, _) in after.items() if k not in stored) == sorted(str(folder / n) for n in names)


# Names that pymilvus's query_iterator, which formats the last id of a page into its next filter,
# turned into an error on every call and into an endless loop (issue 19): every command that lists
# the records (documents, ingest --prune, stats of a collection without them) pages with store/scan.
PAGING_NAMES = [CRAFTED, 'zz" or doc_id != "x.txt', 'q"uote.txt', "back\\slash.txt", "new\nline.txt"]


def test_names_that_broke_the_paging_list_prune_and_delete_exactly(
    env: dict[str, str], stored: dict, tmp_path: Path
) -> None:
    """The ids sort after every other (the prefix's "~"), so the last id of a page, which the next
    page's filter starts from, is a crafted one: the zz name looped for ever, the other errored."""
    folder = tmp_path / "paging"
    folder.mkdir()
    for i, name in enumerate(PAGING_NAMES):
        (folder / name).write_text(f"document {i}\n")
    ingest = ["ingest", str(folder), "--doc-id-prefix", "~paging/", "--json"]
    assert run(env, *ingest).exit_code == 0
    ids = [f"~paging/{n}" for n in PAGING_NAMES]
    started = time.perf_counter()
    listed = run(env, "documents", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(d["doc_id"] for d in json.loads(listed.stdout))[4:] == sorted(ids)
    (folder / PAGING_NAMES[1]).unlink()
    pruned = run(env, *ingest, "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert [f["doc_id"] for f in json.loads(pruned.stdout)["documents"] if f["status"] == "deleted"] == [ids[1]]
    assert run(env, "delete", ids[0]).exit_code == 0
    assert run(env, "stats").exit_code == 0
    assert time.perf_counter() - started < 30  # no endless paging
    after = rows(env)
    assert {k: v for k, v in after.items() if k in stored} == stored
    assert {doc for k, (doc, _) in after.items() if k not in stored} == set(ids[2:])


# -- 2. a bad setting stops the run before it touches stored data ---------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("EMBED_BATCH_SIZE", "0"), ("CHUNK_SIZE", "-5"), ("CHUNK_SIZE", "abc"), ("MAX_FILE_MB", "-1"), ("TOP_K", "0")],
)
def test_a_bad_setting_stops_before_touching_stored_data(
    env: dict[str, str], stored: dict, name: str, value: str
) -> None:
    started = time.perf_counter()
    result = run({**env, f"ASYNCRAG_{name}": value}, "ingest", str(CORPUS / "about.md"))
    one_line_error(result, f"invalid setting {name.lower()} = {value!r}", f"ASYNCRAG_{name}")
    assert time.perf_counter() - started < 5  # no hang, no spin
    assert rows(env) == stored


def test_unknown_keys_and_a_missing_config_file_are_reported(env: dict[str, str], stored: dict, tmp_path: Path) -> None:
    (tmp_path / "asyncrag.toml").write_text('top_k = 3\ncolection = "typo"\n')
    one_line_error(run({k: v for k, v in env.items() if k != "ASYNCRAG_CONFIG"}, "stats"), "unknown setting 'colection'")
    one_line_error(run({**env, "ASYNCRAG_CONFIG": str(tmp_path / "nope.toml")}, "stats"), "nope.toml, which is not a file")
    (tmp_path / "asyncrag.toml").write_text("top_k = [[\n")
    one_line_error(run({k: v for k, v in env.items() if k != "ASYNCRAG_CONFIG"}, "ingest", str(CORPUS)), "not valid TOML")
    assert rows(env) == stored


# -- 3. only ingest creates ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["search", "Viaweb"], ["ask", "Viaweb"], ["stats"]])
def test_reading_commands_never_create_a_collection(env: dict[str, str], stored: dict, command: list[str]) -> None:
    one_line_error(run(env, *command, "--collection", "nonexistent_coll"), "no collection 'nonexistent_coll'", "cli")
    one_line_error(run(env, *command, "--collection", "bad name-with-dash!"), "invalid setting collection")
    listed = json.loads(run(env, "collections", "--json").stdout)
    assert [c["name"] for c in listed] == ["cli"]


def test_reading_commands_never_create_a_database(env: dict[str, str], tmp_path: Path) -> None:
    one_line_error(run(env, "search", "tea", "--uri", str(tmp_path / "typo.db")), "no Milvus Lite database")
    one_line_error(run(env, "collections", "--uri", str(tmp_path / "typo.db")), "no Milvus Lite database")
    assert not (tmp_path / "typo.db").exists()


# -- 4. one line, not a traceback wall -------------------------------------------------------------------


def test_a_database_path_that_cannot_be_made_is_one_line(env: dict[str, str]) -> None:
    one_line_error(run(env, "ingest", str(CORPUS), "--uri", "/proc/forbidden/x.db"), "cannot create the Milvus Lite database")


def test_a_database_open_in_another_process_is_one_line(env: dict[str, str], stored: dict) -> None:
    release_lite(env["ASYNCRAG_URI"])  # this test process lets go of it first
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pymilvus import MilvusClient; c = MilvusClient({env['ASYNCRAG_URI']!r}); "
         "print('open', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        one_line_error(run(env, "stats"), "another process has the Milvus Lite database", "Milvus server")
        real = subprocess.run([ASYNCRAG, "stats"], capture_output=True, text=True, env={**os.environ, **env},
                              timeout=120, check=False)  # a real process: Lite logged a 21-line traceback first
        assert real.returncode == 2 and real.stderr.count("\n") == 1, real.stderr
        assert real.stderr.startswith("error: another process has the Milvus Lite database")
    finally:
        holder.kill()
        holder.wait()
    assert rows(env) == stored


def test_debug_shows_the_traceback(env: dict[str, str]) -> None:
    result = run({**env, "ASYNCRAG_TOP_K": "abc"}, "--debug", "stats")
    assert result.exit_code != 0 and type(result.exception).__name__ == "ConfigError"


@pytest.mark.slow
def test_an_unreachable_embedding_endpoint_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCRAG_", "OPENAI_"))}
    environ.update(ASYNCRAG_CONFIG="", ASYNCRAG_EMBED_MODEL="openai:x", OPENAI_BASE_URL="http://127.0.0.1:1/v1")
    proc = subprocess.run(
        [ASYNCRAG, "ingest", str(CORPUS), "--uri", str(tmp_path / "e.db")],
        capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the OpenAI-compatible embedding model 'x'")
    assert "OPENAI_BASE_URL" in proc.stderr


# -- 5. unreadable files and folders are per-item failures ---------------------------------------------


@pytest.mark.slow
def test_unreadable_files_and_folders_fail_alone_in_a_real_process(tmp_path: Path) -> None:
    """Run as a user without root's power to read anything: as root, without its capabilities."""
    folder = tmp_path / "docs"
    (folder / "locked").mkdir(parents=True)
    (folder / "good.txt").write_text("Herons nest in the reeds by the lake.\n")
    (folder / "locked" / "inside.txt").write_text("never seen\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    secret.chmod(0)
    (folder / "locked").chmod(0)
    only_pictures = tmp_path / "recordings"  # nothing asyncrag reads (pictures it does, by OCR)
    only_pictures.mkdir()
    (only_pictures / "cat.mp3").write_bytes(b"ID3\x03")
    os.mkfifo(folder / "pipe.txt")  # reading it would block for ever; /dev/zero would never end
    (folder / "zero.md").symlink_to("/dev/zero")
    (folder / "gone.md").symlink_to(tmp_path / "nowhere.md")
    prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    environ.update(ASYNCRAG_CONFIG="", ASYNCRAG_URI=str(tmp_path / "u.db"), ASYNCRAG_LLM="none")
    try:
        proc = subprocess.run(
            [*prefix, ASYNCRAG, "ingest", str(secret), str(folder), str(only_pictures), "--json"],
            capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=300, check=False,
        )
    finally:
        (folder / "locked").chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    reasons = {f["path"]: f["reason"] for f in report["failures"]}
    assert reasons == {
        str(secret): reasons[str(secret)],
        str(folder / "locked"): reasons[str(folder / "locked")],
        str(only_pictures): reasons[str(only_pictures)],
        str(folder / "pipe.txt"): "not a regular file (a pipe, device or socket)",
        str(folder / "zero.md"): "not a regular file (a pipe, device or socket)",
        str(folder / "gone.md"): "broken symbolic link",
    }
    assert "permission denied" in reasons[str(secret)].lower()
    assert reasons[str(folder / "locked")].startswith("cannot read folder: Permission denied")
    assert reasons[str(only_pictures)].startswith("no files to ingest in this folder")
    assert (report["files"], report["chunks"]) == (1, 1)  # the good file, stored all the same


# -- 6. an LLM that fails leaves the user the passages ------------------------------------------------


class BrokenLLM:
    """Streams `pieces`, then fails the way a real backend can (a missing package, a crash)."""

    name = "broken"

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    async def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        for piece in self.pieces:
            yield piece
        raise ImportError("accelerate is required when loading a GGUF file `pip install accelerate`.")


@pytest.mark.parametrize("pieces", [[], ["The cooperative ", "was"]], ids=["at-load", "mid-answer"])
def test_any_llm_failure_falls_back_to_a_quoted_answer(
    env: dict[str, str], stored: dict, monkeypatch: pytest.MonkeyPatch, pieces: list[str]
) -> None:
    monkeypatch.setattr("asyncrag.rag.load_llm", lambda spec: BrokenLLM(pieces))
    generating = {**env, "ASYNCRAG_LLM": "local", "ASYNCRAG_ANSWER_MODE": "generate"}
    result = run(generating, "ask", "Who founded the cooperative?", "-k", "2")
    assert result.exit_code == 1, result.output
    assert "no LLM answer: ImportError: accelerate is required" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.startswith("".join(pieces))
    assert "“" in result.stdout and "[1] " in result.stdout and "[2] " in result.stdout  # a quote, the citations

    as_json = run(generating, "ask", "Who founded the cooperative?", "-k", "2", "--json")
    assert as_json.exit_code == 1
    answer = json.loads(as_json.stdout)
    assert answer["llm"] == {"ok": False, "model": None, "error": answer["llm"]["error"]}
    assert answer["llm"]["error"].startswith("ImportError: accelerate is required")
    assert answer["method"] == "extracted" and answer["cited"] and len(answer["sources"]) == 2


async def test_the_library_owns_the_fallback(env: dict[str, str], stored: dict, hash_embedder: HashEmbedder) -> None:
    async with AsyncRAG(embedder=hash_embedder, llm=BrokenLLM(["half"]), uri=env["ASYNCRAG_URI"], collection="cli") as rag:
        tokens: list[str] = []
        answer = await rag.ask("Who founded the cooperative?", k=1, on_token=tokens.append)
    assert tokens == ["half"]
    assert answer.llm is None and answer.llm_error and answer.llm_error.startswith("ImportError")
    assert answer.method == "extracted" and answer.cited == [1] and "“" in answer.answer


# -- 7. ~, -k 0, an empty question ---------------------------------------------------------------------


def test_home_in_uri_is_expanded(env: dict[str, str], tmp_path: Path) -> None:
    result = run({**env, "HOME": str(tmp_path / "home")}, "ingest", str(CORPUS / "about.md"), "--uri", "~/tilde.db")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "tilde.db").is_dir() and not (tmp_path / "~").exists()
    release_lite(str(tmp_path / "home" / "tilde.db"))


def test_k_zero_and_an_empty_question_are_clear_errors(env: dict[str, str], stored: dict) -> None:
    one_line_error(run(env, "search", "tea", "-k", "0"), "top_k (-k) must be between 1 and 1000, not 0")
    one_line_error(run(env, "ask", "tea", "-k", "-3"), "not -3")
    one_line_error(run(env, "search", "   "), "the question is empty")
    one_line_error(run(env, "ask", ""), "the question is empty")
