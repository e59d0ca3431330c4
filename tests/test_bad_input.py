"""Bad input: every broken file is reported on its own, with a reason, and never stops the good ones.

Also: a Milvus that does not answer, and a collection filled by another embedding model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_formats import ZIP_SUFFIXES, corrupt_zip, deep_json, empty_pptx, nul_csv, zip_bomb
from typer.testing import CliRunner

from asyncrag import cli
from asyncrag.embed.local import LocalEmbedder
from asyncrag.errors import StoreError
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport

GOOD_TEXT = "Penguins at the Harbour Zoo are fed fresh herring every morning at seven o'clock."
GOOD_QUESTION = "What do the penguins at the zoo eat, and when?"
UNREACHABLE = "http://127.0.0.1:1"

MakePdf = Callable[[list[str]], bytes]


# -- the bad files -----------------------------------------------------------------------------


def random_pdf(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "random.pdf"
    path.write_bytes(os.urandom(4096))
    return path


def truncated_pdf(d: Path, make_pdf: MakePdf) -> Path:
    data = make_pdf(["The lighthouse keeper's cat is called Biscuit.", "Second page about the fog horn."])
    path = d / "truncated.pdf"
    path.write_bytes(data[: len(data) // 2])
    return path


def _save(writer, path: Path) -> Path:
    with path.open("wb") as f:
        writer.write(f)
    return path


def encrypted_pdf(d: Path, make_pdf: MakePdf) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["Zebras are secretly purple under their stripes."])))
    writer.encrypt(user_password="s3cret", owner_password="owner")
    return _save(writer, d / "encrypted.pdf")


def textless_pdf(d: Path, make_pdf: MakePdf) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)  # a page with no text operators: a scan without OCR looks like this
    writer.add_blank_page(595, 842)
    return _save(writer, d / "scan.pdf")


def empty_txt(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "empty.txt"
    path.write_bytes(b"")
    return path


def whitespace_txt(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "blank.md"
    path.write_text("\n   \n\t\n")
    return path


def binary_txt(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "binary.txt"
    path.write_bytes(bytes(range(256)) * 8)
    return path


def latin1_txt(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "latin1.txt"
    path.write_bytes("Café au lait and crème brûlée, señor.".encode("latin-1"))
    return path


def missing(d: Path, make_pdf: MakePdf) -> Path:
    return d / "does-not-exist.txt"


def unsupported(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "notes.xyz"
    path.write_text("Plain words in a file type we do not read.")
    return path


def huge_txt(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "huge.txt"
    path.write_text("lorem ipsum " * (2 * 2**20 // 12 + 1))  # 2 MiB, over max_file_mb=1
    return path


def pdf_of_text_operators(mib: float) -> bytes:
    """One page whose compressed content holds `mib` MiB of text operators: 20 MiB fit in ~70 KB."""
    import zlib

    line = b"(" + b"A" * 90 + b") Tj T*\n"
    content = zlib.compress(b"BT /F1 2 Tf 2 TL 10 800 Td\n" + line * int(mib * 2**20 / len(line)) + b"ET\n", 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return pdf + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def pdf_bomb(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "bomb.pdf"
    path.write_bytes(pdf_of_text_operators(20))  # PDFium alone: ~270 MB to load the page, ~1.8 GB to read it
    return path


def pdf_dense_page(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "dense.pdf"
    path.write_bytes(pdf_of_text_operators(0.5))  # under the content limit, ~470k characters on one page
    return path


def corrupt_png(d: Path, make_pdf: MakePdf) -> Path:
    path = d / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    return path


def image_bomb(d: Path, make_pdf: MakePdf) -> Path:
    """A 30 KB PNG of 20,000 x 20,000 pixels: 400 M pixels once decoded."""
    from PIL import Image

    path = d / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(path, optimize=True)
    return path


def blank_image(d: Path, make_pdf: MakePdf) -> Path:
    from PIL import Image

    path = d / "blank.jpg"
    Image.new("RGB", (400, 300), "white").save(path)
    return path


def scan_with_image_bomb(d: Path, make_pdf: MakePdf) -> Path:
    """A page with no text that draws one image whose dictionary says 50,000 x 50,000 pixels."""
    import zlib

    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, NumberObject, StreamObject

    writer = PdfWriter()
    page = writer.add_blank_page(595, 842)
    image = StreamObject()
    image.set_data(zlib.compress(bytes(4096)))
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(50_000),
            NameObject("/Height"): NumberObject(50_000),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
            NameObject("/Filter"): NameObject("/FlateDecode"),
        }
    )
    xobjects = DictionaryObject({NameObject("/Im0"): writer._add_object(image)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/XObject"): xobjects})
    contents = StreamObject()
    contents.set_data(b"q 595 0 0 842 0 0 cm /Im0 Do Q")
    page[NameObject("/Contents")] = writer._add_object(contents)
    return _save(writer, d / "scan-bomb.pdf")


def docx_bomb(d: Path, make_pdf: MakePdf) -> Path:
    return zip_bomb(d, ".docx")


# (builder, words the reason must contain)
BAD = {
    "random-bytes-pdf": (random_pdf, "corrupt or unreadable PDF"),
    "truncated-pdf": (truncated_pdf, "corrupt or unreadable PDF"),
    "encrypted-pdf": (encrypted_pdf, "encrypted PDF"),
    "pdf-without-text": (textless_pdf, "no extractable text"),
    "empty-txt": (empty_txt, "no text"),
    "whitespace-md": (whitespace_txt, "no text"),
    "binary-txt": (binary_txt, "binary content"),
    "latin1-txt": (latin1_txt, "not UTF-8"),
    "missing-path": (missing, "no such file or directory"),
    "unsupported-xyz": (unsupported, "unsupported file type"),
    "huge-file": (huge_txt, "over the 1 MiB limit"),
    "pdf-bomb": (pdf_bomb, "page 1 decompresses to over 1 MiB of content"),
    "pdf-dense-page": (pdf_dense_page, "characters, over the limit of 200,000"),
    # every zip-based format (Office, EPUB) is corrupt, or a bomb, the same ways (built in test_formats.py)
    **{f"corrupt-{s[1:]}": (lambda d, make_pdf, s=s: corrupt_zip(d, s), f"not a valid {s} file") for s in ZIP_SUFFIXES},
    **{f"{s[1:]}-bomb": (lambda d, make_pdf, s=s: zip_bomb(d, s), "unzips to 70 MiB of XML") for s in ZIP_SUFFIXES},
    "empty-pptx": (lambda d, make_pdf: empty_pptx(d), "no text"),
    "binary-csv": (lambda d, make_pdf: nul_csv(d), "binary content"),
    "json-nested-too-deep": (lambda d, make_pdf: deep_json(d), "JSON nested more than"),
    # images are read by OCR (ingest/ocr.py)
    "corrupt-png": (corrupt_png, "not a readable image"),
    "image-bomb": (image_bomb, "over 100,000,000 pixels"),
    "blank-image": (blank_image, "no text found in the image"),
    "scan-image-bomb": (scan_with_image_bomb, "page 1 holds an image of over 100,000,000 pixels"),
}


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good" / "penguins.txt"
    path.parent.mkdir()
    path.write_text(GOOD_TEXT)
    return path


async def _assert_good_is_searchable(rag: AsyncRAG, good: Path) -> None:
    top = (await rag.search(GOOD_QUESTION, k=1))[0]
    assert top.source == str(good) and "herring" in top.text


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_file_is_reported_and_good_file_is_stored(
    case: str, tmp_path: Path, lite_uri: str, embedder: LocalEmbedder, make_pdf: MakePdf, good_file: Path
) -> None:
    build, reason = BAD[case]
    bad = build(tmp_path, make_pdf)
    async with AsyncRAG(
        embedder=embedder, uri=lite_uri, collection="bad", parse_workers=0, llm="none", max_file_mb=1
    ) as rag:
        report = await rag.ingest([bad, good_file])
        assert not report.ok
        assert [f.path for f in report.failures] == [str(bad)]
        assert reason in report.failures[0].reason, report.failures[0].reason
        assert "Traceback" not in report.failures[0].reason and "\n" not in report.failures[0].reason
        assert report.files == 1 and report.chunks >= 1
        await _assert_good_is_searchable(rag, good_file)
        stats = await rag.stats()
        assert (stats.documents, stats.chunks) == (1, report.chunks)  # nothing of the bad file was stored


async def test_html_is_stored_without_its_script_and_style(
    lite_uri: str, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    page = tmp_path / "owls.html"
    page.write_text(
        "<html><head><title>Owl post</title><style>.xyzzyStyle { color: red }</style></head><body>"
        "<h1>Owl post</h1><p>The owl delivers the village mail every Thursday afternoon.</p>"
        "<script>var plughSecretToken = 'do not index me';</script>"
        "<noscript>noscriptFrobozz</noscript></body></html>"
    )
    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="html", parse_workers=0, llm="none") as rag:
        report = await rag.ingest([page])
        assert report.ok and report.files == 1
        store = await rag.store()
        texts = [
            r["text"] for r in store.client.query(store.collection_name, filter="", output_fields=["text"], limit=100)
        ]
        stored = "\n".join(texts)
        assert "owl delivers the village mail" in stored
        for hidden in ("plughSecretToken", "do not index me", "xyzzyStyle", "noscriptFrobozz", "<p>"):
            assert hidden not in stored
        top = (await rag.search("When does the owl deliver mail?", k=1))[0]
        assert top.source == str(page) and top.page is None


async def test_docx_is_stored(lite_uri: str, embedder: LocalEmbedder, tmp_path: Path) -> None:
    import docx

    path = tmp_path / "submarine.docx"
    document = docx.Document()
    document.add_heading("The yellow submarine", level=1)
    document.add_paragraph("Inside, the submarine is painted bright yellow and smells of marmalade.")
    document.save(str(path))
    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="docx", parse_workers=0, llm="none") as rag:
        report = await rag.ingest([path])
        assert report.ok and report.files == 1 and report.chunks >= 1
        top = (await rag.search("What does the inside of the submarine smell of?", k=1))[0]
        assert top.source == str(path) and "marmalade" in top.text and top.page is None


async def test_unsupported_files_in_a_folder_are_skipped_quietly(
    lite_uri: str, embedder: LocalEmbedder, tmp_path: Path, good_file: Path
) -> None:
    folder = good_file.parent
    (folder / "sound.mp3").write_bytes(b"ID3" + os.urandom(64))
    (folder / "notes.xyz").write_text("not ours")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "secret.txt").write_text("Hidden folders are skipped.")
    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="dir", parse_workers=0, llm="none") as rag:
        report = await rag.ingest([folder])
        assert report.ok, report.failures
        assert report.files == 1
        await _assert_good_is_searchable(rag, good_file)


@pytest.mark.slow
async def test_all_bad_files_at_once_in_parser_processes(
    tmp_path: Path, lite_uri: str, embedder: LocalEmbedder, make_pdf: MakePdf, good_file: Path
) -> None:
    """The process-pool path: a broken file in a worker process is still one file's failure."""
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = {case: build(bad_dir, make_pdf) for case, (build, _) in BAD.items()}
    good_pdf = tmp_path / "good" / "report.pdf"
    good_pdf.write_bytes(make_pdf(["Cover page.", "The orchard harvested 412 tonnes of quince in 2025."]))
    async with AsyncRAG(
        embedder=embedder, uri=lite_uri, collection="bad", parse_workers=2, llm="none", max_file_mb=1
    ) as rag:
        report = await rag.ingest([*bad.values(), good_file.parent])
        reasons = {f.path: f.reason for f in report.failures}
        assert set(reasons) == {str(p) for p in bad.values()}
        for case, path in bad.items():
            assert BAD[case][1] in reasons[str(path)], (case, reasons[str(path)])
        assert report.files == 2
        await _assert_good_is_searchable(rag, good_file)
        quince = (await rag.search("How much quince did the orchard harvest?", k=1))[0]
        assert quince.source == str(good_pdf) and quince.page == 2


