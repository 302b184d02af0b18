"""Two runs measured the same way, side by side, and a regression gate for model updates."""

from __future__ import annotations

import dataclasses

import numpy as np

from advjax.runs._certify import CertifySpec, certify_run, read_certified
from advjax.runs._evaluate import EvalSpec, evaluate_run, read_masks
from advjax.runs._format import LoadedRun, RunError


class RobustnessRegression(AssertionError):
    """Run B is less robust than run A by more than the allowed drop.

    An ``AssertionError``, so that :func:`check_no_regression` fails a test in a
    project's own suite with the comparison table as its message.

    Example:
      >>> from advjax.runs import RobustnessRegression
      >>> issubclass(RobustnessRegression, AssertionError)
      True
    """


@dataclasses.dataclass
class Comparison:
    """Run A and run B measured with the same attack, budgets, examples and key.

    Attributes:
      run_a: run A's directory.
      run_b: run B's directory.
      epsilons: the budgets (``0`` first).
      clean: ``(A, B)`` clean accuracy.
      robust: per budget, ``(A, B)`` robust accuracy under the spec's attack.
      certified: per certified budget, ``(A, B)`` certified accuracy, or ``{}``.
      became_vulnerable: per budget, the indices of examples robust in A and not in B.
      became_robust: per budget, the indices of examples robust in B and not in A.
      max_drop: the allowed drop, in percentage points.
      drops: one line per figure where B is more than ``max_drop`` points below A.

    Example:
      >>> from advjax.runs import Comparison
      >>> c = Comparison("A", "B", [0.0, 0.3], (0.99, 0.98), {0.3: (0.9, 0.7)}, {},
      ...                {0.3: [4, 7]}, {0.3: []}, 1.0, ["robust accuracy @ 0.3 dropped 20 points"])
      >>> c.passed
      False
      >>> print(c.table().splitlines()[-1])
      FAIL: robust accuracy @ 0.3 dropped 20 points
    """

    run_a: str
    run_b: str
    epsilons: list[float]
    clean: tuple[float, float]
    robust: dict[float, tuple[float, float]]
    certified: dict[float, tuple[float, float]]
    became_vulnerable: dict[float, list[int]]
    became_robust: dict[float, list[int]]
    max_drop: float
    drops: list[str]

    @property
    def passed(self) -> bool:
        """Whether no figure dropped by more than ``max_drop`` points."""
        return not self.drops

    def table(self) -> str:
        """The comparison as a Markdown table with the per-example changes."""
        lines = [
            f"A: {self.run_a}",
            f"B: {self.run_b}",
            "",
            "| figure | A | B | B - A (points) | robust in A, not in B | robust in B, not in A |",
            "|---|---|---|---|---|---|",
        ]

        def row(name, pair, lost="", gained=""):
            a, b = pair
            lines.append(
                f"| {name} | {100 * a:.2f}% | {100 * b:.2f}% | {100 * (b - a):+.2f} "
                f"| {lost} | {gained} |"
            )

        row("clean", self.clean)
        for eps, pair in self.robust.items():
            if eps == 0.0:
                continue  # the clean row
            lost, gained = self.became_vulnerable[eps], self.became_robust[eps]
            row(f"robust @ {eps:g}", pair, _indices(lost), _indices(gained))
        for eps, pair in self.certified.items():
            row(f"certified @ {eps:g}", pair)
        verdict = (
            f"PASS: no figure dropped by more than {self.max_drop:g} points"
            if self.passed
            else "FAIL: " + "; ".join(self.drops)
        )
        return "\n".join(lines + ["", verdict])


def _indices(indices: list[int]) -> str:
    if not indices:
        return "0"
    shown = ", ".join(str(i) for i in indices[:8])
    return f"{len(indices)} ({shown}{', ...' if len(indices) > 8 else ''})"


