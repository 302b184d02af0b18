"""The documentation site builds with ``mkdocs build --strict`` and shows the API and notebooks.

The build (mkdocs.yml at the repository root) renders the guides in docs/, one API page per
public subpackage from its ``__all__`` (mkdocstrings) and every ``docs/notebooks/*.ipynb``
as stored, with its outputs (mkdocs-jupyter, not executed). Strict mode turns every warning
(a broken link, a docstring griffe cannot read, an unresolved cross-reference) into a failure.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (it is part of the docs extra: pip install '.[docs]')",
)


def build_site(site_dir: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``mkdocs build --strict`` into ``site_dir``; the finished process and its seconds."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return result, time.perf_counter() - start


def _text(page: Path) -> str:
    """The page's visible text: tags dropped, entities decoded, whitespace collapsed."""
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def _entry(page: Path, identifier: str) -> str:
    """The visible text of one API entry: its heading, signature and docstring."""
    source = page.read_text(encoding="utf-8")
    start = source.index(f'id="{identifier}"')
    end = source.find('<div class="doc doc-object ', start)
    chunk = source[start : end if end != -1 else len(source)]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", chunk)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    result, seconds = build_site(site_dir)
    print(f"mkdocs build --strict took {seconds:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return site_dir


def test_home_page(site):
    text = _text(site / "index.html")
    assert "JAX-native adversarial robustness" in text
    assert "python3 -m pip install . && python3 -m advjax quickstart" in text
    assert "python3 -m pip install '.[test]' && python3 -m pytest -q" in text
    assert 'advjax.load_run("runs/quickstart")' in text
    for guide in ("attacks", "training", "certification", "runs", "performance"):
        assert (site / guide / "index.html").exists(), guide


@pytest.mark.parametrize(
    ("page", "identifier", "signature"),
    [
        ("attacks", "advjax.attacks.pgd", "pgd( eps, *, steps: int = 40,"),
        ("attacks", "advjax.attacks.with_restarts", "with_restarts("),
        ("certify", "advjax.certify.interval_bounds", "interval_bounds(fn: Callable) -> Callable"),
        ("train", "advjax.train.fit", "fit( state: TrainState, train_data, step: Callable,"),
        ("runs", "advjax.runs.load_run", "load_run("),
        ("advjax", "advjax.pgd", "pgd( eps, *, steps: int = 40,"),
    ],
)
def test_api_entry_has_signature_and_docstring(site, page, identifier, signature):
    entry = _entry(site / "api" / page / "index.html", identifier)
    assert signature in entry
    assert "Parameters:" in entry or "Returns:" in entry
    assert "Examples:" in entry and ">>>" in entry  # the doctest, rendered as code
    assert ":func:" not in entry and ":class:" not in entry  # Sphinx roles became links or code


def test_every_public_name_has_an_api_entry(site):
    subpackages = [
        "attacks",
        "losses",
        "evaluation",
        "train",
        "certify",
        "defenses",
        "models",
        "data",
        "parallel",
        "runs",
        "recipes",
        "backend",
    ]
    for sub in [None, *subpackages]:
        module = importlib.import_module("advjax" if sub is None else f"advjax.{sub}")
        page = site / "api" / (sub or "advjax") / "index.html"
        source = page.read_text(encoding="utf-8")
        missing = [
            name
            for name in module.__all__
            if not (sub is None and name in subpackages)
            and f'id="{module.__name__}.{name}"' not in source
        ]
        assert not missing, f"{page.relative_to(site)} lacks {missing}"


def test_one_page_per_notebook(site):
    index = (site / "notebooks" / "index.html").read_text(encoding="utf-8")
    if not NOTEBOOKS:
        assert "No notebooks yet." in _text(site / "notebooks" / "index.html")
    for notebook in NOTEBOOKS:
        page = site / "notebooks" / notebook.stem / "index.html"
        assert page.exists(), f"no page for {notebook.name}"
        assert f'href="{notebook.stem}/"' in index, f"the notebooks index lacks {notebook.name}"
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = next(("".join(c["source"]) for c in cells if c["cell_type"] == "code"), None)
        if code and code.strip():
            first_line = code.strip().splitlines()[0].strip()
            assert first_line in _text(page), f"{notebook.name}: its code is not on the page"
    # the jupytext twins are sources, not pages
    assert not list((site / "notebooks").glob("*.py"))
