"""Scanned copies of PDFs, made in the test (never committed): each page drawn to a grayscale
picture and the pictures bound into an image-only PDF, as a scanner makes them (no text layer)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path


def scanned_copy(pdf: Path, dest: Path, pages: Iterable[int] | None = None, dpi: int = 150) -> Path:
    """`dest`: the pages (0-based; all by default) of `pdf` as JPEG pictures at `dpi`. Each page is
    held compressed (~0.3 MB at 200 dpi, not 3.7 MB of pixels): PIL copies a JPEG into the PDF as is."""
    import pypdfium2 as pdfium
    from PIL import Image

    doc = pdfium.PdfDocument(pdf)
    images = []
    try:
        for i in pages if pages is not None else range(len(doc)):
            jpeg = io.BytesIO()
            doc[i].render(scale=dpi / 72, grayscale=True).to_pil().save(jpeg, format="JPEG", quality=80)
            images.append(Image.open(jpeg))
    finally:
        doc.close()
    dest.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(dest, format="PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return dest
