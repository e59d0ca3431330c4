"""Read one file (or a range of PDF pages) into LlamaIndex `Document`s, or say in words why not.

Runs in parser processes: keep it free of heavy imports and of global state.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.schema import Document

from asyncrag.config import OcrEngine
from asyncrag.errors import ReadError
from asyncrag.ingest import data, epub, office, pdf_tables
from asyncrag.ingest.ocr import MAX_OCR_PIXELS, RENDER_SCALE
from asyncrag.ingest.ocr import engine as ocr_engine
from asyncrag.ingest.text import decode_text, read_text

if TYPE_CHECKING:
    import pypdfium2 as pdfium
    from PIL.Image import Image as PILImage

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}  # read by OCR (ingest/ocr.py)

# What a file may expand to. Upload and `max_file_mb` limits see compressed bytes: a 70 KB PDF
# whose page decompresses to 20 MB of text operators took PDFium ~270 MB to load and ~1.8 GB
# to extract (~14 bytes per content byte, ~92 per character). A dense page of a 10-K holds
# 133 KB of content and 7,300 characters; the limits leave 7-25x room and keep one page's
# extraction under ~110 MB. Each is checked before the expensive step, and breaking one fails
# the file alone, with a one-line reason. (Zip-based formats: office.MAX_UNZIPPED_BYTES.)
MAX_PDF_PAGES = 10_000
MAX_PAGE_CONTENT_BYTES = 2**20  # a page's drawing instructions, decompressed (measured by pypdf, capped)
MAX_PAGE_CHARS = 200_000
# A page whose text layer holds fewer characters than this, and that draws an image, is a scan:
# it is OCR'd. (A scanner's stamp, "Page 3", is a text layer of a few characters.)
MIN_PAGE_TEXT_CHARS = 32
MAX_IMAGE_PIXELS = 100_000_000  # an image's pixels, in a file or a PDF page (a 600 dpi A4 page is 35 M)
MAX_IMAGE_FRAMES = 1_000  # pages of a multi-page TIFF


# A file name is embedded with each chunk (it often says what the file is about), counted against
# the chunk's tokens by the splitter: a longer one (100 CJK characters are ~100 tokens of a
# 128-token chunk, and more failed the document) is stored and filterable, but not embedded.
MAX_EMBEDDED_NAME_CHARS = 48


def document(text: str, source: str, page: int | None = None, ocr: str | None = None) -> Document:
    """One Document; `ocr` names the engine that read its text off a picture (shown with the source)."""
    name = Path(source).name
    metadata: dict[str, Any] = {"source": source, "file_name": name}
    if page is not None:
        metadata["page"] = page
    if ocr is not None:
        metadata["ocr"] = ocr
    hidden = ["source", "ocr"] if len(name) <= MAX_EMBEDDED_NAME_CHARS else ["source", "ocr", "file_name"]
    return Document(
        id_=source if page is None else f"{source}#page={page}",  # chunk() points chunks at the file
        text=text,
        metadata=metadata,
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=list(hidden),
    )


def read_text_range(path: Path, source: str, start: int, end: int) -> list[Document]:
    """Bytes start..end-1 of a big text file, as one Document (none if they hold only whitespace)."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read(end - start)
    except OSError as e:
        raise ReadError(f"cannot read file: {e.strerror}") from None
    text = decode_text(data, start)
    return [document(text, source)] if text.strip() else []


def read_html(path: Path) -> str:
    from asyncrag.ingest.html import html_to_markdown

    return html_to_markdown(read_text(path))


