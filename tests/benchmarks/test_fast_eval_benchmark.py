"""The fast-evaluation benchmark runs end to end in its tiny configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "benchmarks" / "fast_eval.py"


def test_tiny_fast_eval_benchmark_compares_both_evaluations(tmp_path):
    out = tmp_path / "fast.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(out.read_text())
    assert row["model"] == "untrained" and "ratio" in proc.stdout
    for name in ("autoattack", "fast"):
        assert 0.0 <= row[name]["robust_accuracy"] <= row["clean_accuracy"]
        assert row[name]["seconds"] > 0
    assert row["fast"]["stages"]["apgd-ce"]["examples"] == round(16 * row["clean_accuracy"])
    ratio = row["fast"]["seconds"] / row["autoattack"]["seconds"]
    assert abs(row["time_ratio_fast_over_autoattack"] - ratio) < 1e-9
