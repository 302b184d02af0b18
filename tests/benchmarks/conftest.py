"""Running a benchmark script from ``experiments/benchmarks`` as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_benchmark():
    """``run(script_name, *args, keep_xla_flags=True)``: the finished process, checked.

    The script runs from the repository root with it on ``PYTHONPATH``; a
    non-zero exit fails the test with the script's output.
    """

    def run(script: str, *args: str, keep_xla_flags: bool = True):
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        if not keep_xla_flags:
            env.pop("XLA_FLAGS", None)
        proc = subprocess.run(
            [sys.executable, str(ROOT / "experiments" / "benchmarks" / script), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        return proc

    return run
