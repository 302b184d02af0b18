"""The attack-fidelity benchmark runs end to end in its tiny configuration (needs `.[bench]`)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_tiny_attack_fidelity_benchmark_judges_both_sides(tmp_path, run_benchmark):
    for module in ("torch", "torchattacks", "foolbox"):
        pytest.importorskip(module, reason="the references come with pip install '.[bench]'")
    out = tmp_path / "fidelity.json"
    rows = "fgsm,ddn,square-queries"
    proc = run_benchmark("attack_fidelity.py", "--tiny", "--rows", rows, "--norms", "linf",
                         "--out", str(out))  # fmt: skip
    results = json.loads(out.read_text())
    assert {r["attack"] for r in results} == set(rows.split(","))
    assert "torchattacks FGSM" in proc.stdout and "foolbox DDNAttack" in proc.stdout
    for r in results:
        assert r["n"] == 4 and r["ours_seconds"] > 0 and r["reference_seconds"] > 0
        if r["kind"] == "min_norm":
            assert 0 <= r["ours_success"] <= 100 and 0 <= r["reference_success"] <= 100
        else:
            assert 0 <= r["ours"] <= 100 and 0 <= r["reference"] <= 100
    assert [r["queries"] for r in results if r["attack"] == "square-queries"] == [100, 1000, 5000]
