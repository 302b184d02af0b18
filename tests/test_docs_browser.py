"""Headless Chromium opens the built documentation site: the home page, an API page, a notebook.

Not part of the default run (marker ``browser``): it needs Chromium (Debian: ``apt-get install
chromium``) and mkdocs. Run it with::

    python3 -m pytest tests/test_docs_browser.py -m browser -n 0 -q

It builds the site (``mkdocs build --strict``), serves it on 127.0.0.1 with
``python3 -m http.server``, checks each page's DOM after its scripts ran (``--dump-dom``)
and writes a screenshot of each (1280x2000) to ``$ADVJAX_DOCS_SCREENSHOTS`` or, unset, to a
folder under pytest's ``tmp_path``; the test prints where.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
CHROMIUM = next(
    (
        path
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (path := shutil.which(name))
    ),
    None,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("mkdocs") is None,
        reason="mkdocs is not installed (it is part of the docs extra: pip install '.[docs]')",
    ),
]


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """The built site, served on 127.0.0.1; yields its base URL."""
    site_dir = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the site server on {url} did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("ADVJAX_DOCS_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {path}")
    return path


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,2000",
        "--virtual-time-budget=5000",  # let the theme's scripts run before the capture
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def open_page(url: str, screenshot: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran; writes its screenshot."""
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    shot = _chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000, "an almost empty screenshot"
    return dom.stdout


def _text(dom: str) -> str:
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def _nav_titles(dom: str) -> list[str]:
    """The titles of the top-level sections in the navigation sidebar."""
    return [
        " ".join(html.unescape(t).split())
        for t in re.findall(r"md-nav__link[^>]*>\s*(?:<span[^>]*>)?\s*([^<]+?)\s*<", dom)
    ]


def test_home_page(site_url, screenshots, tmp_path):
    dom = open_page(site_url, screenshots / "home.png", tmp_path)
    text = _text(dom)
    assert "JAX-native adversarial robustness" in text
    assert "python3 -m pip install . && python3 -m advjax quickstart" in text
    assert 'advjax.load_run("runs/quickstart")' in text
    nav = _nav_titles(dom)
    for section in ("Home", "Guides", "Notebooks", "API reference", "Attacks", "Certification"):
        assert section in nav, f"{section!r} not in the navigation {nav}"
    assert 'class="md-search' in dom  # the Material theme, not a bare page


def test_api_page(site_url, screenshots, tmp_path):
    dom = open_page(f"{site_url}api/attacks/", screenshots / "api_attacks.png", tmp_path)
    assert 'id="advjax.attacks.pgd"' in dom
    text = _text(dom)
    assert "pgd( eps, *, steps: int = 40," in text  # the signature
    assert "Builds a projected-gradient (PGD) attack." in text  # the docstring
    assert ":func:" not in text and "Example:" not in text  # rendered, not raw reST


def test_notebook_page(site_url, screenshots, tmp_path):
    if not NOTEBOOKS:
        pytest.skip("docs/notebooks/ holds no notebook yet")
    notebook = NOTEBOOKS[0]
    dom = open_page(
        f"{site_url}notebooks/{notebook.stem}/", screenshots / f"{notebook.stem}.png", tmp_path
    )
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = next(("".join(c["source"]) for c in cells if c["cell_type"] == "code"), "")
    if code.strip():
        assert code.strip().splitlines()[0].strip() in _text(dom)
    assert "jp-Notebook" in dom or "jupyter-wrapper" in dom  # rendered by mkdocs-jupyter
