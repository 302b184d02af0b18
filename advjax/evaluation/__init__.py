"""Evaluation: clean and robust accuracy per attack and budget, and reports."""

from advjax.evaluation._autoattack import (
    AutoAttackResult,
    autoattack,
    rand_attacks,
    standard_attacks,
)
from advjax.evaluation._compaction import compacted_loop
from advjax.evaluation._diagnostics import (
    curve_checks,
    gradient_masking_checks,
    non_finite_gradient_mask,
)
from advjax.evaluation._fast import fast_autoattack, linearised_distances, malt_targets
from advjax.evaluation._report import (
    draw_robustness_curve,
    format_table,
    plot_robustness_curve,
    to_markdown,
    write_report,
)
from advjax.evaluation._robustness import (
    AttackResult,
    RobustnessReport,
    evaluate,
    summarise_attack,
)

__all__ = [
    "AttackResult",
    "AutoAttackResult",
    "autoattack",
    "compacted_loop",
    "fast_autoattack",
    "linearised_distances",
    "malt_targets",
    "curve_checks",
    "draw_robustness_curve",
    "gradient_masking_checks",
    "non_finite_gradient_mask",
    "rand_attacks",
    "standard_attacks",
    "summarise_attack",
    "RobustnessReport",
    "evaluate",
    "format_table",
    "plot_robustness_curve",
    "to_markdown",
    "write_report",
]
