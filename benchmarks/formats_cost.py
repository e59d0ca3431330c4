"""What each format's reader costs (issue 21): import time, parse time and peak memory on a realistic
generated file, and the installed size of the libraries it brings.

    .venv/bin/python benchmarks/formats_cost.py [--json results/formats_cost.json]

Each measurement runs in a fresh process (as a parser process starts), so that an import is a
first import and a peak RSS (VmHWM, reset before reading, minus the RSS then) is the file's own.
Import time is the median of 5 fresh processes; parse time the median of 3 reads after the first
(whose lazy imports are counted in it). The files, generated here:

- docx: 50 sections of a heading, 10 paragraphs of ~60 words and a 10x5 table (~100 pages)
- pptx: 50 slides of a title, 5 bullets, a 4x4 table and speaker notes
- xlsx: one sheet of 10,000 rows x 10 columns (text, numbers, dates)
- csv: ~1 MB, 8 columns
- epub: 30 chapters of 10 "pages" (~2,000 characters each): ~300 pages
- json: ~5 MB, 10,000 nested records (an API dump)
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# format → (the libraries its reader imports, the distributions that installing it adds)
LIBRARIES = {
    "docx": ("docx", ["python-docx", "lxml"]),
    "pptx": ("pptx", ["python-pptx", "XlsxWriter"]),  # lxml: docx's; Pillow: llama-index-core's already
    "xlsx": ("openpyxl", ["openpyxl", "et-xmlfile"]),
    "epub": ("lxml.etree, bs4, markdownify", []),  # html.py's, and lxml
    "csv": ("csv", []),
    "json": ("json", []),
    "docx-docx2txt": ("docx2txt", ["docx2txt"]),  # the reader before (text only, no tables as tables)
}
WORDS = [
    *("revenue", "margin", "quarter", "growth", "customer", "region", "forecast", "inventory", "supplier"),
    *("contract", "payment", "audit", "budget", "capital", "market", "product", "service", "delivery"),
    *("schedule", "report", "analysis"),
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make(kind: str, d: Path) -> Path:
    rng = random.Random(21)
    path = d / f"sample.{kind.split('-')[0]}"
    if kind.startswith("docx"):
        import docx

        document = docx.Document()
        for s in range(50):
            document.add_heading(f"Section {s}", 1)
            for _ in range(10):
                document.add_paragraph(sentence(rng, 60))
            table = document.add_table(rows=10, cols=5)
            for r in range(10):
                for c in range(5):
                    table.cell(r, c).text = str(rng.randint(100, 99999))
        document.save(str(path))
    elif kind == "pptx":
        from pptx import Presentation
        from pptx.util import Inches

        deck = Presentation()
        for n in range(50):
            slide = deck.slides.add_slide(deck.slide_layouts[1])
            slide.shapes.title.text = f"Slide {n}: {sentence(rng, 4)}"
            slide.placeholders[1].text = "\n".join(sentence(rng, 8) for _ in range(5))
            table = slide.shapes.add_table(4, 4, Inches(1), Inches(5), Inches(6), Inches(1.5)).table
            for r in range(4):
                for c in range(4):
                    table.cell(r, c).text = str(rng.randint(100, 9999))
            slide.notes_slide.notes_text_frame.text = sentence(rng, 40)
        deck.save(str(path))
    elif kind == "xlsx":
        from openpyxl import Workbook

        workbook = Workbook()  # not write_only: that writes no <dimension>, as Excel always does
        sheet = workbook.active
        assert sheet is not None
        sheet.title = "Sales"
        sheet.append(["Item", "Region", "Units", "Price", "Total", "Date", "Rep", "Code", "Margin", "Note"])
        day = dt.datetime(2024, 1, 1)
        for i in range(10_000):
            units, price = rng.randint(1, 500), round(rng.uniform(1, 200), 2)
            sheet.append(
                [
                    f"Item {i}",
                    rng.choice(WORDS),
                    units,
                    price,
                    units * price,
                    day + dt.timedelta(days=i % 365),
                    rng.choice(WORDS).title(),
                    f"C{i:05d}",
                    rng.random(),
                    sentence(rng, 5),
                ]
            )
        workbook.save(path)
    elif kind == "csv":
        lines = ["id,name,city,units,price,date,category,comment"]
        i = size = 0
        while size < 2**20:
            lines.append(
                f"{i},{rng.choice(WORDS)},{rng.choice(WORDS).title()},{rng.randint(1, 999)},"
                f"{rng.uniform(1, 99):.2f},"
                f'2024-{1 + i % 12:02d}-{1 + i % 28:02d},{rng.choice(WORDS)},"{sentence(rng, 6)}"'
            )
            i, size = i + 1, size + len(lines[-1]) + 1
        path.write_text("\n".join(lines) + "\n")
    elif kind == "epub":
        chapters = []
        for c in range(30):
            body = "".join(
                f"<h2>Part {p}</h2>" + "".join(f"<p>{sentence(rng, 30)}</p>" for _ in range(10)) for p in range(10)
            )
            chapters.append(
                f'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>Chapter {c}</title></head><body><h1>Chapter {c}</h1>{body}</body></html>"
            )
        items = "".join(f'<item id="c{c}" href="c{c}.xhtml" media-type="application/xhtml+xml"/>' for c in range(30))
        spine = "".join(f'<itemref idref="c{c}"/>' for c in range(30))
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("mimetype", "application/epub+zip")
            z.writestr(
                "META-INF/container.xml",
                '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                '<rootfiles><rootfile full-path="OEBPS/book.opf"/></rootfiles></container>',
            )
            z.writestr(
                "OEBPS/book.opf",
                f'<package xmlns="http://www.idpf.org/2007/opf"><manifest>{items}</manifest>'
                f"<spine>{spine}</spine></package>",
            )
            for c, chapter in enumerate(chapters):
                z.writestr(f"OEBPS/c{c}.xhtml", chapter)
    elif kind == "json":
        records = [
            {
                "id": i,
                "name": sentence(rng, 3),
                "address": {"city": rng.choice(WORDS).title(), "zip": f"{i % 99999:05d}"},
                "tags": rng.sample(WORDS, 3),
                "orders": [{"sku": f"S{j}", "qty": rng.randint(1, 9), "price": rng.uniform(1, 99)} for j in range(3)],
                "active": i % 3 == 0,
            }
            for i in range(10_000)
        ]
        path.write_text(json.dumps({"customers": records}, indent=1))
    return path


def _status_kb(field: str) -> int:
    """VmRSS or VmHWM (the peak) of this process, from /proc: `ru_maxrss` would carry the parent's
    peak across fork and exec."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def one(kind: str, path: Path, what: str) -> None:
    """In a fresh process: the import time of the reader's libraries, or a parse's time and peak RSS."""
    if what == "import":
        started = time.perf_counter()
        for module in LIBRARIES[kind][0].split(", "):
            __import__(module)
        print(json.dumps(time.perf_counter() - started))
        return
    if kind == "docx-docx2txt":
        import docx2txt

        def read(p: Path) -> str:
            return str(docx2txt.process(str(p)))
    else:
        from asyncrag.ingest.read import READERS

        read = READERS[path.suffix]
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from the RSS now
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    text = read(path)
    first = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        read(path)
        times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "first_s": first,
                "parse_s": statistics.median(times),
                "peak_mb": (peak - before) / 1024,
                "chars": len(text),
                "file_mb": path.stat().st_size / 2**20,
            }
        )
    )


