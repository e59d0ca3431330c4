"""A file's bytes and its UTF-8 text, or a ReadError that says why not: what every reader of text
(plain text, Markdown, HTML, CSV, JSON) starts from. A module of its own so that the format
readers (ingest/data.py, office.py, epub.py) and the dispatcher (ingest/read.py) share it without
importing each other.
"""

from __future__ import annotations

from pathlib import Path

from asyncrag.errors import ReadError


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ReadError(f"cannot read file: {e.strerror}") from None


def read_text(path: Path) -> str:
    return decode_text(read_bytes(path))


def decode_text(data: bytes, offset: int = 0) -> str:
    """UTF-8 text (a BOM at the file's start is dropped), or a ReadError with the bad byte's offset."""
    if b"\x00" in data:
        raise ReadError("binary content in a text file (NUL bytes)")
    try:
        return data.decode("utf-8-sig" if offset == 0 else "utf-8")
    except UnicodeDecodeError as e:
        raise ReadError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {offset + e.start}); convert it, "
            "e.g. `iconv -f latin1 -t utf-8`"
        ) from None