# -- the CLI's exit codes ----------------------------------------------------------------------


@pytest.fixture
def cli_env(cli_env: dict[str, str]) -> dict[str, str]:
    """The shared CLI environment (conftest), with a 1 MiB file limit."""
    return {**cli_env, "ASYNCRAG_MAX_FILE_MB": "1"}


def test_cli_ingest_exits_1_when_a_file_failed(
    cli_env: dict[str, str], tmp_path: Path, make_pdf: MakePdf, good_file: Path
) -> None:
    bad = [encrypted_pdf(tmp_path, make_pdf), latin1_txt(tmp_path, make_pdf), missing(tmp_path, make_pdf)]
    result = CliRunner().invoke(cli.app, ["ingest", *map(str, bad), str(good_file)], env=cli_env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: a clean exit
    for path in bad:
        assert f"failed {path}:" in result.stderr
    assert "encrypted PDF" in result.stderr and "not UTF-8" in result.stderr
    assert "1 files, 1 chunks, 3 failures" in result.stdout

    found = CliRunner().invoke(cli.app, ["search", GOOD_QUESTION, "--json", "-k", "1"], env=cli_env)
    assert found.exit_code == 0 and "herring" in found.stdout  # the good file was stored all the same


def test_cli_ingest_json_report_lists_failures(
    cli_env: dict[str, str], tmp_path: Path, make_pdf: MakePdf, good_file: Path
) -> None:
    import json

    bad = empty_txt(tmp_path, make_pdf)
    result = CliRunner().invoke(cli.app, ["ingest", str(bad), str(good_file), "--json"], env=cli_env)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["files"] == 1 and report["chunks"] >= 1
    assert report["failures"] == [{"path": str(bad), "reason": "no text in file"}]


def test_cli_ingest_exits_0_when_nothing_failed(cli_env: dict[str, str], good_file: Path) -> None:
    result = CliRunner().invoke(cli.app, ["ingest", str(good_file)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "1 files, 1 chunks, 0 failures" in result.stdout
    assert "failed" not in result.stderr


# -- Milvus that does not answer -----------------------------------------------------------------


async def test_unreachable_milvus_fails_fast_in_the_library(embedder: LocalEmbedder) -> None:
    rag = AsyncRAG(embedder=embedder, uri=UNREACHABLE, collection="x", llm="none")
    for call in (rag.stats, rag.collections, lambda: rag.search("anything"), lambda: rag.ingest([__file__])):
        started = time.perf_counter()
        with pytest.raises(StoreError, match=r"cannot reach Milvus at http://127\.0\.0\.1:1"):
            await call()
        assert time.perf_counter() - started < 10
    await rag.aclose()


@pytest.mark.parametrize("command", [["search", "anything"], ["stats"], ["collections"], ["ingest", "README.md"]])
def test_unreachable_milvus_cli_is_one_line_and_exit_2(cli_env: dict[str, str], command: list[str]) -> None:
    started = time.perf_counter()
    result = CliRunner().invoke(cli.app, [*command, "--uri", UNREACHABLE], env=cli_env)
    assert time.perf_counter() - started < 10
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Milvus at http://127.0.0.1:1"), result.stderr


def test_unreachable_milvus_real_process_has_no_traceback(tmp_path: Path) -> None:
    """The installed command, as a user runs it: the model must not be loaded before the connection fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env["ASYNCRAG_CONFIG"] = ""
    started = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "asyncrag"), "search", "anything", "--uri", UNREACHABLE],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "cannot reach Milvus" in proc.stderr
    assert elapsed < 30, elapsed  # imports included; the connection itself fails in well under a second


def _peak_rss_mb(args: list[str], cwd: Path) -> tuple[float, dict]:
    """`asyncrag ingest ARGS --json` in a real process: its peak RSS and its report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRAG_")}
    env.update(ASYNCRAG_CONFIG="", ASYNCRAG_URI=str(cwd / "bombs.db"), ASYNCRAG_LLM="none")
    command = [str(Path(sys.executable).parent / "asyncrag"), "ingest", *args, "--json"]
    wrapper = (
        "import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.stdout, p.stderr]))"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, env=env, cwd=cwd,
                         timeout=600, check=True)
    peak, stdout, stderr = json.loads(out.stdout)
    assert "Traceback" not in stderr, stderr
    return peak, json.loads(stdout)


@pytest.mark.slow
def test_bombs_cost_a_real_ingest_little_memory(tmp_path: Path, make_pdf: MakePdf) -> None:
    """Issue 19: a 70 KB PDF drove an ingest to 3.9 GB. Each file fails alone, in one line, cheaply."""
    good = tmp_path / "good.pdf"
    good.write_bytes(make_pdf(["The lighthouse keeper's cat is called Biscuit."]))
    bombs = [build(tmp_path, make_pdf) for build in (pdf_bomb, pdf_dense_page, docx_bomb)]
    alone, _ = _peak_rss_mb([str(good)], tmp_path)
    (tmp_path / "bombs.db").rename(tmp_path / "first.db")
    peak, report = _peak_rss_mb([str(good), *map(str, bombs)], tmp_path)
    assert report["files"] == 1 and {f["path"] for f in report["failures"]} == set(map(str, bombs))
    print(f"peak RSS: good file alone {alone:.0f} MB, with the bombs {peak:.0f} MB")
    assert peak - alone <= 200, (alone, peak)


# -- another embedding model ---------------------------------------------------------------------


class TinyEmbedder:
    """A real (if poor) embedding model: hashed character trigrams. Satisfies the Embedder protocol."""

    max_tokens = 512
    tokenizer_file = None

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.identity, self.dim = name, name, dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dim
            for i in range(len(text) - 2):
                v[int(hashlib.md5(text[i : i + 3].encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            out.append([x / norm for x in v])
        return out


@pytest.mark.parametrize("dim", [384, 16], ids=["same-dim-other-name", "other-dim"])
async def test_another_embedding_model_is_a_clear_error(
    dim: int, lite_uri: str, embedder: LocalEmbedder, good_file: Path
) -> None:
    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="docs", parse_workers=0, llm="none") as rag:
        assert (await rag.ingest([good_file])).ok

    tiny = TinyEmbedder("tiny-trigrams", dim)
    async with AsyncRAG(embedder=tiny, uri=lite_uri, collection="docs", parse_workers=0, llm="none") as other:
        with pytest.raises(StoreError) as caught:
            await other.search(GOOD_QUESTION)
        message = str(caught.value)
        assert "sentence-transformers/all-MiniLM-L6-v2" in message and "tiny-trigrams" in message
        assert f"({dim} dims)" in message and "384-dim" in message and "--collection" in message
        with pytest.raises(StoreError):
            await other.ingest([good_file])

    # The collection is untouched, and a new collection for the other model works side by side.
    async with AsyncRAG(embedder=tiny, uri=lite_uri, collection="tiny", parse_workers=0, llm="none") as fresh:
        report: IngestReport = await fresh.ingest([good_file])
        assert report.ok and report.chunks == 1
        assert (await fresh.stats()).embed_model == "tiny-trigrams"
    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="docs", parse_workers=0, llm="none") as rag:
        stats = await rag.stats()
        assert (stats.chunks, stats.dim) == (1, 384)
        await _assert_good_is_searchable(rag, good_file)
