"""A real browser: JupyterLab and the course website, as a learner sees them.

Headless Chromium (Debian's ``chromium`` package) driven by Playwright (PyPI) with the system
browser as its executable: Playwright's own browser download is never used (no internet).

* JupyterLab starts on loopback on the course kernel; a copy of chapter 00 opens, *Run → Run
  All Cells* runs it through the menus at smoke scale, the test waits for the last cell, fails
  on any error output or on a first-start pop-up (the "official Jupyter news" question is
  switched off by jupyter/overrides.json, which `make setup` installs), and saves a screenshot
  to build/browser/.
* One chapter page of the website (`make book`) renders with its title, text, figures and
  typeset formulas, and asks nothing from outside the site (MathJax is served from the site).

Without Chromium (a learner's laptop) both tests are skipped with the command that enables
them; CI installs Chromium in .ci/run, so there they always run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - playwright is pinned; this is for a partial install
    sync_playwright = None


def _skip_without_browser() -> None:
    if CHROMIUM is None:
        msg = ("no Chromium on this machine: install it to run the browser tests "
               "(Debian/Ubuntu: sudo apt-get install chromium); CI always runs them")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    if sync_playwright is None:
        pytest.fail("playwright is not installed: run `make setup`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def test_overrides_switch_off_the_news_question():
    """`make setup` installs the settings overrides into the environment JupyterLab runs from."""
    installed = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.exists(), "run `make setup`: it installs jupyter/overrides.json into the venv"
    ours = json.loads((ROOT / "jupyter" / "overrides.json").read_text())
    assert json.loads(installed.read_text()) == ours
    assert ours["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


@pytest.fixture
def jupyterlab(tmp_path):
    _skip_without_browser()
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy2(ROOT / "notebooks" / "00_welcome_and_data.ipynb", work)  # the UI saves; never the original
    port, token = _free_port(), "course-browser-test"
    # the test's own user settings: render every cell (JupyterLab 4 virtualises long notebooks,
    # and a cell that is not in the page cannot be checked); learners keep the default
    tracker = tmp_path / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ, COURSE_SCALE="smoke", MPLBACKEND="module://matplotlib_inline.backend_inline",
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False", "--allow-root"]
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=120)
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_chapter_00_runs_in_jupyterlab(jupyterlab):
    base, token = jupyterlab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{base}/lab/tree/00_welcome_and_data.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        # the course kernel, idle, and no question for the learner
        page.wait_for_selector(".jp-Toolbar-kernelName:has-text('Python 3 (course)')", timeout=120_000)
        page.wait_for_timeout(3000)
        toasts = page.locator(".Toastify__toast").all_inner_texts()
        assert not any("news" in t.lower() for t in toasts), f"a first-start pop-up appeared: {toasts}"
        assert page.locator(".jp-Dialog").count() == 0, "a dialog is open on first start"
        # Run -> Run All Cells, through the menus as a learner would
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        n_code = page.locator(".jp-CodeCell").count()
        assert n_code > 5
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
            done = [t for t in prompts if t.strip().startswith("[") and t.strip()[1:-2].strip().isdigit()]
            busy = any("*" in t for t in prompts)
            if len(done) == n_code and not busy:
                break
            if page.locator("[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')").count():
                break
            page.wait_for_timeout(2000)
        page.screenshot(path=str(SHOTS / "jupyterlab_ch00.png"), full_page=False)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error'], "
                              ".jp-OutputArea-output:has-text('Traceback (most recent call last)')")
        error_texts = errors.all_inner_texts()
        browser.close()
    assert not error_texts, f"error output in chapter 00: {error_texts[0][:1500]}"
    assert len(done) == n_code and not busy, f"only {len(done)} of {n_code} cells finished in 10 minutes"


@pytest.fixture
def website():
    _skip_without_browser()
    html = ROOT / "build" / "book" / "html"
    if not (html / "index.html").exists():
        sys.path.insert(0, str(ROOT / "scripts"))
        from build_book import build

        build()
    handler = partial(SimpleHTTPRequestHandler, directory=str(html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_chapter_page_of_the_website_renders(website):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"{website}/index.html")
        links = page.locator("nav a.reference.internal[href*='chapters/']")
        assert links.count() >= 9, "the chapter list is missing from the home page"
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{website}/chapters/03_attention_math.html")
        page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                               " && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0",
                               timeout=60_000)
        typeset = page.locator(".MathJax, .MathJax_Display").count()
        assert typeset > 20, f"only {typeset} formulas typeset on the attention chapter"
        outside = [u for u in requests if not u.startswith((website, "data:", "about:"))]
        assert not outside, f"the page asks for files outside the site (offline classrooms fail): {outside[:5]}"
        title = page.locator("h1").first.inner_text()
        assert "Attention" in title or "attention" in title
        images = page.locator("article img")
        assert images.count() >= 1, "no figure on the chapter page"
        widths = page.eval_on_selector_all("article img", "imgs => imgs.map(i => i.naturalWidth)")
        assert all(w > 0 for w in widths), f"a figure did not load: {widths}"
        assert page.locator(".cell_output").count() > 5, "outputs of the run are not shown"
        page.screenshot(path=str(SHOTS / "website_ch03.png"))
        browser.close()
