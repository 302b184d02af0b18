"""MkDocs hook: list the notebooks that exist in docs/notebooks/ under "Notebooks".

The nav in mkdocs.yml names only ``notebooks/index.md``; this hook appends every
``docs/notebooks/*.ipynb`` (sorted by file name) after it and adds the same list, with
each notebook's first heading, to the index page. A notebook that does not exist yet is
therefore never a broken nav entry or link in ``mkdocs build --strict``.
"""

from __future__ import annotations

import json
from pathlib import Path

SECTION = "Notebooks"
INDEX = "notebooks/index.md"
MARKER = "<!-- notebook list -->"


def _notebooks(docs_dir: str) -> list[Path]:
    return sorted((Path(docs_dir) / "notebooks").glob("*.ipynb"))


def _title(path: Path) -> str:
    """The notebook's first Markdown heading, else its file name."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        cells = []
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        for line in text.splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return path.stem.replace("_", " ")


def on_config(config):
    """Append the notebooks that exist to the nav's Notebooks section."""
    entries = [f"notebooks/{path.name}" for path in _notebooks(config["docs_dir"])]
    for item in config["nav"] or []:
        if isinstance(item, dict) and SECTION in item:
            section = item[SECTION]
            if not isinstance(section, list):
                section = [section]
            item[SECTION] = section + [e for e in entries if e not in section]
    return config


def on_page_markdown(markdown, page, config, files):
    """Fill the index page's marker with a link to every notebook."""
    if page.file.src_uri != INDEX or MARKER not in markdown:
        return markdown
    notebooks = _notebooks(config["docs_dir"])
    if notebooks:
        lines = [f"- [{_title(path)}]({path.name})" for path in notebooks]
    else:
        lines = ["*No notebooks yet.*"]
    return markdown.replace(MARKER, "\n".join(lines))
