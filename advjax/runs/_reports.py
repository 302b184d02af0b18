"""Markdown and PNG reports of a run, rebuilt from its JSON and NumPy files at any time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from advjax import evaluation
from advjax.runs._format import METRICS, RunError, read_config

SUMMARY = "index.md"
GRID = "examples.png"
CURVE = "robustness_curve.png"
TRAINING_CURVES = "training_curves.png"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _spec_lines(record: dict) -> list[str]:
    spec = ", ".join(f"{k}={v}" for k, v in record["spec"].items() if v is not None)
    data = record.get("dataset", {}).get("name", "?")
    return [
        f"- settings: {spec}",
        f"- data: first {record['num_examples']} test images of `{data}`",
        f"- model SHA-256: `{record['model_sha256'][:16]}...`",
        f"- measured {record.get('created', '?')} in {record.get('seconds', '?')} s",
    ]


def render_eval(record: dict, directory: str | Path) -> list[Path]:
    """Writes ``report.md``, ``robustness_curve.png`` and (if stored) ``examples.png``.

    Args:
      record: a report written by :func:`advjax.runs.evaluate_run`.
      directory: its folder.

    Returns:
      The paths written.

    Example:
      >>> import pathlib, tempfile
      >>> from advjax.runs import render_eval
      >>> curve = {"name": "pgd", "robust_accuracy": [0.9, 0.5], "success_rate": [0.0, 0.4],
      ...          "mean_norm": [None, 0.1], "median_norm": [None, 0.1], "seconds": 1.0}
      >>> record = {"spec": {"attack": "pgd"}, "num_examples": 10, "model_sha256": "ab" * 32,
      ...           "report": {"norm": "linf", "epsilons": [0.0, 0.1], "num_examples": 10,
      ...                      "clean_accuracy": 0.9, "attacks": [curve],
      ...                      "worst_case": {**curve, "name": "worst_case"}}}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     [p.name for p in render_eval(record, pathlib.Path(tmp))]
      ['report.md', 'robustness_curve.png']
    """
    directory = Path(directory)
    report = evaluation.RobustnessReport.from_dict(record["report"])
    title = f"{record['spec']['attack']} ({report.norm})"
    markdown = evaluation.to_markdown(report, title)
    head, _, rest = markdown.partition("\n\n")
    text = head + "\n\n" + "\n".join(_spec_lines(record)) + "\n" + rest
    written = [directory / "report.md", directory / CURVE]
    written[0].write_text(text)
    evaluation.plot_robustness_curve(report, written[1])
    grid = directory / "grid.npz"
    if grid.is_file():
        with np.load(grid, allow_pickle=False) as stored:
            written.append(draw_examples(stored["clean"], stored["adversarial"], directory / GRID))
    return written


def render_certify(record: dict, directory: str | Path) -> list[Path]:
    """Writes the certification's ``report.md``.

    Args:
      record: a report written by :func:`advjax.runs.certify_run`.
      directory: its folder.

    Returns:
      The path written, in a list.

    Example:
      >>> import pathlib, tempfile
      >>> from advjax.runs import render_certify
      >>> record = {"spec": {"method": "ibp"}, "num_examples": 10, "model_sha256": "ab" * 32,
      ...           "summary": {"norm": "linf", "epsilons": [0.1], "clean_accuracy": 0.9,
      ...                       "certified_accuracy": [0.6], "attack_accuracy": [0.7],
      ...                       "attack": "pgd-100x10", "consistent": True}}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     print(render_certify(record, tmp)[0].read_text().splitlines()[-3])
      | 0.1 | 60.00% | 70.00% |
    """
    summary = record["summary"]
    unit = "L2 radius" if summary["norm"] == "l2" else "eps (linf)"
    attack = summary.get("attack")
    subset = summary.get("attacked_examples")
    on_subset = subset is not None and subset < record["num_examples"]
    lines = [
        f"# certification: {record['spec']['method']}",
        "",
        *_spec_lines(record),
        f"- clean accuracy: {_percent(summary['clean_accuracy'])}",
        "",
    ]
    count = len(summary["epsilons"])
    upper = summary.get("attack_accuracy") or [None] * count
    if on_subset:
        lines += [
            f"| {unit} | certified (all {record['num_examples']}) | certified (first {subset}) "
            f"| {attack} (first {subset}, upper bound) |",
            "|---|---|---|---|",
        ]
        rows = zip(
            summary["epsilons"],
            summary["certified_accuracy"],
            summary["certified_on_attacked"],
            upper,
            strict=True,
        )
        lines += [
            f"| {e:g} | {_percent(c)} | {_percent(s)} | {_percent(u)} |" for e, c, s, u in rows
        ]
    else:
        lines += [f"| {unit} | certified | {attack or 'attack'} (upper bound) |", "|---|---|---|"]
        rows = zip(summary["epsilons"], summary["certified_accuracy"], upper, strict=True)
        lines += [f"| {e:g} | {_percent(c)} | {_percent(u)} |" for e, c, u in rows]
    if summary.get("consistent") is not None:
        verdict = "consistent" if summary["consistent"] else "VIOLATED (a soundness bug)"
        attacked = summary.get("attacked_examples", record["num_examples"])
        lines += [
            "",
            f"The attack ran on the first {attacked} examples; on them, per example, "
            f"certified implies not broken by the attack: {verdict}.",
        ]
    if summary["norm"] == "l2":
        lines += [
            "",
            f"Randomized smoothing (sigma {summary['sigma']}): the smoothed classifier's "
            f"certificate, abstaining on {_percent(summary['abstained'])} of the examples.",
        ]
    path = Path(directory) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return [path]


def draw_examples(clean: np.ndarray, adversarial: np.ndarray, path: str | Path) -> Path:
    """A grid of clean images, adversarial images and their perturbations (scaled), as a PNG.

    Args:
      clean: ``[K, H, W, C]`` images in ``[0, 1]``.
      adversarial: the same shape.
      path: the PNG to write.

    Returns:
      ``path`` as a ``Path``.

    Example:
      >>> import numpy as np, pathlib, tempfile
      >>> from advjax.runs import draw_examples
      >>> x = np.zeros((3, 8, 8, 1)); x_adv = x + 0.1
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     draw_examples(x, x_adv, pathlib.Path(tmp) / "grid.png").read_bytes()[1:4]
      b'PNG'
    """
    from matplotlib.figure import Figure

    count = len(clean)
    figure = Figure(figsize=(1.4 * max(count, 1), 4.4), dpi=100)
    axes = figure.subplots(3, max(count, 1), squeeze=False)
    delta = adversarial - clean
    scale = max(float(np.abs(delta).max()), 1e-12)
    rows = (
        ("clean", clean, 0.0, 1.0),
        ("adversarial", adversarial, 0.0, 1.0),
        (f"perturbation (+-{scale:.3g})", delta, -scale, scale),
    )
    for row, (label, images, low, high) in enumerate(rows):
        for column in range(count):
            axis = axes[row, column]
            image = images[column]
            colour = image.shape[-1] == 3
            shown = (image - low) / (high - low) if colour else image[..., 0]
            axis.imshow(
                np.clip(shown, 0, 1) if colour else shown,
                cmap=None if colour else ("gray" if row < 2 else "coolwarm"),
                vmin=None if colour else low,
                vmax=None if colour else high,
            )
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def draw_training_curves(metrics_path: str | Path, path: str | Path) -> Path | None:
    """Clean and adversarial accuracy per epoch (training batches and held-out check), as a PNG.

    Args:
      metrics_path: a ``metrics.jsonl`` written by :func:`advjax.train.fit`.
      path: the PNG to write.

    Returns:
      ``path``, or ``None`` when the file holds no accuracy to plot.

    Example:
      >>> import json, pathlib, tempfile
      >>> from advjax.runs import draw_training_curves
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     metrics = pathlib.Path(tmp) / "metrics.jsonl"
      ...     _ = metrics.write_text(json.dumps({"epoch": 1, "train/clean_acc": 0.9}))
      ...     draw_training_curves(metrics, pathlib.Path(tmp) / "c.png").name
      'c.png'
    """
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    names = sorted(
        {k for r in records for k in r if k.endswith("_acc") and isinstance(r[k], int | float)}
    )
    if not names:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    axis = figure.subplots()
    for name in names:
        points = [(r["epoch"], 100 * r[name]) for r in records if name in r]
        axis.plot(*zip(*points, strict=True), marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def render_run(run_dir: str | Path) -> Path:
    """Rebuilds every report of a run from its stored JSON and NumPy files.

    Writes each ``eval/<name>/`` and ``certify/<name>/`` report's Markdown and
    PNG files, ``training_curves.png`` from ``metrics.jsonl``, and the run's
    summary ``index.md`` (:func:`write_index`).

    Args:
      run_dir: a run directory.

    Returns:
      The summary's path.

    Raises:
      RunError: not a run directory, or a stored report is unreadable.

    Example:
      >>> import tempfile, jax
      >>> from advjax import models
      >>> from advjax.runs import render_run, save_run_model
      >>> model = models.get_model("mlp", hidden=(8,))
      >>> variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = save_run_model(tmp, variables, model_name="mlp",
      ...                        model_kwargs={"hidden": [8]}, input_shape=(4, 4, 1))
      ...     render_run(tmp).read_text().splitlines()[0].endswith("(model mlp)")
      True
    """
    run_dir = Path(run_dir).absolute()
    read_config(run_dir)
    if (run_dir / METRICS).is_file():
        draw_training_curves(run_dir / METRICS, run_dir / TRAINING_CURVES)
    for kind, render in (("eval", render_eval), ("certify", render_certify)):
        for path, record in _stored_reports(run_dir, kind):
            render(record, path.parent)
    return write_index(run_dir)


def _stored_reports(run_dir: Path, kind: str):
    for path in sorted((run_dir / kind).glob("*/report.json")):
        try:
            yield path, json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RunError(f"{path} is unreadable: {error}") from error


def write_index(run_dir: str | Path) -> Path:
    """Writes the run's summary ``index.md``: recipe, training curves, one line per stored report.

    Evaluations and certifications call it after storing a report, so the
    summary lists every report in the run.

    Args:
      run_dir: a run directory.

    Returns:
      The path of ``index.md``.

    Raises:
      RunError: not a run directory, or a stored report is unreadable.

    Example:
      >>> import tempfile, jax
      >>> from advjax import models
      >>> from advjax.runs import save_run_model, write_index
      >>> model = models.get_model("mlp", hidden=(8,))
      >>> variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = save_run_model(tmp, variables, model_name="mlp",
      ...                        model_kwargs={"hidden": [8]}, input_shape=(4, 4, 1))
      ...     write_index(tmp).name
      'index.md'
    """
    run_dir = Path(run_dir).absolute()
    config = read_config(run_dir)
    model = config["model"].get("name") or config["model"].get("factory")
    lines = [f"# Run {run_dir.name} (model {model})", ""]
    recipe = config.get("recipe")
    if recipe:
        lines += [f"- recipe: `{recipe.get('name')}`", ""]
    if (run_dir / TRAINING_CURVES).is_file():
        lines += [f"![training curves]({TRAINING_CURVES})", ""]
    for kind in ("eval", "certify"):
        for path, record in _stored_reports(run_dir, kind):
            link = f"{kind}/{path.parent.name}"
            lines.append(f"- [{link}]({link}/report.md): {_one_line(record)}")
    path = run_dir / SUMMARY
    path.write_text("\n".join(lines) + "\n")
    return path


def _one_line(record: dict) -> str:
    if record["kind"] == "eval":
        report = record["report"]
        pairs = zip(report["epsilons"], report["worst_case"]["robust_accuracy"], strict=True)
        return ", ".join(f"eps {e:g}: {_percent(a)}" for e, a in pairs)
    summary = record["summary"]
    pairs = zip(summary["epsilons"], summary["certified_accuracy"], strict=True)
    return "certified " + ", ".join(f"{e:g}: {_percent(a)}" for e, a in pairs)