def open_pdf(path: Path) -> pdfium.PdfDocument:
    """PDFium (pypdfium2) extracts text ~18x faster than pypdf (0.7 s vs 13 s for a 307-page 10-K)."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise ReadError("encrypted PDF: it needs a password") from None
        raise ReadError(f"corrupt or unreadable PDF ({e})") from None


def pdf_page_count(path: Path) -> int:
    pdf = open_pdf(path)
    try:
        pages = len(pdf)
    finally:
        pdf.close()
    if pages > MAX_PDF_PAGES:
        raise ReadError(f"{pages} pages, over the limit of {MAX_PDF_PAGES}; not read")
    return pages


def check_pdf_pages(path: Path, first: int, last: int) -> None:
    """Refuse pages whose content decompresses past `MAX_PAGE_CONTENT_BYTES`, before PDFium loads them
    (once per file, when it is planned: pypdf reads the page tree in ~0.25 s for 307 pages).

    pypdf decodes a page's content streams under output limits of its own (its `Configuration`),
    so a bomb costs it at most the limit. Anything else pypdf cannot parse is left to PDFium,
    the reader; this only guards it.
    """
    import logging

    from pypdf import PdfReader
    from pypdf._configuration import apply_configuration
    from pypdf.errors import LimitReachedError

    cap = MAX_PAGE_CONTENT_BYTES
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its notes on malformed files are PDFium's business
    with apply_configuration(
        array_based_stream_maximum_output_length=cap,
        zlib_maximum_output_length=cap,
        lzw_maximum_output_length=cap,
        run_length_maximum_output_length=cap,
        jbig2_maximum_output_length=cap,
    ):
        try:
            pages = PdfReader(path).pages
            for i in range(first, min(last, len(pages))):
                try:
                    size = _content_bytes(pages[i].get("/Contents"))
                except LimitReachedError:
                    size = cap + 1
                if size > cap:
                    raise ReadError(
                        f"page {i + 1} decompresses to over {cap / 2**20:g} MiB of content "
                        "(a decompression bomb?); not read"
                    )
        except ReadError:
            raise
        except Exception as e:  # noqa: BLE001 - not pypdf's to judge: PDFium reads it or says why not
            logging.getLogger(__name__).debug("pypdf could not measure %s (%s); PDFium reads it", path, e)


def _content_bytes(contents: Any) -> int:
    """The decoded size of a page's /Contents: a stream, or an array of them (not parsed into operators)."""
    contents = contents.get_object() if contents is not None else None
    if contents is None:
        return 0
    streams = contents if isinstance(contents, list) else [contents]
    return sum(len(stream.get_object().get_data()) for stream in streams)


def _page_text(page: pdfium.PdfPage, number: int) -> str:
    import pypdfium2 as pdfium

    try:
        textpage = page.get_textpage()
        if textpage.count_chars() > MAX_PAGE_CHARS:
            raise ReadError(
                f"page {number} holds {textpage.count_chars():,} characters, over the limit of "
                f"{MAX_PAGE_CHARS:,}; not read"
            )
        text: str = textpage.get_text_range()
    except pdfium.PdfiumError as e:
        raise ReadError(f"cannot extract text from page {number} ({e})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_scan(page: pdfium.PdfPage, text: str) -> bool:
    """A page with (next to) no text layer that draws an image: its text is in the picture."""
    import pypdfium2.raw as pdfium_c

    if len("".join(text.split())) >= MIN_PAGE_TEXT_CHARS:
        return False
    return next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3), None) is not None


def pages_to_ocr(path: Path, first: int, last: int) -> list[int]:
    """The pages (0-based) among first..last-1 that are scans (~3 ms a page: their text layer is read)."""
    pdf = open_pdf(path)
    try:
        return [i for i in range(first, min(last, len(pdf))) if _is_scan(pdf[i], _page_text(pdf[i], i + 1))]
    finally:
        pdf.close()


def read_pdf_pages(
    path: Path, source: str, first: int, last: int, ocr: OcrEngine = "rapidocr", tables: bool = True
) -> list[Document]:
    """Pages first..last-1 (0-based) as one Document each, numbered from 1 as people cite them;
    a scanned page is read by OCR (`ocr`: the engine; "off" leaves it out), and a page's ruled
    tables are written as Markdown tables (`tables`; ingest/pdf_tables.py)."""
    pdf = open_pdf(path)
    finder = pdf_tables.TableFinder(path)
    docs = []
    try:
        for i in range(first, min(last, len(pdf))):
            page = pdf[i]
            text = _page_text(page, i + 1)
            engine = None
            if ocr != "off" and _is_scan(page, text):
                engine = ocr_engine(ocr)
                text = engine.read(_draw(page, i + 1, RENDER_SCALE[ocr]))
            elif tables:
                text = finder.page_text(page, text, i)
            if text.strip():
                docs.append(document(text, source, page=i + 1, ocr=engine.name if engine else None))
    finally:
        pdf.close()
        finder.close()
    return docs


