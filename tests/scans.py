"""Scanned copies of PDFs, made in the test (never committed): each page drawn to a grayscale
picture and the pictures bound into an image-only PDF, as a scanner's PDF is (no text layer)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def scanned_copy(pdf: Path, dest: Path, pages: Iterable[int] | None = None, dpi: int = 150) -> Path:
    """`dest`: the pages (0-based; all by default) of `pdf` as pictures, at `dpi`, JPEG-compressed."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        images = [doc[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in (pages or range(len(doc)))]
    finally:
        doc.close()
    images[0].save(dest, format="PDF", save_all=True, append_images=images[1:], resolution=dpi, quality=80)
    return dest
