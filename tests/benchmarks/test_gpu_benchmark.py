"""The GPU benchmark script runs end to end in its tiny configuration (issue 15, point 10)."""

from __future__ import annotations

import json
import math

import pytest


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_gpu_benchmark_writes_complete_json(tmp_path, run_benchmark):
    out = tmp_path / "x.json"
    proc = run_benchmark("gpu.py", "--tiny", "--out", str(out), keep_xla_flags=False)
    assert "images/s" in proc.stdout
    data = json.loads(out.read_text())

    assert {"budget_seconds", "elapsed_seconds", "environment", "config", "measurements"} <= set(
        data
    )
    assert 0 < data["elapsed_seconds"] <= data["budget_seconds"]
    assert "stopped" not in data
    env_info = data["environment"]
    assert env_info["device_kind"] and env_info["backend"]
    for package in ("jax", "jaxlib", "flax"):
        assert env_info["versions"][package]
    assert data["config"]["tiny"] is True

    m = data["measurements"]
    for precision in ("fp32", "bf16"):
        entry = m[f"advjax_pgd_{precision}"]
        assert entry["status"] == "ok", entry
        assert entry["precision"] == precision
        assert _positive(entry["images_per_second"])
        assert _positive(entry["compile_seconds"])
        assert _positive(entry["median_seconds"])
        assert len(entry["seconds"]) == entry["repeats"]
        assert 0.0 <= entry["attack_success_rate"] <= 1.0
        flops = entry["flops"]
        if flops["per_attack"] is None:
            assert flops["reason"]
        else:
            assert _positive(flops["per_attack"]) and _positive(flops["per_input_gradient"])
            assert flops["per_attack"] >= entry["steps"] * flops["per_input_gradient"] * 0.9
        if entry["mfu"] is None:
            assert entry["mfu_reason"]
        else:
            assert 0 < entry["mfu"] < 1
    assert _positive(data["model"]["forward_flops_per_image_xla"])

    torch_entry = m["torch_pgd"]
    assert torch_entry["status"] in ("ok", "skipped"), torch_entry
    if torch_entry["status"] == "skipped":
        assert torch_entry["reason"]
    else:
        assert torch_entry["architecture_check"]["equal"]
        for precision in ("fp32", "bf16"):
            assert _positive(torch_entry["per_precision"][precision]["images_per_second"])
            assert _positive(torch_entry["per_precision"][precision]["advjax_over_torch"])

    aa = m["autoattack"]
    assert aa["status"] == "ok", aa
    assert 0.0 <= aa["robust_accuracy"] <= aa["clean_accuracy"] <= 1.0
    assert aa["what_ran"] and aa["attacks"]
    assert _positive(aa["cold"]["images_per_second"])
    stages = aa["cold"]["per_attack"]
    assert list(stages) == aa["attacks_run"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    for stage in stages.values():
        assert stage["seconds"] >= 0 and math.isfinite(stage["seconds"])
        assert 0.0 <= stage["robust_accuracy_after"] <= 1.0


@pytest.mark.slow
def test_tiny_main_job_benchmark_times_every_contender(run_benchmark):
    """``main_job.py --tiny``: advjax on one device and on one per core (torch if present)."""
    proc = run_benchmark("main_job.py", "--tiny", keep_xla_flags=False)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    cores = results["cores"]
    expected = {"advjax 1 device", f"advjax {cores} devices"}
    assert expected <= set(results["train_ms"]) and expected <= set(results["eval_ms"])
    assert all(
        _positive(ms) for ms in [*results["train_ms"].values(), *results["eval_ms"].values()]
    )
