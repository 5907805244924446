"""The built book as a reader sees it: every chapter opens in headless Chromium, its images load, no errors.

Runs after `make book` (it reads `_build/html`); drives Debian's chromium through chromedriver's W3C
WebDriver HTTP API, so it needs no browser-automation package. Screenshots go to `_build/screenshots`.
"""

import base64
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"


def chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc["chapters"]]


class WebDriver:
    """The few WebDriver calls we need: open a page, run JavaScript, take a screenshot."""

    def __init__(self, driver: str, browser: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self._call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        options = {"binary": browser, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                               "--window-size=1280,1600", "--disable-dev-shm-usage"]}
        answer = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self.session = f"/session/{answer['value']['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def run(self, script: str):
        return self._call("POST", f"{self.session}/execute/sync", {"script": script, "args": []})["value"]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", f"{self.session}/screenshot")["value"]))

    def close(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    driver, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not (driver and chromium):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver (make installs them in CI)")
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book in {HTML}: run `make book` first")
    SHOTS.mkdir(parents=True, exist_ok=True)
    web = WebDriver(driver, chromium)
    yield web
    web.close()


@pytest.mark.parametrize("page", chapters())
def test_chapter_renders_with_its_figures_and_no_errors(browser, page):
    html = HTML / f"{page}.html"
    assert html.is_file(), f"{page} was not built"
    browser.open(html.as_uri())
    for _ in range(50):  # wait until every image has finished loading (or failed)
        if browser.run("return Array.from(document.images).every(i => i.complete)"):
            break
        time.sleep(0.1)
    state = browser.run("""
        const main = document.querySelector('main') || document.body;
        const images = Array.from(main.querySelectorAll('img'));
        return {
          title: document.title,
          text: main.innerText.length,
          images: images.length,
          broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
          errors: Array.from(document.querySelectorAll('.output.stderr, .output.traceback, .ansi-red-fg'))
                      .map(e => e.innerText.slice(0, 200)),
          unresolved: Array.from(main.querySelectorAll('.xref.missing, .problematic')).map(e => e.innerText),
        };""")
    browser.screenshot(SHOTS / f"{Path(page).name}.png")
    assert state["text"] > 500, f"{page} is nearly empty"
    assert state["broken"] == [], f"{page}: images that do not load: {state['broken']}"
    assert state["errors"] == [], f"{page}: error output: {state['errors']}"
    assert state["unresolved"] == [], f"{page}: unresolved references: {state['unresolved']}"
    if page.endswith(("neural-odes", "node-head", "experiment", "reproducing", "beyond")):
        assert state["images"] >= 1, f"{page} should show at least one figure"


@pytest.mark.parametrize("page", chapters())
def test_no_table_or_code_block_overflows_its_column(browser, page):
    """Nothing runs past the column's right edge; code wraps (never hides line ends); a table too wide for the
    column scrolls inside its own box, so none of it is cut off."""
    browser.open((HTML / f"{page}.html").as_uri())
    overflowing = browser.run("""
        const column = document.querySelector('article.bd-article') || document.querySelector('main');
        const right = column.getBoundingClientRect().right + 1;
        const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
        return Array.from(column.querySelectorAll('table, pre'))
            .filter(e => e.offsetParent !== null)  // rendered (not inside a closed dropdown)
            .filter(e => e.getBoundingClientRect().right > right
                         || (e.scrollWidth > e.clientWidth + 1 && (e.tagName === 'PRE' || !scrolls(e))))
            .map(e => `${e.tagName} ${e.scrollWidth}px in ${e.clientWidth}px: ${e.innerText.slice(0, 80)}`);""")
    assert overflowing == [], f"{page}: wider than their column: {overflowing}"


def test_every_notebook_page_offers_its_ipynb(browser):
    import jupytext

    for page in chapters():
        if "kernelspec" not in jupytext.read(ROOT / f"{page}.md").metadata:
            continue
        browser.open((HTML / f"{page}.html").as_uri())
        links = browser.run("""return Array.from(document.querySelectorAll('a[href$=".ipynb"]'))
                                   .map(a => a.getAttribute('href'));""")
        assert links, f"{page}: no .ipynb download"
        assert (HTML / f"{page}.html").parent.joinpath(links[0]).resolve().is_file(), links[0]


def test_the_intro_opens_with_the_answer_to_each_claim(browser):
    """The first screen (the window's height, as a reader first sees it) holds the bottom line, the claims table
    (one row per claim: the paper, what the matched-control tests found with their numbers, how sure), the arms
    named once and the scope; the MLRC-style sections follow."""
    browser.open((HTML / "book" / "intro.html").as_uri())
    state = browser.run("""
        const main = document.querySelector('article.bd-article') || document.querySelector('main');
        const paragraphs = Array.from(main.querySelectorAll('p'));
        const find = start => paragraphs.find(p => p.innerText.trim().startsWith(start));
        const where = start => { const p = find(start); return p ? {top: p.getBoundingClientRect().bottom,
                                                                    text: p.innerText} : null; };
        const table = Array.from(main.querySelectorAll('table')).find(t => t.innerText.trim().startsWith('claim'));
        const rows = table ? Array.from(table.querySelectorAll('tbody tr')).map(r => r.innerText) : [];
        return {height: window.innerHeight, rows: rows,
                table: table ? table.getBoundingClientRect().bottom : null,
                scope: where('Scope:'), short: where('In short:'), arms: where('The arms'),
                headings: Array.from(main.querySelectorAll('h2')).map(h => h.innerText.replace('#', '').trim())};""")
    browser.screenshot(SHOTS / "intro-first-screen.png")
    assert [row[:3] for row in state["rows"]] == ["1. ", "2. ", "3. ", "4. "], state["rows"]
    for number, row in enumerate(state["rows"], 1):
        assert re.search(r"[+-]\d+(\.\d+)? (%|points)? ?\[[+-]\d+(\.\d+)?", row), f"claim {number}: {row[:200]}"
        assert re.search(r"holds|does not hold|undecided|not shown", row)
    assert state["short"] and "primary tests" in state["short"]["text"]  # the answer in two sentences, first
    assert state["short"]["top"] <= state["table"] <= state["height"], "the claims table ends below the first screen"
    for name in ("arms", "scope"):
        assert state[name] and state[name]["top"] <= state["height"], f"{name} is below the first screen"
    assert "CIFAR-10" in state["scope"]["text"] and "`" not in state["arms"]["text"]
    assert state["headings"][:4] == ["Scope of reproducibility", "Methodology", "Results", "What was easy"]


def test_the_intro_first_screens_show_the_claims_by_regime_and_the_forest_plot(browser):
    """Within the first two screens: the claims x regimes verdict table (every regime a column, the declared studies
    where a NODE could help among them) and the forest plot of the primary tests."""
    browser.open((HTML / "book" / "intro.html").as_uri())
    state = browser.run("""
        const main = document.querySelector('article.bd-article') || document.querySelector('main');
        const grid = Array.from(main.querySelectorAll('table')).find(
            t => Array.from(t.querySelectorAll('th')).some(th => th.innerText.trim() === 'head-only'));
        const forest = main.querySelector('#fig-answer-forest img') || main.querySelector('figure img');
        return {height: window.innerHeight,
                grid: grid ? grid.getBoundingClientRect().top : null,
                header: grid ? Array.from(grid.querySelectorAll('th')).map(th => th.innerText.trim()) : [],
                forest: forest ? forest.getBoundingClientRect().top : null};""")
    assert state["grid"] is not None and state["grid"] <= 2 * state["height"], state
    assert {"fine-tune", "head-only", "overfitting", "larger learning rates"} <= set(state["header"]), state
    assert state["forest"] is not None and state["forest"] <= 2 * state["height"], state


def test_the_results_pages_show_no_import_cells(browser):
    """The reproducing chapter reads as results: its code (imports, glue, tables) is hidden, its outputs shown."""
    browser.open((HTML / "book" / "reproducing.html").as_uri())
    code = browser.run("return Array.from(document.querySelectorAll('div.cell_input')).map(c => c.innerText);")
    assert not [cell for cell in code if "import " in cell], code[:2]


def test_the_reproducing_chapter_opens_with_the_claims_and_real_data(browser):
    """The claims table, then Fashion-MNIST (fine-tune, head-only) come before any digits result; no progress
    table (it lives in results/README.md)."""
    browser.open((HTML / "book" / "reproducing.html").as_uri())
    state = browser.run("""
        const main = document.querySelector('article.bd-article') || document.querySelector('main');
        const headings = Array.from(main.querySelectorAll('h2')).map(h => h.innerText.replace('#', '').trim());
        const tables = Array.from(main.querySelectorAll('table')).map(t => t.innerText);
        return {headings: headings, first: tables[0] || '',
                digits: tables.findIndex(t => t.includes('digits')), fashion: tables.findIndex(t =>
                    t.includes('Fashion-MNIST')), progress: tables.some(t => t.includes('seeds planned'))};""")
    headings = state["headings"]
    assert headings[0] == "The claims, one row each", headings
    assert headings.index("Fashion-MNIST, fine-tune") < headings.index("Fashion-MNIST, head-only") < headings.index(
        "Smoke scale: the digits")
    assert "against the matched control" in state["first"] and "1.\u00a0Same\u00a0accuracy" in state["first"]
    assert not state["progress"]
    for section in ("Per-seed differences", "Sensitivity", "Discrepancies with the paper", "Limitations"):
        assert section in headings


#: The pages whose figures are glued with numbered captions and whose tables go through `formats.readable_table`.
CAPTIONED_PAGES = ("book/glossary", "book/node-head", "book/performance", "book/beyond")
#: Pages whose figures appear only once their runs are in (a forest plot needs two paired seeds); their text is
#: checked as the captioned pages' is.
GROWING_PAGES = ("book/harder",)


#: Every page of the book that shows a figure (the teaching chapters too).
FIGURE_PAGES = CAPTIONED_PAGES + GROWING_PAGES + ("book/intro", "book/reproducing", "book/neural-odes",
                                                  "book/experiment")


def test_the_caption_check_covers_every_page_with_a_figure():
    shown = {f"book/{path.stem}" for path in (HTML / "book").glob("*.html") if "<img" in path.read_text()}
    assert shown <= set(FIGURE_PAGES), sorted(shown - set(FIGURE_PAGES))


@pytest.mark.parametrize("page", FIGURE_PAGES)
def test_every_figure_has_a_numbered_caption_and_alt_text(browser, page):
    """Each image of the page sits in a figure numbered 'Fig. N' with a caption, and its alt text describes it
    (not the hash file name Jupyter Book gives an output image)."""
    browser.open((HTML / f"{page}.html").as_uri())
    images = browser.run("""
        const main = document.querySelector('article.bd-article') || document.querySelector('main');
        return Array.from(main.querySelectorAll('img')).map(i => {
            const figure = i.closest('figure');
            const caption = figure ? figure.querySelector('figcaption') : null;
            return {alt: i.getAttribute('alt') || '', caption: caption ? caption.innerText.trim() : ''};
        });""")
    assert images, f"{page} shows no figure"
    for image in images:
        assert re.match(r"Fig\. \d+", image["caption"]) and len(image["caption"]) > 40, image
        assert len(image["alt"]) > 40 and not re.search(r"[0-9a-f]{16}|\.png$", image["alt"]), image


@pytest.mark.parametrize("page", CAPTIONED_PAGES + GROWING_PAGES + ("book/run-it-yourself",))
def test_no_repr_nan_or_variable_name_where_a_number_belongs(browser, page):
    browser.open((HTML / f"{page}.html").as_uri())
    text = browser.run("return (document.querySelector('article.bd-article') || document.body).innerText;")
    assert "<matplotlib" not in text and not re.search(r"\bNaN\b", text)
    assert not re.search(r"after \w+_\w+ epochs", text) and "<this repository>" not in text
    assert not re.search(r"\brtol\s+0\.0\b|\d\.0{6}e[-+]\d\d", text)  # tolerances as 1e-7, never 0.0 or 1.000000e-07


@pytest.mark.parametrize("page", CAPTIONED_PAGES + GROWING_PAGES)
def test_glued_values_are_not_bold(browser, page):
    """A glued number reads as the prose around it; only a glue inside **...** is bold."""
    browser.open((HTML / f"{page}.html").as_uri())
    bold = browser.run("""
        return Array.from(document.querySelectorAll('span.pasted-text'))
            .filter(s => !s.closest('strong, b, th, h1, h2, h3, h4, dt'))
            .filter(s => parseInt(getComputedStyle(s).fontWeight) > 500).map(s => s.innerText);""")
    assert bold == [], f"{page}: glued values in bold: {bold[:5]}"


def test_the_glossary_has_a_target_for_every_arm_and_the_pages_link_to_it(browser):
    from node_transfer.pages.glossary import arm_table, arm_target

    targets = {arm_target(name) for name in arm_table()["arm"]}
    browser.open((HTML / "book" / "glossary.html").as_uri())
    ids = set(browser.run("return Array.from(document.querySelectorAll('[id^=\"arm-\"]')).map(e => e.id);"))
    assert targets <= ids, sorted(targets - ids)
    for page in ("performance", "beyond"):
        browser.open((HTML / "book" / f"{page}.html").as_uri())
        links = browser.run("""return Array.from(document.querySelectorAll('a[href*="glossary.html#arm-"]'))
                                   .map(a => a.getAttribute('href').split('#')[1]);""")
        assert links and set(links) <= targets, (page, links)
