"""EPUB books as Markdown: each chapter's XHTML through ingest/html.py, in the book's reading order.

An EPUB is a zip: `META-INF/container.xml` names the package document (OPF), whose manifest maps
ids to files and whose spine lists them in reading order. That is all a reader of the text needs,
so it is read here with `zipfile` and lxml (both here already) rather than with EbookLib, which
would add a dependency under the AGPL (this project is Apache-2.0) and read every member of the
book, images included, into memory before the first chapter.
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from asyncrag.errors import ReadError
from asyncrag.ingest.office import check_zip, malformed_as_read_error

if TYPE_CHECKING:
    from lxml.etree import _Element

_CHAPTER_TYPES = {"application/xhtml+xml", "text/html"}


def read_epub(path: Path) -> str:
    """The spine's XHTML documents as Markdown, one after another: headings, paragraphs, lists,
    tables and code as the chapter has them, without its navigation (EPUB 3's table of contents is
    a `<nav>`, which html_to_markdown leaves out)."""
    from asyncrag.ingest.html import html_to_markdown

    check_zip(path)
    with malformed_as_read_error(path), zipfile.ZipFile(path) as book:
        chapters = _spine(book)
        encrypted = _encrypted(book)
        if encrypted.intersection(chapters):
            raise ReadError("encrypted EPUB (DRM): its chapters cannot be read without the seller's key")
        parts = [html_to_markdown(_decode(book.read(name))) for name in chapters]
    return "\n\n".join(part.strip() for part in parts if part.strip())


def _xml(data: bytes) -> _Element:
    """Parsed without entities, DTDs or the network: a book's XML is the book's, not a way out."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(data, parser)


def _spine(book: zipfile.ZipFile) -> list[str]:
    """The zip members of the spine's XHTML documents, in reading order (each once)."""
    container = _xml(book.read("META-INF/container.xml"))
    rootfiles = container.xpath("//*[local-name()='rootfile']/@full-path")
    if not rootfiles:
        raise ReadError("not a valid .epub file (META-INF/container.xml names no package document)")
    opf_path = str(rootfiles[0])
    opf = _xml(book.read(opf_path))
    base = posixpath.dirname(opf_path)
    manifest = {
        str(item.get("id")): (_member(base, str(item.get("href", ""))), str(item.get("media-type", "")))
        for item in opf.xpath("//*[local-name()='manifest']/*[local-name()='item']")
    }
    chapters = []
    for idref in opf.xpath("//*[local-name()='spine']/*[local-name()='itemref']/@idref"):
        name, media_type = manifest.get(str(idref), ("", ""))
        if name and media_type in _CHAPTER_TYPES:
            chapters.append(name)
    return list(dict.fromkeys(chapters))


def _member(base: str, href: str) -> str:
    """An OPF href (relative to the OPF, URL-encoded, maybe with a #fragment) as a zip member name."""
    return posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))


def _encrypted(book: zipfile.ZipFile) -> set[str]:
    """Members listed in `META-INF/encryption.xml`: DRM, or obfuscated fonts (harmless here)."""
    try:
        data = book.read("META-INF/encryption.xml")
    except KeyError:
        return set()
    uris = _xml(data).xpath("//*[local-name()='CipherReference']/@URI")
    return {posixpath.normpath(unquote(str(uri))) for uri in uris}


def _decode(data: bytes) -> str:
    """A chapter's text in the encoding it declares (EPUB allows UTF-16 too), UTF-8 by default."""
    from bs4 import UnicodeDammit

    text = UnicodeDammit(data, ["utf-8"]).unicode_markup
    if text is None:
        raise ReadError("not a valid .epub file (a chapter in no encoding that could be read)")
    return text
