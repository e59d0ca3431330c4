"""HTML → Markdown: the page's own content, with its structure, and nothing a browser does not show.

`BeautifulSoup.get_text` put every inline tag on a line of its own (a code sample came out one
token per line) and kept the site's navigation, which became chunks of its own ("Table of
Contents", "Previous topic"). Here the page is cut down to its main content, where it says which
that is (`<main>`, `role="main"`), navigation and page furniture go (`<nav>`, `<header>`,
`<footer>`, `<aside>`, ARIA roles, Sphinx's sidebar and permalink marks), and markdownify writes the
rest as Markdown: inline text stays inline, `<pre>` stays verbatim in a fenced block, headings
become `#` lines, so chunks of HTML know their section as Markdown chunks do (ingest/chunk.py).
Links and images keep only their text: a URL is noise to the embedding model and to the reader.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from markdownify import MarkdownConverter

HIDDEN_TAGS = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form"]
# ARIA roles of page furniture, and the marks documentation generators add (Sphinx's sidebar,
# its "related" bars and the ¶ permalink beside every heading).
FURNITURE = (
    '[role="navigation"], [role="search"], [role="banner"], [role="contentinfo"], [aria-hidden="true"], '
    ".sphinxsidebar, .related, a.headerlink"
)
MAIN = 'main, [role="main"]'

_converter = MarkdownConverter(
    heading_style="ATX",
    bullets="-",
    strip=["a", "img"],
    escape_asterisks=False,
    escape_underscores=False,
    escape_misc=False,
)


def html_to_markdown(html: str) -> str:
    """The page's main content as Markdown (the whole body where the page does not mark it)."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(HIDDEN_TAGS):
        tag.decompose()
    for tag in soup.select(FURNITURE):
        tag.decompose()
    root = soup.select_one(MAIN) or soup.body or soup
    try:
        text: str = _converter.convert_soup(root)
    except RecursionError:  # markdownify recurses per element: a crafted page nests thousands deep
        text = root.get_text("\n")
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text).strip()
