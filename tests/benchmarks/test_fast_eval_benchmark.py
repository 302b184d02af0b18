"""The fast-evaluation and early-exit benchmarks run end to end in their tiny configurations."""

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


def test_tiny_early_exit_benchmark_finds_the_same_counts(tmp_path):
    out = tmp_path / "early_exit.json"
    script = ROOT / "experiments" / "benchmarks" / "evaluate_early_exit.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--tiny", "--rounds", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["identical_robust_accuracy"] and result["images"] == 64
    assert len(result["seconds_with_early_exit"]) == len(result["seconds_without_early_exit"]) == 1
    assert len(result["robust_accuracy"]) == 2  # fgsm, pgd
    assert all(len(row) == 2 for row in result["robust_accuracy"])  # two budgets