def compare_runs(
    run_a: LoadedRun,
    run_b: LoadedRun,
    spec: EvalSpec,
    *,
    certify_spec: CertifySpec | None = None,
    max_drop: float = 1.0,
    data_dir: str | None = None,
    progress: bool = False,
) -> Comparison:
    """Evaluates two runs with the same spec (reusing matching stored reports) and compares them.

    Both runs are attacked with the same attack, budgets, examples and PRNG key;
    a report already stored in a run with exactly this spec and the same model
    weights is reused. B fails when its robust or certified accuracy at any
    budget is more than ``max_drop`` percentage points below A's (clean accuracy
    is shown beside them, not gated).

    Args:
      run_a: the reference run (e.g. the deployed model).
      run_b: the candidate run.
      spec: the evaluation both get.
      certify_spec: also compare certified accuracy (``None``: no certification).
      max_drop: the largest allowed drop, in percentage points (``>= 0``).
      data_dir: where the runs' data set is, when it reads files.
      progress: show progress bars.

    Returns:
      A :class:`Comparison` (``passed`` says whether B is within ``max_drop``).

    Raises:
      RunError: the runs were trained on different data sets, or ``max_drop`` is negative.

    Example:
      >>> import tempfile, pathlib, jax
      >>> from advjax import models
      >>> from advjax.runs import EvalSpec, compare_runs, load_run, save_run_model
      >>> model = models.get_model("mlp", hidden=(16,))
      >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = save_run_model(tmp, variables, model_name="mlp",
      ...                        model_kwargs={"hidden": [16]}, input_shape=(28, 28, 1))
      ...     run = load_run(tmp)
      ...     same = compare_runs(run, run, EvalSpec("fgsm", (0.1,), n=20))
      >>> same.passed, same.became_vulnerable[0.1]
      (True, [])
    """
    if not max_drop >= 0:
        raise RunError(f"max_drop must be >= 0 points, got {max_drop}.")
    data_a, data_b = (r.config.get("dataset", {}).get("name") for r in (run_a, run_b))
    if data_a != data_b:
        raise RunError(
            f"run A was trained on {data_a!r} and run B on {data_b!r}: their robust accuracies "
            "are not comparable. Compare runs of the same data set."
        )
    reports = [evaluate_run(r, spec, data_dir=data_dir, progress=progress) for r in (run_a, run_b)]
    masks = [read_masks(r) for r in reports]
    epsilons = [float(e) for e in masks[0]["epsilons"]]
    clean = tuple(float(m["correct"].mean()) for m in masks)
    robust, lost, gained = {}, {}, {}
    for index, eps in enumerate(epsilons):
        a, b = masks[0]["robust"][index], masks[1]["robust"][index]
        robust[eps] = (float(a.mean()), float(b.mean()))
        lost[eps] = np.flatnonzero(a & ~b).tolist()
        gained[eps] = np.flatnonzero(b & ~a).tolist()
    certified = {}
    if certify_spec is not None:
        flags = [
            read_certified(certify_run(r, certify_spec, data_dir=data_dir)) for r in (run_a, run_b)
        ]
        for index, eps in enumerate(certify_spec.epsilons):
            certified[eps] = (float(flags[0][index].mean()), float(flags[1][index].mean()))
    drops = []
    figures = [(f"robust accuracy @ {e:g}", p) for e, p in robust.items() if e > 0]
    figures += [(f"certified accuracy @ {e:g}", p) for e, p in certified.items()]
    for name, (a, b) in figures:
        if 100 * (a - b) > max_drop + 1e-9:
            drops.append(
                f"{name} dropped {100 * (a - b):.2f} points ({100 * a:.2f}% -> {100 * b:.2f}%), "
                f"more than the allowed {max_drop:g}"
            )
    return Comparison(
        str(run_a.directory),
        str(run_b.directory),
        epsilons,
        clean,
        robust,
        certified,
        lost,
        gained,
        float(max_drop),
        drops,
    )


def check_no_regression(
    run_a: LoadedRun,
    run_b: LoadedRun,
    spec: EvalSpec,
    *,
    certify_spec: CertifySpec | None = None,
    max_drop: float = 1.0,
    data_dir: str | None = None,
    progress: bool = False,
) -> Comparison:
    """:func:`compare_runs`, raising :class:`RobustnessRegression` when B drops too far.

    Put it in a project's test suite to gate model updates on robustness.

    Args:
      run_a: the reference run.
      run_b: the candidate run.
      spec: the evaluation both get.
      certify_spec: also compare certified accuracy.
      max_drop: the largest allowed drop, in percentage points.
      data_dir: where the runs' data set is.
      progress: show progress bars.

    Returns:
      The :class:`Comparison` when B passes.

    Raises:
      RobustnessRegression: B is more than ``max_drop`` points below A somewhere;
        the message is the comparison table.
      RunError: as :func:`compare_runs`.

    Example:
      >>> import tempfile, jax
      >>> from advjax import models
      >>> from advjax.runs import EvalSpec, check_no_regression, load_run, save_run_model
      >>> model = models.get_model("mlp", hidden=(16,))
      >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = save_run_model(tmp, variables, model_name="mlp",
      ...                        model_kwargs={"hidden": [16]}, input_shape=(28, 28, 1))
      ...     check_no_regression(load_run(tmp), load_run(tmp), EvalSpec("fgsm", (0.1,), n=20),
      ...                         max_drop=0.0).passed
      True
    """
    comparison = compare_runs(
        run_a,
        run_b,
        spec,
        certify_spec=certify_spec,
        max_drop=max_drop,
        data_dir=data_dir,
        progress=progress,
    )
    if not comparison.passed:
        raise RobustnessRegression(comparison.table())
    return comparison
