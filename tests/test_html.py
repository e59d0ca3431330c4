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
    assert "# `itertools` — Functions creating iterators {#itertools}" in lines  # the id of its <section>
    assert "## Itertool functions {#functions}" in lines


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
    assert "`itertools` — Functions creating iterators › Itertool functions" in sections
    groupby = next(n for n in nodes if "consecutive keys" in n.get_content())
    assert groupby.metadata["heading"].endswith(" › Itertool functions › groupby(…)")  # a signature, shortened
    assert groupby.metadata["anchor"] == "itertools.groupby"


def test_api_entries_and_sections_carry_their_anchor() -> None:
    text = html_to_markdown(SPHINX_PAGE)
    assert "## Itertool functions {#functions}" in text.splitlines()
    assert "###### groupby(iterable, key=None) {#itertools.groupby}" in text.splitlines()


async def test_a_citation_into_an_html_page_points_at_its_anchor(lite_uri: str, hash_embedder, tmp_path: Path) -> None:
    from asyncrag.rag import AsyncRAG

    page = tmp_path / "itertools.html"
    page.write_text(SPHINX_PAGE)
    async with AsyncRAG(embedder=hash_embedder, uri=lite_uri, collection="html", llm="none", chunk_size=32) as rag:
        assert (await rag.ingest([page])).ok
        hits = await rag.search("consecutive keys and groups", k=1, mode="sparse")
    top = hits[0]
    assert "consecutive keys" in top.text
    assert top.anchor == "itertools.groupby"
    assert top.citation == f"{page}#itertools.groupby"
    assert top.heading == "`itertools` — Functions creating iterators › Itertool functions › groupby(…)"


def test_a_heading_takes_its_anchor_from_its_permalink() -> None:
    page = (
        '<div role="main"><section id="for-statements"><span id="tut-for"></span><h2>4.2. <code>for</code> Statements'
        '<a class="headerlink" href="#for-statements">¶</a></h2><pre># not a heading\nfor x in y: pass</pre></section></div>'
    )
    text = html_to_markdown(page)
    assert text.splitlines()[0] == "## 4.2. `for` Statements {#for-statements}"
    from asyncrag.ingest.chunk import _Headings

    assert _Headings(text).at(text.index("for x in y")) == ("4.2. `for` Statements", "for-statements")
