"""Writing a robustness report: ``report.json``, ``report.md`` and a curve PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

from advjax.evaluation._robustness import RobustnessReport

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CURVE_PNG = "robustness_curve.png"


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def _number(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def format_table(report: RobustnessReport) -> str:
    """A Markdown table of robust accuracy per attack (rows) and budget (columns).

    Args:
      report: the :class:`RobustnessReport` to tabulate.

    Returns:
      The table as one string (no trailing newline): a row per attack and one
      for ``worst_case``, accuracies as percentages, and each attack's wall time
      in seconds.

    Example:
      >>> from advjax.evaluation import AttackResult, RobustnessReport, format_table
      >>> pgd = AttackResult("pgd", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1], 10, 0.9, [pgd], worst)
      >>> print(format_table(report))
      | attack | eps=0 | eps=0.1 | time (s) |
      |---|---|---|---|
      | pgd | 90.00% | 50.00% | 1.0 |
      | worst_case | 90.00% | 50.00% | 1.0 |
    """
    header = "| attack | " + " | ".join(f"eps={e:g}" for e in report.epsilons) + " | time (s) |"
    rule = "|---" * (len(report.epsilons) + 2) + "|"
    rows = [header, rule]
    for result in [*report.attacks, report.worst_case]:
        cells = " | ".join(_percent(v) for v in result.robust_accuracy)
        rows.append(f"| {result.name} | {cells} | {result.seconds:.1f} |")
    return "\n".join(rows)


def _detail_table(report: RobustnessReport) -> str:
    rows = [
        "| attack | eps | robust acc | success rate | mean norm | median norm |",
        "|---|---|---|---|---|---|",
    ]
    for result in [*report.attacks, report.worst_case]:
        for i, eps in enumerate(report.epsilons):
            rows.append(
                f"| {result.name} | {eps:g} | {_percent(result.robust_accuracy[i])} | "
                f"{_percent(result.success_rate[i])} | {_number(result.mean_norm[i])} | "
                f"{_number(result.median_norm[i])} |"
            )
    return "\n".join(rows)


def to_markdown(report: RobustnessReport, title: str = "Robustness report") -> str:
    """The whole report as Markdown: summary, robust accuracy table, details, metadata.

    Args:
      report: the :class:`RobustnessReport` to render.
      title: the level-1 heading.

    Returns:
      The Markdown text, ending with a newline: the summary, :func:`format_table`,
      success rates and perturbation norms per attack and budget, the
      gradient-masking diagnostics (when the report has any) and ``report.meta``
      as JSON (when not empty).

    Example:
      >>> from advjax.evaluation import AttackResult, RobustnessReport, to_markdown
      >>> pgd = AttackResult("pgd", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1], 10, 0.9, [pgd], worst)
      >>> text = to_markdown(report, "Demo")
      >>> text.splitlines()[:5]
      ['# Demo', '', '- examples: 10', '- threat model: linf', '- clean accuracy: 90.00%']
      >>> "| pgd | 0.1 | 50.00% | 40.00% | 0.1000 | 0.1000 |" in text
      True
    """
    lines = [
        f"# {title}",
        "",
        f"- examples: {report.num_examples}",
        f"- threat model: {report.norm}",
        f"- clean accuracy: {_percent(report.clean_accuracy)}",
        "",
        "## Robust accuracy",
        "",
        "An example counts as robust at a budget if it is classified correctly and no",
        "attack at that or any smaller budget changed its prediction. `worst_case` takes,",
        "per example, the strongest of all attacks.",
        "",
        format_table(report),
        "",
        "## Success rate and perturbation size",
        "",
        f"Success rate is over the initially correct examples; norms are {report.norm} norms of",
        "the successful perturbations (each at the smallest budget that succeeded).",
        "",
        _detail_table(report),
    ]
    warnings = getattr(report, "warnings", None) or []
    diagnostics = getattr(report, "diagnostics", None) or {}
    if warnings or diagnostics:
        lines += ["", "## Gradient-masking diagnostics", ""]
        if warnings:
            lines += [f"> **WARNING:** {warning}" for warning in warnings]
        else:
            lines.append("No sign of gradient masking found.")
        figures = {k: v for k, v in diagnostics.items() if isinstance(v, (int, float))}
        if figures:
            lines += [""] + [f"- {name}: {value:.4g}" for name, value in figures.items()]
    if report.meta:
        lines += ["", "## Run", "", "```json", json.dumps(report.meta, indent=2), "```"]
    return "\n".join(lines) + "\n"


def draw_robustness_curve(report: RobustnessReport, axis) -> None:
    """Draws accuracy (%) against budget into a Matplotlib ``axis``, one line per attack.

    Uses only the given axis (no ``pyplot`` state, no backend switch), so it
    fits into a notebook's own figures.

    Args:
      report: the :class:`RobustnessReport` to draw.
      axis: a ``matplotlib.axes.Axes``.

    Example:
      >>> from matplotlib.figure import Figure
      >>> from advjax.evaluation import AttackResult, RobustnessReport, draw_robustness_curve
      >>> pgd = AttackResult("pgd", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1], 10, 0.9, [pgd], worst)
      >>> axis = Figure().subplots()
      >>> draw_robustness_curve(report, axis)
      >>> [line.get_label() for line in axis.get_lines()]
      ['pgd', 'worst_case', 'clean']
    """
    for result in [*report.attacks, report.worst_case]:
        style = "--" if result.name == "worst_case" else "-"
        axis.plot(
            report.epsilons,
            [100 * v for v in result.robust_accuracy],
            style,
            marker="o",
            label=result.name,
        )
    axis.axhline(100 * report.clean_accuracy, color="gray", linestyle=":", label="clean")
    axis.set_xlabel(f"epsilon ({report.norm})")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(f"Robustness curve ({report.num_examples} examples)")


def plot_robustness_curve(report: RobustnessReport, path: str | Path) -> Path:
    """Saves accuracy against budget, one line per attack, to ``path`` (PNG).

    Built on Matplotlib's object-oriented API: the global backend and
    ``pyplot``'s current figure are left alone.

    Args:
      report: the :class:`RobustnessReport` to plot.
      path: the PNG file to write.

    Returns:
      ``path`` as a ``Path``.

    Example:
      >>> import tempfile, pathlib
      >>> from advjax.evaluation import AttackResult, RobustnessReport, plot_robustness_curve
      >>> pgd = AttackResult("pgd", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1], 10, 0.9, [pgd], worst)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     png = plot_robustness_curve(report, pathlib.Path(tmp) / "curve.png")
      ...     png.read_bytes()[1:4]
      b'PNG'
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    draw_robustness_curve(report, figure.subplots())
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def write_report(report: RobustnessReport, directory: str | Path, title: str = "Robustness report"):
    """Writes ``report.json``, ``report.md`` and ``robustness_curve.png`` into ``directory``.

    Existing files of those names are overwritten.

    Args:
      report: the :class:`RobustnessReport` to write.
      directory: the folder to write into; created, with its parents, if missing.
      title: the Markdown report's heading (see :func:`to_markdown`).

    Returns:
      The three paths (``pathlib.Path``), in that order.

    Raises:
      OSError: when the directory or a file cannot be written.

    Example:
      >>> import json, pathlib, tempfile
      >>> from advjax.evaluation import AttackResult, RobustnessReport, write_report
      >>> pgd = AttackResult("pgd", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1], 10, 0.9, [pgd], worst)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     paths = write_report(report, pathlib.Path(tmp) / "run")
      ...     saved = json.loads(paths[0].read_text())
      >>> [path.name for path in paths]
      ['report.json', 'report.md', 'robustness_curve.png']
      >>> saved["clean_accuracy"], saved["epsilons"]
      (0.9, [0.0, 0.1])
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / REPORT_JSON
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    md_path = directory / REPORT_MD
    md_path.write_text(to_markdown(report, title))
    png_path = plot_robustness_curve(report, directory / CURVE_PNG)
    return json_path, md_path, png_path
