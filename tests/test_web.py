"""The web page in a real browser (Debian's chromium, driven by Playwright) against a real server.

Screenshots are saved in the test's tmp dir (printed): look at them after a change to the page.
Without chromium the test is skipped, except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from api_support import ScriptedLLM, ingest_corpus, on_loopback, settings_for

from asyncrag.api import ServeOptions, create_app

CHROMIUM = os.environ.get("ASYNCRAG_CHROMIUM", "/usr/bin/chromium")


class SlowLLM(ScriptedLLM):
    """The scripted answer, slowly enough that the page shows it growing."""

    async def astream(self, messages: list[dict[str, str]], max_tokens: int) -> AsyncIterator[str]:
        for token in self.tokens:
            await asyncio.sleep(0.4)
            yield token


def require_browser() -> None:
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not shutil.which(CHROMIUM):
        missing = f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(missing)


@pytest.fixture
def base_url(tmp_path: Path, embedder) -> Iterator[str]:
    """A real uvicorn on a free loopback port, in a thread, over examples/corpus."""
    settings = settings_for(str(tmp_path / "milvus.db"))
    asyncio.run(ingest_corpus(settings, embedder))
    app = create_app(settings, embedder=embedder, llm=SlowLLM(), options=ServeOptions(upload_dir=tmp_path / "up"))
    with on_loopback(app) as url:
        yield url


@pytest.mark.slow
def test_ask_cite_upload_and_find(base_url: str, tmp_path: Path, make_pdf) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    print(f"screenshots in {shots}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(base_url)
        expect(page.locator("#stats")).to_contain_text("4 documents")

        # Ask by keyboard alone: the question box is the first stop.
        page.keyboard.press("Tab")
        expect(page.locator("#question")).to_be_focused()
        page.keyboard.type("When was the Kestrel Valley Tea Cooperative founded?")
        page.keyboard.press("Enter")
        # Streamed: the page shows a part of the answer before the whole (checked at every frame).
        page.wait_for_function("document.getElementById('answer').textContent === 'Founded in '", polling="raf")
        expect(page.locator("#answer")).to_have_text("Founded in 1987 [1].")
        expect(page.locator("#sources li")).to_have_count(3)
        expect(page.locator("#sources li").first).to_contain_text("about.md")
        page.screenshot(path=shots / "1-answer.png", full_page=True)

        # The citation in the answer opens its passage; Escape closes it.
        page.locator("#answer button.cite").first.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#passage")).to_be_visible()
        expect(page.locator("#passage-title")).to_contain_text("[1]")
        expect(page.locator("#passage-title")).to_contain_text("about.md")
        expect(page.locator("#passage-text")).to_contain_text("1987")
        page.screenshot(path=shots / "2-passage.png")
        page.keyboard.press("Escape")
        expect(page.locator("#passage")).to_be_hidden()

        # Upload a new file (and a broken one): the job reports each, and the new file is then found.
        heron = tmp_path / "heron.txt"
        heron.write_text("The grey heron that lives by the estate's north pond is called Quillon by the pickers.")
        broken = tmp_path / "broken.pdf"
        broken.write_bytes(b"%PDF-1.4 not really a pdf")
        page.locator("#files").set_input_files([heron, broken])
        page.locator("#upload-button").click()
        expect(page.locator("#job-status")).to_have_text("Done: 1 file ingested (1 chunk), 1 failed", timeout=60_000)
        expect(page.locator("#job-files li.ok")).to_have_text(["heron.txt: ingested"])
        expect(page.locator("#job-files li.failed")).to_contain_text(["broken.pdf: "])
        expect(page.locator("#stats")).to_contain_text("5 documents")
        page.screenshot(path=shots / "3-upload.png", full_page=True)

        page.locator("#question").fill("What is the heron by the north pond called?")
        page.locator("#question").press("Enter")
        expect(page.locator("#answer")).to_have_text("Founded in 1987 [1].")
        expect(page.locator("#sources li").first).to_contain_text("heron.txt")
        page.locator("#sources li button").first.click()
        expect(page.locator("#passage-text")).to_contain_text("Quillon")
        page.screenshot(path=shots / "4-found.png", full_page=True)
        browser.close()


@pytest.mark.slow
def test_the_api_docs_render_with_nothing_from_outside(base_url: str, tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(base_url + "/docs")
        expect(page.locator(".opblock-summary-path").filter(has_text="/v1/search")).to_be_visible()
        page.screenshot(path=tmp_path / "docs.png", full_page=True)
        browser.close()
    outside = [url for url in requested if not url.startswith((base_url, "data:", "blob:"))]
    assert not outside, f"the docs fetched from outside the app: {outside}"
    assert f"{base_url}/static/docs/swagger-ui-bundle.js" in requested
