"""Runs: every training run a loadable directory (format 1), and what is measured on it.

``save_run_model`` / ``write_config`` write a run, ``load_run`` reads it back
(verifying the SHA-256 of every array), ``evaluate_run`` and ``certify_run``
store reports in it, ``compare_runs`` / ``check_no_regression`` gate a model
update on robustness, and ``render_run`` rebuilds its Markdown and PNG reports.
``docs/runs.md`` documents the format.
"""

from advjax._integrity import json_digest, mismatched, tree_digests
from advjax.runs._certify import CERTIFY_METHODS, CertifySpec, certify_run, read_certified
from advjax.runs._compare import (
    Comparison,
    RobustnessRegression,
    check_no_regression,
    compare_runs,
)
from advjax.runs._evaluate import (
    EVAL_ATTACKS,
    EvalAttack,
    EvalSpec,
    checked_budgets,
    evaluate_run,
    evaluation_examples,
    read_masks,
)
from advjax.runs._format import (
    CHECKPOINTS,
    CONFIG,
    FORMAT,
    METRICS,
    MODEL_DIR,
    LoadedRun,
    RunError,
    build_model,
    environment,
    git_commit,
    load_run,
    model_spec,
    read_config,
    save_run_model,
    write_config,
)
from advjax.runs._reports import (
    draw_examples,
    draw_training_curves,
    render_certify,
    render_eval,
    render_run,
    write_index,
)
from advjax.runs._store import model_digest

__all__ = [
    "CERTIFY_METHODS",
    "CHECKPOINTS",
    "CONFIG",
    "EVAL_ATTACKS",
    "FORMAT",
    "METRICS",
    "MODEL_DIR",
    "CertifySpec",
    "Comparison",
    "EvalAttack",
    "EvalSpec",
    "LoadedRun",
    "RobustnessRegression",
    "RunError",
    "build_model",
    "certify_run",
    "checked_budgets",
    "check_no_regression",
    "compare_runs",
    "draw_examples",
    "draw_training_curves",
    "environment",
    "evaluate_run",
    "evaluation_examples",
    "git_commit",
    "json_digest",
    "load_run",
    "mismatched",
    "model_digest",
    "model_spec",
    "read_certified",
    "read_config",
    "read_masks",
    "render_certify",
    "render_eval",
    "render_run",
    "save_run_model",
    "tree_digests",
    "write_config",
    "write_index",
]
