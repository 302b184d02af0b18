"""The documentation notebooks in docs/notebooks: they run, match their .py twins, keep outputs.

Every notebook is a jupytext percent script ``NN_name.py`` (the reviewable source, paired with
``formats: ipynb,py:percent`` in its header) and its ``NN_name.ipynb`` twin, executed with
its outputs stored so that the docs site shows them. After editing a ``.py``, regenerate its
twin from ``docs/notebooks``::

    jupytext --to ipynb --execute NN_name.py

Every ``*.ipynb`` in the folder is picked up (notebooks added later included):

* it executes top to bottom without an error, on a copy in memory (the file is never written),
  in a fresh kernel of the interpreter running the tests, with ``docs/notebooks`` as the
  working directory and this checkout first on ``PYTHONPATH``; its wall time is printed (see
  it with ``-rP``) and recorded as the ``notebook_seconds`` property (``--junitxml``);
* its code and markdown cells are those of its ``.py`` twin, so a reviewer can trust the
  ``.py``;
* it stores the outputs of one clean top-to-bottom run.

The tests skip, saying so, when jupytext, nbformat, nbclient, ipykernel or jupyter_client is
missing (the ``test`` extra installs them).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "docs" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
JUPYTEXT_HEADER = "# ---\n# jupyter:\n"
SCRIPTS = sorted(
    path
    for path in NOTEBOOK_DIR.glob("*.py")
    if path.read_text(encoding="utf-8").startswith(JUPYTEXT_HEADER)
)
CELL_TIMEOUT = 300  # seconds per cell
REGENERATE = "regenerate it from docs/notebooks with `jupytext --to ipynb --execute {}`"
# jupyter_client runs a kernelspec whose command is one of these with sys.executable.
PYTHON_NAMES = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}


def _require(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: the notebook tests need jupytext, nbformat, "
            "nbclient, ipykernel and jupyter_client (pip install '.[test]')"
        )


def _ids(path: Path) -> str:
    return path.stem


def _kernel_manager():
    """A manager for a ``python3`` kernel that runs this very interpreter.

    The installed ``python3`` kernelspec is used when its command is this interpreter (a bare
    ``python``/``python3``, which jupyter_client replaces with ``sys.executable``, as in the
    kernelspec ipykernel installs into ``sys.prefix``); otherwise (another environment's
    kernelspec found first, or none installed) ipykernel's built-in spec, which launches
    ``sys.executable -m ipykernel_launcher``.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import AsyncKernelManager

    specs = KernelSpecManager()
    try:
        command = specs.get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        command = None
    if command is None or not (
        command in PYTHON_NAMES or os.path.abspath(command) == os.path.abspath(sys.executable)
    ):
        specs = KernelSpecManager(kernel_dirs=[])  # only ipykernel's own: sys.executable
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _kernel_env() -> dict[str, str]:
    """The test process's environment, with this checkout first on ``PYTHONPATH``."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _cell_sources(notebook) -> list[tuple[str, str]]:
    return [
        (cell.cell_type, cell.source.strip())
        for cell in notebook.cells
        if cell.cell_type in ("code", "markdown")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_without_errors(path, record_property):
    _require("nbformat", "nbclient", "ipykernel", "jupyter_client")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)  # a copy in memory; the file stays as it is
    client = NotebookClient(
        notebook,
        km=_kernel_manager(),
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's working directory
    )
    start = time.perf_counter()
    try:
        client.execute(cleanup_kc=True, env=_kernel_env())  # cleanup_kc: shut the kernel down
    except CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell raised an error:\n{error}", pytrace=False)
    seconds = time.perf_counter() - start
    record_property("notebook_seconds", round(seconds, 1))
    print(f"{path.name} executed in {seconds:.1f} s (wall time, kernel start included)")
    errors = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and any(o.output_type == "error" for o in cell.outputs)
    ]
    assert not errors, f"{path.name}: cells {errors} produced error outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_matches_its_py_twin(path):
    _require("jupytext", "nbformat")
    import jupytext
    import nbformat

    script = path.with_suffix(".py")
    assert script.exists(), f"{path.name} has no jupytext twin {script.name} next to it"
    source = jupytext.read(script)
    formats = source.metadata.get("jupytext", {}).get("formats", "")
    assert {"ipynb", "py:percent"} <= set(formats.split(",")), (
        f"{script.name}: its jupytext header must pair it as `formats: ipynb,py:percent`, "
        f"found {formats!r}"
    )
    stored = _cell_sources(nbformat.read(path, as_version=4))
    expected = _cell_sources(source)
    if stored != expected:
        diff = "\n".join(
            difflib.unified_diff(
                [f"[{kind}]\n{text}" for kind, text in expected],
                [f"[{kind}]\n{text}" for kind, text in stored],
                fromfile=script.name,
                tofile=path.name,
                lineterm="",
            )
        )
        pytest.fail(
            f"{path.name} is out of sync with {script.name}; {REGENERATE.format(script.name)}"
            f"\n{diff[:4000]}",
            pytrace=False,
        )


@pytest.mark.parametrize("script", SCRIPTS, ids=_ids)
def test_every_notebook_script_has_an_ipynb_twin(script):
    assert script.with_suffix(".ipynb").exists(), (
        f"{script.name} has no executed .ipynb twin; {REGENERATE.format(script.name)}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_stores_the_outputs_of_one_clean_run(path):
    _require("nbformat")
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    regenerate = REGENERATE.format(path.with_suffix(".py").name)
    code = [cell for cell in _code_cells(notebook) if cell.source.strip()]
    assert any(cell.outputs for cell in code), f"{path.name} has no stored outputs; {regenerate}"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} are not those of one top-to-bottom run; "
        f"{regenerate}"
    )
    errors = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and any(o.output_type == "error" for o in cell.outputs)
    ]
    assert not errors, f"{path.name}: cells {errors} store error outputs; {regenerate}"
