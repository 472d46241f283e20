"""The rendered book, tested as a reader sees it: the built HTML served on loopback and opened in
a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

Every page of the table of contents must load without JavaScript errors, show every figure
(decoded, non-empty images), typeset its math (MathJax ships with the book: no network needed),
link only to pages and anchors that exist, and — for chapters — offer launch buttons (Colab,
Binder) that point at the chapter's own ``.ipynb`` source.

The browser is installed by ``.ci/run``; where it is missing the test tries ``apt-get`` itself
(as root) and is skipped, with the reason, only where no browser can be installed.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO_ROOT, chapter_notebooks, toc_entries

pytestmark = [pytest.mark.slow, pytest.mark.book]


def _browser_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def _ensure_browser() -> tuple[str, str]:
    chromium, driver = _browser_paths()
    if not (chromium and driver) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
                       env=env, capture_output=True, timeout=900)
        chromium, driver = _browser_paths()
    if not (chromium and driver):
        pytest.skip("no Chromium/ChromeDriver on this machine and none could be installed with apt-get")
    try:
        import selenium  # noqa: F401
    except ImportError:  # pragma: no cover - selenium is pinned in requirements.txt
        pytest.skip("selenium is not installed")
    return chromium, driver


@pytest.fixture(scope="module")
def site(built_html: Path):
    """Serve the built book on 127.0.0.1 (random free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium, driver_path = _ensure_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=options)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _open(browser, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _wait_for_mathjax(browser) -> None:
    """Wait until MathJax has typeset the page (its startup promise resolved)."""
    browser.set_script_timeout(60)
    state = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const t0 = Date.now();
        (function poll() {
          if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done('typeset'), e => done('error: ' + e));
          } else if (Date.now() - t0 > 30000) { done('MathJax never loaded'); }
          else { setTimeout(poll, 100); }
        })();
        """
    )
    assert state == "typeset", state


PAGES = toc_entries()
CHAPTER_ENTRIES = {str(nb.relative_to(REPO_ROOT).with_suffix("")) for nb in chapter_notebooks()}


@pytest.mark.parametrize("entry", PAGES)
def test_page_as_a_reader_sees_it(browser, site: str, built_html: Path, entry: str):
    url = urllib.parse.urljoin(site, f"{entry}.html")
    _open(browser, url)
    assert browser.title and "404" not in browser.title

    # no JavaScript errors (a missing script, e.g. MathJax, shows up here)
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"{entry}: browser console errors: {severe[:5]}"

    # every figure is present, decoded and non-empty
    images = browser.execute_script(
        """return Array.from(document.querySelectorAll('main img')).map(
             i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]);"""
    )
    for src, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"{entry}: image {src} did not load"
    if entry in CHAPTER_ENTRIES:
        assert images, f"{entry}: a chapter without a single figure"

    # math is typeset: MathJax replaced the TeX source with rendered containers
    has_math = browser.execute_script(
        "return document.querySelectorAll('main .math, main span.math, main div.math').length")
    if has_math:
        _wait_for_mathjax(browser)
        rendered = browser.execute_script("return document.querySelectorAll('main mjx-container').length")
        assert rendered >= has_math, f"{entry}: {has_math} formulas but only {rendered} typeset"
    if entry in CHAPTER_ENTRIES:
        assert has_math, f"{entry}: a chapter without math?"

    # glued text ({glue:text}) is pasted verbatim: markup in it would show raw (math, bold, code go through {glue:md})
    raw = browser.execute_script(
        r"""return Array.from(document.querySelectorAll('main .pasted-text')).map(e => e.textContent)
             .filter(t => /\$[^$]+\$|\*\*|`/.test(t));""")
    assert not raw, f"{entry}: glued text shows raw markup: {raw[:3]}"

    # internal links resolve to existing pages and anchors
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
    broken = [h for h in hrefs if h.startswith(site) and not _link_ok(h, site, built_html)]
    assert not broken, f"{entry}: broken internal links: {broken[:5]}"

    # launch buttons point at this chapter's notebook
    if entry in CHAPTER_ENTRIES:
        notebook = f"{entry}.ipynb"
        colab = [h for h in hrefs if "colab.research.google.com" in h]
        binder = [h for h in hrefs if "mybinder.org" in h]
        assert colab and all(h.endswith(notebook) for h in colab), f"{entry}: Colab links {colab}"
        assert binder and all(urllib.parse.unquote(h).endswith(notebook) for h in binder), f"{entry}: Binder links {binder}"


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def _link_ok(href: str, site: str, root: Path) -> bool:
    parsed = urllib.parse.urlparse(href)
    rel = urllib.parse.unquote(parsed.path[len(urllib.parse.urlparse(site).path):])
    target = root / rel
    if rel == "" or target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return False
    if parsed.fragment and target.suffix == ".html":
        return urllib.parse.unquote(parsed.fragment) in _ids(target)
    return True


def test_site_is_served(site: str):
    with urllib.request.urlopen(site + "index.html", timeout=10) as r:
        assert r.status == 200
