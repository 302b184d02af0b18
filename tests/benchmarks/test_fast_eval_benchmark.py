"""The fast-evaluation and early-exit benchmarks run end to end in their tiny configurations."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_tiny_fast_eval_benchmark_compares_both_evaluations(tmp_path, run_benchmark):
    out = tmp_path / "fast.json"
    proc = run_benchmark("fast_eval.py", "--tiny", "--out", str(out))
    (row,) = json.loads(out.read_text())
    assert row["model"] == "untrained" and "ratio" in proc.stdout
    for name in ("autoattack", "fast"):
        assert 0.0 <= row[name]["robust_accuracy"] <= row["clean_accuracy"]
        assert row[name]["seconds"] > 0
    assert row["fast"]["stages"]["apgd-ce"]["examples"] == round(16 * row["clean_accuracy"])
    ratio = row["fast"]["seconds"] / row["autoattack"]["seconds"]
    assert abs(row["time_ratio_fast_over_autoattack"] - ratio) < 1e-9


@pytest.mark.slow
def test_tiny_early_exit_benchmark_finds_the_same_counts(tmp_path, run_benchmark):
    out = tmp_path / "early_exit.json"
    run_benchmark("evaluate_early_exit.py", "--tiny", "--rounds", "1", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["identical_robust_accuracy"] and result["images"] == 64
    assert len(result["seconds_with_early_exit"]) == len(result["seconds_without_early_exit"]) == 1
    assert len(result["robust_accuracy"]) == 2  # fgsm, pgd
    assert all(len(row) == 2 for row in result["robust_accuracy"])  # two budgets
    # the tiny budget leaves points robust, so the equality compares more than zeros
    assert all(0 < row[0] < 1 for row in result["robust_accuracy"])


@pytest.mark.slow
def test_tiny_square_starts_benchmark_compares_both_starts(run_benchmark):
    proc = run_benchmark("square_starts.py", "--tiny")
    (line,) = [row for row in proc.stdout.splitlines() if row.startswith("untrained")]
    assert "own start [" in line and "from APGD's closest point [" in line, line


@pytest.mark.slow
def test_tiny_malt_targets_benchmark_reports_every_cap(run_benchmark):
    proc = run_benchmark("malt_targets.py", "--tiny", "--caps", "3,1")
    lines = [row for row in proc.stdout.splitlines() if row.startswith("untrained")]
    assert [row.split("at most ")[1].split(" ")[0] for row in lines] == ["3", "1"]
