"""The ``advjax`` command and run directories."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

import advjax
from advjax import cli, data


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "quick"
    code = cli.main(
        [
            "quickstart",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--eval-examples",
            "64",
            "--eval-steps",
            "3",
            "--eval-restarts",
            "2",
            "--train-steps",
            "2",
            "--eval-epsilons",
            "0.1",
            "0.3",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_quickstart_writes_its_run_directory(tiny_run):
    for name in [
        "report.json",
        "report.md",
        "robustness_curve.png",
        "config.json",
        "metrics.jsonl",
        "summary.json",
    ]:
        assert (tiny_run / name).is_file(), name
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["num_examples"] == 64 and report["epsilons"] == pytest.approx([0.1, 0.3])
    assert {a["name"] for a in report["attacks"]} == {"fgsm", "pgd3x2"}
    assert advjax.train.latest_checkpoint(tiny_run / "checkpoints" / "steps") is not None


def test_load_run_gives_the_trained_model(tiny_run):
    run = advjax.load_run(tiny_run)
    test_set = data.load_embedded_mnist("test")
    x = np.asarray(data.to_device(test_set.images[:64]))
    accuracy = float(np.mean(np.argmax(np.asarray(run.logits_fn(x)), -1) == test_set.labels[:64]))
    report = json.loads((tiny_run / "report.json").read_text())
    assert accuracy == pytest.approx(report["clean_accuracy"])
    x_adv = advjax.pgd(0.3, steps=2)(run.logits_fn, x, test_set.labels[:64], key=jax.random.key(0))
    assert float(np.abs(np.asarray(x_adv) - x).max()) <= 0.3 + 1e-5


def test_load_run_errors(tiny_run, tmp_path):
    with pytest.raises(advjax.RunError, match="does not exist"):
        advjax.load_run(tmp_path / "missing")
    with pytest.raises(advjax.RunError, match="config.json is missing"):
        advjax.load_run(tmp_path)
    broken = tmp_path / "no_model"
    broken.mkdir()
    shutil.copy(tiny_run / "config.json", broken / "config.json")
    with pytest.raises(advjax.RunError, match="lacks its saved model"):
        advjax.load_run(broken)


def test_cli_rejects_unknown_commands_and_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train-everything"])
    with pytest.raises(SystemExit):
        cli.main(["quickstart", "--epochs", "many"])
