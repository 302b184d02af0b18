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


# --- train | eval | certify | compare | report | list on a tiny configuration -------------------

TINY = [
    "epochs=2",
    "train_size=1000",
    "model=mlp",
    "eps=0.1",
    "ramp=0",
    "monitor_examples=0",
    "eval_examples=200",
    "eval_steps=5",
    "eval_restarts=1",
    "eval_step_size=0",
    "eval_attacks=[pgd]",
]
EVAL = ["--n", "200", "--steps", "5", "--restarts", "1"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A PGD-AT run (A) and a standard run (B) of the same tiny configuration."""
    root = tmp_path_factory.mktemp("cli")
    a, b = root / "A", root / "B"
    robust = ["train_steps=5", "train_step_size=0.03"]
    assert (
        cli.main(["train", "pgd_at", "--out", str(a), "--no-progress", "--set", *TINY, *robust])
        == 0
    )
    assert cli.main(["train", "standard", "--out", str(b), "--no-progress", "--set", *TINY]) == 0
    return a, b


def _report(run, kind="eval"):
    (path,) = (run / kind).glob("*/report.json")
    return json.loads(path.read_text())


def test_train_writes_a_format_1_run(two_runs):
    a, _ = two_runs
    config = json.loads((a / "config.json").read_text())
    assert config["format"] == 1 and config["recipe"]["name"] == "pgd_at"
    assert config["recipe"]["config"]["train_steps"] == 5
    assert config["dataset"]["name"] == "mnist-embedded" and config["threat"]["eps"] == 0.1
    assert {"advjax", "jax", "flax", "git_commit"} <= set(config["environment"])
    assert config["model_digests"] and advjax.load_run(a).config == config
    for name in ("metrics.jsonl", "index.md", "training_curves.png", "model", "checkpoints"):
        assert (a / name).exists(), name
    (report_dir,) = (a / "eval").glob("pgd-*")
    for name in ("report.md", "robustness_curve.png", "examples.png", "per_example.npz"):
        assert (report_dir / name).is_file(), name
    assert _report(a)["report"]["epsilons"] == [0.0, 0.1]  # the curve starts at clean accuracy


def test_eval_reproduces_the_recipes_own_evaluation(two_runs, capsys):
    a, _ = two_runs
    before = _report(a)
    (report_dir,) = (a / "eval").glob("pgd-*")
    masks_before = np.load(report_dir / "per_example.npz")["robust"]
    argv = ["eval", str(a), "--attack", "pgd", "--eps", "0.1", *EVAL, "--fresh", "--no-progress"]
    assert cli.main(argv) == 0
    after = _report(a)
    assert after["report"] == before["report"] | {
        "attacks": after["report"]["attacks"],
        "worst_case": after["report"]["worst_case"],
    }
    for key in ("robust_accuracy", "success_rate", "mean_norm"):
        assert after["report"]["attacks"][0][key] == before["report"]["attacks"][0][key]
    np.testing.assert_array_equal(np.load(report_dir / "per_example.npz")["robust"], masks_before)
    assert "| pgd |" in capsys.readouterr().out


def test_certify_reports_bounds_consistent_with_the_attack(two_runs, capsys):
    a, _ = two_runs
    argv = ["certify", str(a), "--method", "ibp", "--eps", "0.01", "0.1", "--n", "100"]
    assert cli.main([*argv, "--pgd-steps", "5", "--pgd-restarts", "1"]) == 0
    summary = _report(a, "certify")["summary"]
    assert summary["consistent"] is True and summary["violations"] == [0, 0]
    for certified, attacked in zip(
        summary["certified_accuracy"], summary["attack_accuracy"], strict=True
    ):
        assert certified <= attacked <= summary["clean_accuracy"]
    assert "certified" in capsys.readouterr().out


def test_compare_names_a_robustness_drop_and_passes_a_run_against_itself(two_runs, capsys):
    a, b = two_runs
    assert cli.main(["compare", str(a), str(b), "--max-drop", "1", *EVAL]) == 1
    out = capsys.readouterr().out
    assert "FAIL: robust accuracy @ 0.1 dropped" in out
    assert cli.main(["compare", str(a), str(a), "--max-drop", "1", *EVAL]) == 0
    assert "PASS" in capsys.readouterr().out


def test_check_no_regression_is_the_same_gate_in_python(two_runs):
    a, b = two_runs
    run_a, run_b = advjax.load_run(a), advjax.load_run(b)
    spec = advjax.runs.EvalSpec("pgd", (0.1,), n=200, steps=5, restarts=1)
    with pytest.raises(advjax.runs.RobustnessRegression, match="dropped"):
        advjax.runs.check_no_regression(run_a, run_b, spec, max_drop=1.0)
    comparison = advjax.runs.check_no_regression(run_a, run_a, spec, max_drop=0.0)
    assert comparison.became_vulnerable[0.1] == []
    lost = advjax.runs.compare_runs(run_a, run_b, spec).became_vulnerable[0.1]
    robust_a = np.load(next((a / "eval").glob("*/per_example.npz")))["robust"][1]
    assert lost and all(robust_a[i] for i in lost)


def test_report_rebuilds_markdown_and_pictures(two_runs, capsys):
    a, _ = two_runs
    for png in a.rglob("*.png"):
        png.unlink()
    (a / "index.md").unlink()
    assert cli.main(["report", str(a)]) == 0
    assert (a / "training_curves.png").is_file() and (a / "index.md").is_file()
    assert len(list((a / "eval").rglob("*.png"))) == 2
    assert "eval/pgd" in (a / "index.md").read_text()


def test_list_names_every_registry(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("fast_mnist", "autoattack", "linf", "trades", "crown-ibp", "mnist-embedded"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "pgd-at"], "unknown recipe 'pgd-at'; did you mean ['pgd_at'"),
        (["train", "trades", "--set", "betta=1"], "unknown key 'betta'"),
        (["train", "trades", "--set", "beta=high"], "bad override"),
        (["train", "trades", "--set", "optimizer=lamb"], "optimizer must be one of"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["certify", "/nonexistent/run"], "does not exist"),
        (["train", "standard", "--set", "eps=-0.1"], "eps must be finite and > 0"),
        (["train", "standard", "--set", "epochs=0"], "epochs must be >= 1"),
        (["train", "standard", "--set", "eval_attacks=[pgdd]"], "unknown eval_attacks"),
        (["train", "standard", "--set", "eval_steps=5"], "moves at most"),
        (["train", "trades", "--set", "norm=l2"], "trains against ['linf'] only"),
    ],
)
def test_bad_commands_exit_2_with_the_cause(argv, message, tmp_path, capsys):
    argv = [a.replace("/nonexistent", str(tmp_path / "missing")) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written for a rejected configuration


def test_train_refuses_to_overwrite_and_resume_refuses_changes(two_runs, tmp_path, capsys):
    a, _ = two_runs
    assert cli.main(["train", "pgd_at", "--out", str(a), "--set", *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "trades", "--out", str(a), "--resume"]) == 2
    assert "is a run of recipe 'pgd_at'" in capsys.readouterr().err
    assert cli.main(["train", "pgd_at", "--out", str(a), "--resume"]) == 2
    assert "has finished training; nothing to resume" in capsys.readouterr().err
    part = str(tmp_path / "part")
    assert cli.main(["train", "standard", "--out", part, "--max-steps", "2", "--set", *TINY]) == 0
    assert "--resume" in capsys.readouterr().out
    assert cli.main(["train", "standard", "--out", part, "--resume", "--set", "epochs=9"]) == 2
    assert "changes ['epochs']" in capsys.readouterr().err
    assert cli.main(["train", "pgd_at", "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["train", "eval", "certify", "compare", "report", "list", "quickstart"]
)
def test_every_command_help_ends_with_a_runnable_example(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([command, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    example = out.split("example:")[-1].strip()
    assert example.startswith(f"advjax {command}")
    parsed = cli.build_parser().parse_args(example.split()[1:])
    assert parsed.command == command


def test_eval_and_certify_refuse_bad_settings_and_keep_budgets_apart(two_runs, capsys):
    a, _ = two_runs
    for argv, message in [
        (["eval", str(a), "--steps", "0"], "steps must be a whole number >= 1"),
        (["eval", str(a), "--step-size", "-1"], "step_size must be finite and > 0"),
        (["eval", str(a), "--eps", "nan"], "budgets must be finite"),
        (["eval", str(a), "--norm", "l2"], "give --eps for l2"),
        (["certify", str(a), "--method", "smoothing", "--sigma", "0"], "sigma"),
        (["certify", str(a), "--method", "smoothing", "--samples", "0"], "--samples"),
        (["eval", str(a), "--attack", "square", "--norm", "l1", "--eps", "1"], "no update"),
        (["eval", str(a), "--attack", "autoattack", "--norm", "l0", "--eps", "3"], "no update"),
    ]:
        assert cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    spec = advjax.runs.EvalSpec("fgsm", 0.05, n=20)
    other = advjax.runs.EvalSpec("fgsm", (0.05, 0.1), n=20)
    assert spec.name() != other.name()
    run = advjax.load_run(a)
    first = advjax.runs.evaluate_run(run, spec)
    advjax.runs.evaluate_run(run, other)
    assert advjax.runs.evaluate_run(run, spec)["reused"]
    assert not first["reused"] and spec.name() in (a / "index.md").read_text()
    big = advjax.runs.evaluate_run(run, advjax.runs.EvalSpec("fgsm", 0.05, n=10**6))
    assert big["spec"]["n"] == 2000 and big["num_examples"] == 2000
    argv = ["eval", str(a), "--attack", "fgsm", "--eps", "0.05", "--n", "1000000", "--fresh"]
    assert cli.main([*argv, "--no-progress"]) == 0
    assert "stored report reused" not in capsys.readouterr().out  # --fresh measures again


def test_certify_can_attack_a_subset_and_says_so(two_runs, capsys):
    a, _ = two_runs
    argv = ["certify", str(a), "--eps", "0.05", "--n", "100", "--pgd-examples", "40"]
    assert cli.main([*argv, "--pgd-steps", "5", "--pgd-restarts", "1", "--no-progress"]) == 0
    (path,) = [p for p in (a / "certify").glob("ibp-eps0.05-n100-*/report.json")]
    summary = json.loads(path.read_text())["summary"]
    assert summary["attacked_examples"] == 40 and summary["consistent"] is True
    assert summary["certified_on_attacked"][0] <= summary["attack_accuracy"][0]
    assert "first 40" in (path.parent / "report.md").read_text()


def test_train_takes_the_data_set_as_a_flag(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["train", "standard", "--out", str(out), "--data", "mnist-5k", "--no-eval"]
    assert cli.main(argv) == 2  # mnist-5k reads files: without --data-dir it says so
    assert "--data-dir" in capsys.readouterr().err
