"""Reports stored in a run: the header every report carries, and reuse of a matching one."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

from advjax._integrity import json_digest
from advjax.runs._format import LoadedRun, RunError, environment

REPORT = "report.json"


def model_digest(run: LoadedRun) -> str:
    """One SHA-256 over the run's model digests: which weights a report was measured on.

    Example:
      >>> from advjax.runs import LoadedRun, model_digest
      >>> run = LoadedRun(None, {}, None, {"model_digests": {"params/w": "ab"}})
      >>> len(model_digest(run))
      64
    """
    return json_digest(run.config.get("model_digests", {}))


def report_directory(run: LoadedRun, kind: str, name: str) -> Path:
    """``<run>/<kind>/<name>``; a run built in memory has none.

    Raises:
      RunError: the run has no directory.
    """
    if run.directory is None:
        raise RunError("this run was built in memory; save it with save_run_model first.")
    return run.directory / kind / name


def stored_report(directory: Path, spec: dict, run: LoadedRun, needs: tuple[str, ...] = ()):
    """The report in ``directory`` if it was measured with ``spec`` on this run's weights.

    Args:
      directory: the report's folder.
      spec: the settings as a JSON-ready dict.
      run: the run (its weights' digest must match the report's).
      needs: other files of the folder that must exist for the report to be reused.

    Returns:
      The stored record with ``"directory"`` and ``"reused": True``, or ``None``.
    """
    path = directory / REPORT
    if not path.is_file() or not all((directory / name).is_file() for name in needs):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("spec") != spec or record.get("model_sha256") != model_digest(run):
        return None
    return {**record, "directory": str(directory), "reused": True}


def new_report(
    kind: str, spec: dict, run: LoadedRun, num_examples: int, started: float, **body
) -> dict[str, Any]:
    """A report's record: format, kind, settings, the weights' digest, data, time, environment.

    Args:
      kind: ``"eval"`` or ``"certify"``.
      spec: the settings as a JSON-ready dict.
      run: the run measured.
      num_examples: the examples measured.
      started: ``time.perf_counter()`` when the measurement began.
      **body: the measurement itself (``report=...`` or ``summary=...``).

    Returns:
      The JSON-ready record.
    """
    return {
        "format": 1,
        "kind": kind,
        "spec": spec,
        "model_sha256": model_digest(run),
        "dataset": run.config.get("dataset", {"name": "mnist-embedded"}),
        "num_examples": int(num_examples),
        "seconds": round(time.perf_counter() - started, 2),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        **body,
    }


def write_report(directory: Path, record: dict) -> dict:
    """Writes ``record`` as ``directory/report.json``; returns it with ``"directory"``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / REPORT).write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "directory": str(directory), "reused": False}
