"""HTML is read as a person sees it: its main content as Markdown, inline text inline, code verbatim."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asyncrag.ingest.html import html_to_markdown

# A page shaped like Sphinx's (Debian's python3.11-doc): navigation around a role="main" body.
SPHINX_PAGE = """<!DOCTYPE html><html><head><title>itertools</title><script>var leak = 1;</script></head><body>
<nav class="nav-content" role="navigation"><a href="../index.html">Python</a> Table of Contents</nav>
<div class="related" role="navigation"><a href="x.html">previous</a> | <a href="y.html">next</a></div>
<div class="document"><div class="body" role="main">
<section id="itertools"><h1><code class="xref">itertools</code> — Functions creating iterators<a class="headerlink"
 href="#itertools">¶</a></h1>
<p>This module implements a number of <a href="../glossary.html#term-iterator"><span class="xref">iterator</span></a>
building blocks, such as <code class="docutils literal"><span class="pre">groupby()</span></code> and
<em>friends</em>.</p>
<section id="functions"><h2>Itertool functions<a class="headerlink" href="#functions">¶</a></h2>
<dl class="py function"><dt class="sig" id="itertools.groupby"><span class="sig-name">groupby</span>(<em>iterable</em>,
 <em>key=None</em>)</dt>
<dd><p>Make an iterator that returns consecutive keys and groups.</p>
<div class="highlight"><pre><span></span><span class="k">class</span> <span class="nc">groupby</span><span class="p">:</span>
    <span class="k">def</span> <span class="fm">__init__</span><span class="p">(</span><span class="bp">self</span><span class="p">):</span>
        <span class="k">pass</span>
</pre></div></dd></dl>
</section></section></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><ul><li>itertools</li></ul>
<h4>Previous topic</h4></div></div>
<footer class="footer">© Copyright 2001-2023</footer></body></html>"""


def test_inline_tags_stay_inline_and_links_keep_only_their_text() -> None:
    text = html_to_markdown(SPHINX_PAGE)
    assert "This module implements a number of iterator\nbuilding blocks" in text
    assert "such as `groupby()` and\n*friends*." in text
    assert "glossary.html" not in text and "](" not in text


def test_code_is_kept_verbatim_in_a_fenced_block() -> None:
    text = html_to_markdown(SPHINX_PAGE)
    fenced = text.split("```")[1]  # inside the definition it documents: indented as a block of it
    assert textwrap.dedent(fenced).strip("\n") == "class groupby:\n    def __init__(self):\n        pass"


def test_navigation_furniture_and_scripts_are_dropped() -> None:
    text = html_to_markdown(SPHINX_PAGE)
    for furniture in ("Table of Contents", "Previous topic", "previous", "Copyright", "¶", "leak"):
        assert furniture not in text, furniture


def test_headings_become_markdown_headings() -> None:
    lines = html_to_markdown(SPHINX_PAGE).splitlines()
    assert "# `itertools` — Functions creating iterators" in lines
    assert "## Itertool functions" in lines


def test_a_page_without_a_main_element_keeps_its_whole_body() -> None:
    page = "<html><body><h1>Owl post</h1><p>The owl comes on <b>Thursday</b>.</p></body></html>"
    assert html_to_markdown(page) == "# Owl post\n\nThe owl comes on **Thursday**."


@pytest.mark.parametrize("page", ["", "<html></html>", "<p>unclosed <b>bold", "<<<>>>", "<b>" * 100 + "deep"])
def test_odd_markup_never_raises(page: str) -> None:
    assert isinstance(html_to_markdown(page), str)


def test_a_page_nested_thousands_deep_is_still_read() -> None:
    assert "bottom" in html_to_markdown("<div>" * 5000 + "bottom")


def test_html_chunks_know_their_section(embedder: object, tmp_path: Path) -> None:
    from asyncrag.ingest.chunk import ChunkSpec, chunk, make_splitter
    from asyncrag.ingest.read import read_file

    path = tmp_path / "itertools.html"
    path.write_text(SPHINX_PAGE)
    docs = read_file(path, str(path))
    nodes = chunk(make_splitter(ChunkSpec(32, 4, embedder.tokenizer_file)), docs, "it", "v1")  # type: ignore[attr-defined]
    sections = {node.metadata.get("heading") for node in nodes}
    assert "Itertool functions" in sections
    groupby = next(n for n in nodes if "consecutive keys" in n.get_content())
    assert groupby.metadata["heading"] == "Itertool functions"