def installed_mb(distributions: list[str]) -> float:
    total = 0
    for name in distributions:
        for file in importlib.metadata.distribution(name).files or []:
            located = Path(str(file.locate()))
            if located.is_file():
                total += located.stat().st_size
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=3, metavar=("KIND", "PATH", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], Path(args.one[1]), args.one[2])
        return

    def child(kind: str, path: Path, what: str) -> object:
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, str(path), what], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (modules, distributions) in LIBRARIES.items():
            if kind == "docx-docx2txt" and importlib.util.find_spec("docx2txt") is None:
                continue  # no longer installed: `pip install docx2txt==0.9` to compare
            d = Path(tmp) / kind
            d.mkdir()
            path = make(kind, d)
            imports = [float(child(kind, path, "import")) for _ in range(5)]  # type: ignore[arg-type]
            parsed = child(kind, path, "parse")
            rows[kind] = {
                "imports": modules,
                "import_s": statistics.median(imports),
                **parsed,  # type: ignore[dict-item]
                "installed_mb": installed_mb(distributions),
                "adds": distributions,
            }
            print(kind, json.dumps(rows[kind]), flush=True)
    print("\n| format | file | text | import | parse (first) | parse | peak RSS | installs |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in rows.items():
        adds = ", ".join(r["adds"]) or "nothing new"
        print(
            f"| {kind} | {r['file_mb']:.2f} MB | {r['chars'] / 1e6:.2f} M chars | "
            f"{r['import_s'] * 1000:.0f} ms | {r['first_s']:.2f} s | {r['parse_s']:.2f} s | {r['peak_mb']:.0f} MB | "
            f"{r['installed_mb']:.1f} MB ({adds}) |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
