"""HTML → Markdown: the page's own content, with its structure, and nothing a browser does not show.

`BeautifulSoup.get_text` put every inline tag on a line of its own (a code sample came out one
token per line) and kept the site's navigation, which became chunks of its own ("Table of
Contents", "Previous topic"). Here the page is cut down to its main content, where it says which
that is (`<main>`, `role="main"`), navigation and page furniture go (`<nav>`, `<header>`,
`<footer>`, `<aside>`, ARIA roles, Sphinx's sidebar and permalink marks), and markdownify writes the
rest as Markdown: inline text stays inline, `<pre>` stays verbatim in a fenced block, headings
become `#` lines, so chunks of HTML know their section as Markdown chunks do (ingest/chunk.py).
Links and images keep only their text: a URL is noise to the embedding model and to the reader.

Where a heading (or the section around it) has an `id`, the line ends in `{#id}` (the heading-id
syntax of Pandoc and kramdown), and so does a term of a definition list that has one, written as
a heading: the API entries of generated docs (Sphinx's `<dt id="json.loads">`). A chunk's citation
then points into the page (`library/json.html#json.loads`), not just at a 500-chunk file.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import Tag
from markdownify import MarkdownConverter

HIDDEN_TAGS = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form"]
# ARIA roles of page furniture, and the marks documentation generators add (Sphinx's sidebar,
# its "related" bars and the ¶ permalink beside every heading).
FURNITURE = (
    '[role="navigation"], [role="search"], [role="banner"], [role="contentinfo"], [aria-hidden="true"], '
    ".sphinxsidebar, .related, a.headerlink"
)
MAIN = 'main, [role="main"]'
PERMALINK = "a.headerlink[href]"
HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]

ENTRY_LEVEL = 6  # a definition term with an id (an API entry) is a heading below every real one


class _Converter(MarkdownConverter):
    """markdownify, with anchors on headings and API entries. (Its stubs leave out the `convert_*`
    methods it finds by name, hence the ignores.)"""

    def convert_hN(self, n: int, el: Tag, text: str, parent_tags: set[str]) -> str:
        line: str = super().convert_hN(n, el, text, parent_tags)  # type: ignore[misc]
        return _with_anchor(line, _anchor_of(el), parent_tags)

    def convert_dt(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        anchor = _anchor_of(el)
        if anchor is None or "_inline" in parent_tags:
            return str(super().convert_dt(el, text, parent_tags))  # type: ignore[misc]
        plain = " ".join(el.get_text().split())  # a signature reads best without emphasis marks
        entry = super().convert_hN(ENTRY_LEVEL, el, plain, parent_tags)  # type: ignore[misc]
        return _with_anchor(entry, anchor, parent_tags)


def _anchor_of(el: Tag) -> str | None:
    """The element's id, or its section's where the heading opens one (`<section id=…><h2>`)."""
    anchor = el.get("id")
    if not anchor and isinstance(el.parent, Tag) and el.parent.name in ("section", "div"):
        anchor = el.parent.get("id") if el.parent.find(HEADINGS) is el else None
    return anchor if isinstance(anchor, str) and anchor.strip() and "}" not in anchor else None


def _with_anchor(line: str, anchor: str | None, parent_tags: set[str]) -> str:
    if anchor is None or "_inline" in parent_tags or not line.strip():
        return line
    body = line.rstrip("\n")
    return f"{body} {{#{anchor.strip()}}}" + line[len(body) :]


_converter = _Converter(
    heading_style="ATX",
    bullets="-",
    strip=["a", "img"],
    escape_asterisks=False,
    escape_underscores=False,
    escape_misc=False,
    table_infer_header=True,  # a table without <th>: its first row is the header (repeated per chunk)
)


def html_to_markdown(html: str) -> str:
    """The page's main content as Markdown (the whole body where the page does not mark it)."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(HIDDEN_TAGS):
        tag.decompose()
    for link in soup.select(PERMALINK):  # a heading's own permalink names its anchor (Sphinx, MkDocs)
        heading = link.find_parent(HEADINGS)
        if heading is not None and not heading.get("id") and str(link["href"]).startswith("#"):
            heading["id"] = str(link["href"])[1:]
    for tag in soup.select(FURNITURE):
        tag.decompose()
    root = soup.select_one(MAIN) or soup.body or soup
    try:
        text: str = _converter.convert_soup(root)
    except RecursionError:  # markdownify recurses per element: a crafted page nests thousands deep
        text = root.get_text("\n")
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text).strip()