def _draw(page: pdfium.PdfPage, number: int, scale: float) -> PILImage:
    """A scanned page as a picture for OCR. Its images' sizes are read first (from their
    dictionaries, nothing decoded): drawing decodes them whole, and a crafted one of a few KB can
    say 50,000 x 50,000 pixels. A huge page (a 200-inch MediaBox) is drawn at a smaller scale."""
    import pypdfium2.raw as pdfium_c

    for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
        width, height = image.get_px_size()
        if width * height > MAX_IMAGE_PIXELS:
            raise ReadError(f"page {number} holds an image of over {MAX_IMAGE_PIXELS:,} pixels; not read")
    width, height = page.get_size()
    scale = min(scale, 0.999 * (MAX_OCR_PIXELS / max(1.0, width * height)) ** 0.5)  # pdfium rounds pixels up
    picture: PILImage = page.render(scale=scale).to_pil()
    return picture


def read_image(path: Path, source: str, ocr: OcrEngine) -> list[Document]:
    """An image file's text, by OCR; each page of a multi-page TIFF is a page."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if ocr == "off":
        raise ReadError("an image is read by OCR, and OCR is off (--ocr rapidocr or tesseract reads it)")
    engine = ocr_engine(ocr)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    docs = []
    try:
        with warnings.catch_warnings():  # PIL warns of what it decodes past its limit: here that fails the file
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only: the size is known before any pixel
        with image:
            frames = getattr(image, "n_frames", 1)
            if frames > MAX_IMAGE_FRAMES:
                raise ReadError(f"{frames} pages, over the limit of {MAX_IMAGE_FRAMES}; not read")
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if frame.width * frame.height > MAX_IMAGE_PIXELS:  # each page of a TIFF has its own size
                    raise Image.DecompressionBombError
                text = engine.read(_fit(frame))
                if text.strip():
                    docs.append(document(text, source, page=number if frames > 1 else None, ocr=engine.name))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ReadError(f"over {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?); not read") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ReadError(f"not a readable image ({e})") from None
    if not docs:
        raise ReadError("no text found in the image")
    return docs


def _fit(image: PILImage) -> PILImage:
    """`image`, scaled down to at most MAX_OCR_PIXELS: OCR time grows with pixels, not with detail."""
    pixels = image.width * image.height
    if pixels <= MAX_OCR_PIXELS:
        return image
    scale = (MAX_OCR_PIXELS / pixels) ** 0.5
    return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))


# One reader per format: a whole file's text, as Markdown where the format has structure
# (headings, tables). PDFs are read by pages (`read_pdf_pages`), in units of their own.
READERS: dict[str, Callable[[Path], str]] = {
    **dict.fromkeys(TEXT_SUFFIXES, read_text),
    ".html": read_html,
    ".htm": read_html,
    ".docx": office.read_docx,
    ".pptx": office.read_pptx,
    ".xlsx": office.read_xlsx,
    ".epub": epub.read_epub,
    ".csv": data.read_csv,
    ".tsv": data.read_csv,
    ".json": data.read_json,
}
SUFFIXES = set(READERS) | {".pdf"} | IMAGE_SUFFIXES


def read_file(path: Path, source: str, ocr: OcrEngine = "rapidocr") -> list[Document]:
    """A whole non-PDF file as one Document (an image: one per page)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return read_image(path, source, ocr)
    reader = READERS.get(suffix)
    if reader is None:
        raise ReadError(f"unsupported file type {suffix or '(none)'}")
    text = reader(path)
    if not text.strip():
        raise ReadError("no text in file")
    return [document(text, source)]
