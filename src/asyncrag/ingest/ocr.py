"""Text from pictures of text: scanned PDF pages and image files.

Two engines, one interface (`read(image) -> text`):

- `rapidocr` (the default): RapidOCR on ONNX Runtime, whose PP-OCRv4 detection and recognition
  models come inside its PyPI wheel (rapidocr-onnxruntime), so OCR needs no download and no
  system package. Measured here on 2 cores: ~8 s for a dense 10-K page once warm.
- `tesseract`: Debian's `tesseract-ocr` (`apt-get install tesseract-ocr`), when installed and
  chosen (`--ocr tesseract`): ~3.5 s for the same page on one core, and better at English prose.

Only pages without a text layer are OCR'd (ingest/read.py decides); each engine is made once
per parser process. An engine that is chosen but missing fails the file with a one-line reason.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Protocol

from asyncrag.config import OcrEngine
from asyncrag.errors import ReadError

if TYPE_CHECKING:
    from PIL.Image import Image

# Pixels per PDF point when a page is drawn for OCR: 144 dpi for RapidOCR (its detector scales the
# page itself; recognition rescales each line to 48 px high), 300 dpi for tesseract, which wants it.
RENDER_SCALE = {"rapidocr": 2.0, "tesseract": 300 / 72}
MAX_OCR_PIXELS = 40_000_000  # an image file larger than this is scaled down first (~6300 x 6300)
TESSERACT_TIMEOUT_S = 120


class Engine(Protocol):
    name: str

    def read(self, image: Image) -> str: ...


class _RapidOCR:
    name = "rapidocr"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:  # OpenCV needs the system's libGL (Debian: libgl1)
            raise ReadError(f"RapidOCR cannot load ({e}): `apt-get install libgl1`, or use --ocr tesseract") from None
        self._ocr = RapidOCR()

    def read(self, image: Image) -> str:
        import numpy as np

        # The angle classifier is for text turned upside down: scans of pages are upright, and
        # skipping it saves ~10 % of the time.
        found, _ = self._ocr(np.asarray(image.convert("RGB")), use_cls=False)
        return _lines([(box, text) for box, text, _score in found or []])


class _Tesseract:
    name = "tesseract"

    def __init__(self) -> None:
        binary = shutil.which("tesseract")
        if binary is None:
            raise ReadError(
                "OCR engine tesseract is not installed: `apt-get install tesseract-ocr`, or use --ocr rapidocr"
            )
        self._binary = binary

    def read(self, image: Image) -> str:
        png = io.BytesIO()
        image.convert("L").save(png, format="PNG")
        try:
            done = subprocess.run(  # the image on stdin: no file name reaches a command line
                [self._binary, "stdin", "stdout", "-l", "eng", "--psm", "3"],
                input=png.getvalue(),
                capture_output=True,
                timeout=TESSERACT_TIMEOUT_S,
                # Its OpenMP threads fight over the cores: 25 s for a dense page, 3.5 s with one thread.
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ReadError(f"tesseract took over {TESSERACT_TIMEOUT_S} s on a page; not read") from None
        if done.returncode != 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise ReadError(f"tesseract failed ({last})")
        return done.stdout.decode("utf-8", errors="replace")


@functools.cache
def engine(name: OcrEngine) -> Engine:
    """The engine called `name`, made once per process (RapidOCR loads its models in ~0.5 s)."""
    if name == "rapidocr":
        return _RapidOCR()
    if name == "tesseract":
        return _Tesseract()
    raise ReadError("this page has no text layer and OCR is off (--ocr rapidocr or tesseract reads it)")


def _lines(found: list[tuple[list[list[float]], str]]) -> str:
    """Detected boxes as lines of text in reading order: boxes whose vertical middles fall within
    one line's height are one line, left to right; a gap of over a line's height starts a paragraph."""
    boxes = sorted(
        (min(p[1] for p in box), max(p[1] for p in box), min(p[0] for p in box), text)
        for box, text in found
        if text.strip()
    )
    lines: list[tuple[float, float, list[tuple[float, str]]]] = []
    for top, bottom, left, text in boxes:
        middle = (top + bottom) / 2
        if lines and lines[-1][0] <= middle <= lines[-1][1]:
            line_top, line_bottom, words = lines[-1]
            lines[-1] = (line_top, max(line_bottom, bottom), [*words, (left, text)])
        else:
            lines.append((top, bottom, [(left, text)]))
    out: list[str] = []
    for i, (top, bottom, words) in enumerate(lines):
        if i and top - lines[i - 1][1] > bottom - top:
            out.append("")
        out.append(" ".join(text for _, text in sorted(words)))
    return "\n".join(out)
