"""Evaluation: clean and robust accuracy per attack and budget, and reports."""

from advjax.eval._report import (
    format_table,
    plot_robustness_curve,
    to_markdown,
    write_report,
)
from advjax.eval._robustness import AttackResult, RobustnessReport, evaluate

__all__ = [
    "AttackResult",
    "RobustnessReport",
    "evaluate",
    "format_table",
    "plot_robustness_curve",
    "to_markdown",
    "write_report",
]
