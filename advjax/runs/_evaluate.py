"""Robust accuracy of a run, measured by a named attack and stored in the run (``eval/<name>/``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from advjax import attacks, data, evaluation
from advjax._integrity import json_digest
from advjax.runs._format import LoadedRun, RunError
from advjax.runs._reports import render_eval, write_index
from advjax.runs._store import new_report, report_directory, stored_report, write_report

EVAL_DIR = "eval"
MASKS = "per_example.npz"
GRID_EXAMPLES = 8
"""Examples shown as clean / adversarial / perturbation images in ``examples.png``."""


PGD_STEPS = 50
"""PGD's default iterations in an evaluation (``--steps``)."""


def _given(value, default):
    return default if value is None else value


def checked_budgets(epsilons, *, zero: bool) -> tuple[float, ...]:
    """Budgets as a sorted tuple of floats, one number or a sequence; ``zero`` adds budget 0.

    Raises:
      RunError: a budget is negative, not finite or not a number, or none is positive.

    Example:
      >>> from advjax.runs import checked_budgets
      >>> checked_budgets(0.3, zero=True), checked_budgets([0.3, 0.1], zero=False)
      ((0.0, 0.3), (0.1, 0.3))
    """
    values = np.atleast_1d(np.asarray(epsilons, dtype=object))
    try:
        budgets = {float(e) for e in values}
    except (TypeError, ValueError) as error:
        raise RunError(f"budgets must be numbers, got {epsilons!r}.") from error
    if any(not np.isfinite(e) or e < 0 for e in budgets):
        raise RunError(f"budgets must be finite and >= 0, got {list(values)}.")
    if not any(e > 0 for e in budgets):
        raise RunError("give at least one budget > 0 (budget 0, clean accuracy, is always added).")
    return tuple(sorted(budgets | ({0.0} if zero else set())))


def _pgd(spec, eps, loss="ce"):
    steps = _given(spec.steps, PGD_STEPS)
    return attacks.pgd(
        eps,
        steps=steps,
        step_size=_given(spec.step_size, 2.5 * eps / steps),
        restarts=_given(spec.restarts, 10),
        norm=spec.norm,
        loss=loss,
    )


def _apgd(loss):
    def build(spec, eps):
        return attacks.apgd(
            eps,
            norm=spec.norm,
            loss=loss,
            steps=_given(spec.steps, 100),
            restarts=_given(spec.restarts, 1),
        )

    return build


@dataclasses.dataclass(frozen=True)
class EvalAttack:
    """An attack the command line can name.

    Attributes:
      description: one line for ``advjax list``.
      build: ``(spec, eps) -> attack`` for :func:`advjax.evaluation.evaluate`, or
        ``None`` for AutoAttack (an ensemble run per budget).
      black_box: whether it uses only the model's outputs (for the masking checks).

    Example:
      >>> from advjax.runs import EVAL_ATTACKS, EvalSpec
      >>> attack = EVAL_ATTACKS["pgd"].build(EvalSpec("pgd", (0.3,)), 0.3)
      >>> EVAL_ATTACKS["square"].black_box, EVAL_ATTACKS["autoattack"].build is None
      (True, True)
    """

    description: str
    build: Callable[[EvalSpec, float], Any] | None
    black_box: bool = False


EVAL_ATTACKS: dict[str, EvalAttack] = {
    "autoattack": EvalAttack(
        "AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020, "
        "arXiv:2003.01690)",
        None,
    ),
    "pgd": EvalAttack(
        "PGD with CE loss (Madry et al. 2018, arXiv:1706.06083); default 50 steps x 10 "
        "restarts, step 2.5 eps / steps",
        _pgd,
    ),
    "pgd-cw": EvalAttack(
        "PGD on the CW margin loss (Carlini & Wagner 2017); same defaults as pgd",
        lambda spec, eps: _pgd(spec, eps, loss="cw"),
    ),
    "fgsm": EvalAttack(
        "FGSM, one signed gradient step (Goodfellow et al. 2015, arXiv:1412.6572)",
        lambda spec, eps: attacks.fgsm(eps, norm=spec.norm),
    ),
    "apgd-ce": EvalAttack("APGD with CE loss, default 100 iterations", _apgd("ce")),
    "apgd-dlr": EvalAttack("APGD with the DLR loss, default 100 iterations", _apgd("dlr")),
    "square": EvalAttack(
        "Square attack, black-box (Andriushchenko et al. 2020, arXiv:1912.00049); "
        "default 5,000 queries (--steps)",
        lambda spec, eps: attacks.square(eps, norm=spec.norm, queries=_given(spec.steps, 5000)),
        black_box=True,
    ),
    "fab": EvalAttack(
        "FAB-T, minimal-norm targeted attack (Croce & Hein 2020, arXiv:1907.02044)",
        lambda spec, eps: attacks.fab(eps, norm=spec.norm, steps=_given(spec.steps, 100)),
    ),
}
"""The attacks of :func:`evaluate_run` (``advjax eval --attack``), by name."""


def _autoattack_ensemble(spec, eps):
    return evaluation.standard_attacks(eps, norm=spec.norm)


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What an evaluation measures: the attack, the budgets, the examples, the key.

    Two evaluations with equal specs on the same model give identical results,
    so a stored report with the same spec and model digest is reused.

    Attributes:
      attack: a key of :data:`EVAL_ATTACKS`.
      epsilons: the budgets (a robustness curve always adds ``0``, the clean accuracy).
      norm: the threat model: ``"linf"``, ``"l2"`` or ``"l1"``.
      n: the first ``n`` test examples of the run's data set.
      seed: the attack's PRNG seed.
      steps: iterations (queries for Square); ``None``: the attack's default.
      restarts: random restarts; ``None``: the attack's default.
      step_size: PGD's step; ``None``: ``2.5 * eps / steps``.

    Example:
      >>> from advjax.runs import EvalSpec
      >>> spec = EvalSpec("pgd", (0.1, 0.3), n=100)
      >>> spec.name()
      'pgd-linf-eps0.1_0.3-n100'
      >>> EvalSpec("nope", (0.1,))
      Traceback (most recent call last):
        ...
      advjax.runs._format.RunError: unknown attack 'nope'; known: ['apgd-ce', ...
    """

    attack: str = "pgd"
    epsilons: tuple[float, ...] = (0.3,)
    norm: str = "linf"
    n: int = 1000
    seed: int = 0
    steps: int | None = None
    restarts: int | None = None
    step_size: float | None = None

    def __post_init__(self):
        if self.attack not in EVAL_ATTACKS:
            raise RunError(f"unknown attack {self.attack!r}; known: {sorted(EVAL_ATTACKS)}.")
        object.__setattr__(self, "epsilons", checked_budgets(self.epsilons, zero=True))
        for name in ("n", "steps", "restarts"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RunError(f"{name} must be a whole number >= 1, got {value!r}.")
        if self.step_size is not None and not (np.isfinite(self.step_size) and self.step_size > 0):
            raise RunError(f"step_size must be finite and > 0, got {self.step_size!r}.")
        if self.norm not in attacks.THREAT_MODELS:
            raise RunError(f"unknown norm {self.norm!r}; known: {sorted(attacks.THREAT_MODELS)}.")
        try:  # attacks refuse, when built, threat models they have no update for
            (EVAL_ATTACKS[self.attack].build or _autoattack_ensemble)(self, self.epsilons[-1])
        except ValueError as error:
            raise RunError(f"{self.attack} with --norm {self.norm}: {error}") from error
        if self.step_size is not None and self.attack in ("pgd", "pgd-cw"):
            steps = _given(self.steps, PGD_STEPS)
            reach = self.step_size * steps
            if reach < self.epsilons[-1]:
                raise RunError(
                    f"PGD with {steps} steps of {self.step_size:g} moves at "
                    f"most {reach:g}, less than the budget {self.epsilons[-1]:g}: the attack "
                    "would understate what it can break. Raise the steps or the step size, or "
                    "leave the step size to its default 2.5 eps / steps."
                )

    def name(self) -> str:
        """The report's folder name: attack, norm, budgets, examples, and a digest of the rest."""
        default = EvalSpec(self.attack, self.epsilons, self.norm, self.n)
        suffix = "" if self == default else "-" + json_digest(self.to_dict())[:8]
        budgets = "_".join(f"{e:g}" for e in self.epsilons[1:])
        return f"{self.attack}-{self.norm}-eps{budgets}-n{self.n}{suffix}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {**dataclasses.asdict(self), "epsilons": list(self.epsilons)}


def evaluation_examples(run: LoadedRun, n: int, data_dir: str | None = None):
    """The first ``n`` test examples of the run's data set: ``(x [n, ...], y [n])``.

    Example:
      >>> from advjax.runs import LoadedRun, evaluation_examples
      >>> run = LoadedRun(None, {}, None, {"dataset": {"name": "mnist-embedded"}})
      >>> x, y = evaluation_examples(run, 5)
      >>> x.shape, x.dtype, y[:3].tolist()
      ((5, 28, 28, 1), dtype('float32'), [7, 2, 1])
    """
    dataset = run.config.get("dataset", {"name": "mnist-embedded"})
    test_set = data.load_named(dataset["name"], "test", data_dir or dataset.get("data_dir"))
    n = min(n, len(test_set))
    x = np.asarray(data.to_device(test_set.images[:n]), np.float32)
    return x, np.asarray(test_set.labels[:n], np.int32)


def _autoattack_report(run, x, y, spec, key, progress=False):
    threat = attacks.get_threat_model(spec.norm)
    broken = np.zeros((len(spec.epsilons), len(y)), bool)
    norms = np.zeros_like(broken, np.float32)
    warnings, started = [], time.perf_counter()
    for index, eps in enumerate(spec.epsilons[1:], start=1):  # budget 0: clean accuracy
        result = evaluation.autoattack(
            run.logits_fn,
            x,
            y,
            eps=eps,
            key=jax.random.fold_in(key, index),
            norm=spec.norm,
            diagnostics=index == len(spec.epsilons) - 1,
            progress=progress,
        )
        correct = result.correct
        broken[index] = correct & ~result.robust
        norms[index] = np.asarray(threat.norm(result.x_adv - x))
        warnings.extend(result.warnings)
    seconds = time.perf_counter() - started
    summary = evaluation.summarise_attack("autoattack", correct, broken, norms, seconds)
    worst = dataclasses.replace(summary, name="worst_case")
    robust = correct[None] & ~np.logical_or.accumulate(broken, axis=0)
    report = evaluation.RobustnessReport(
        spec.norm,
        list(spec.epsilons),
        len(y),
        float(correct.mean()),
        [summary],
        worst,
        warnings=sorted(set(warnings)),
        robust_examples=robust,
    )
    return report, result.x_adv[:GRID_EXAMPLES]


def evaluate_run(
    run: LoadedRun,
    spec: EvalSpec,
    *,
    data_dir: str | None = None,
    progress: bool = False,
    reuse: bool = True,
) -> dict[str, Any]:
    """Measures ``run``'s robust accuracy as ``spec`` says, and stores the report in the run.

    The report goes to ``<run>/eval/<spec.name()>/``: ``report.json`` (the spec,
    the digest of the model measured, the :class:`advjax.evaluation.RobustnessReport`
    and the environment) and ``per_example.npz`` (per example: correct, and robust
    at each budget). A stored report with the same spec and model digest is
    returned as it is, without attacking again.

    Args:
      run: a loaded run (:func:`advjax.runs.load_run`).
      spec: what to measure.
      data_dir: where the run's data set is, when it reads files.
      progress: show progress bars.
      reuse: return a stored report with the same spec and weights instead of
        measuring again (``False``: measure, and replace it).

    Returns:
      The report as a dict (what ``report.json`` holds), with ``"directory"``
      and ``"reused"``.

    Raises:
      RunError: the run has no directory to store the report in.

    Example:
      >>> import tempfile, jax
      >>> from advjax import models
      >>> from advjax.runs import EvalSpec, evaluate_run, load_run, save_run_model
      >>> model = models.get_model("mlp", hidden=(16,))
      >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = save_run_model(tmp, variables, model_name="mlp",
      ...                        model_kwargs={"hidden": [16]}, input_shape=(28, 28, 1))
      ...     report = evaluate_run(load_run(tmp), EvalSpec("fgsm", (0.1,), n=20))
      ...     again = evaluate_run(load_run(tmp), EvalSpec("fgsm", (0.1,), n=20))
      >>> report["report"]["epsilons"], again["reused"]
      ([0.0, 0.1], True)
    """
    x, y = evaluation_examples(run, spec.n, data_dir)
    spec = dataclasses.replace(spec, n=len(y))  # the examples there are, not those asked for
    directory = report_directory(run, EVAL_DIR, spec.name())
    stored = stored_report(directory, spec.to_dict(), run, needs=(MASKS,)) if reuse else None
    if stored is not None:
        return stored
    key = jax.random.key(spec.seed)
    started = time.perf_counter()
    entry = EVAL_ATTACKS[spec.attack]
    if entry.build is None:
        report, grid_adv = _autoattack_report(run, x, y, spec, key, progress)
    else:
        report = evaluation.evaluate(
            run.logits_fn,
            x,
            y,
            {spec.attack: lambda eps: entry.build(spec, eps)},
            list(spec.epsilons),
            key=key,
            norm=spec.norm,
            black_box=(spec.attack,) if entry.black_box else (),
            progress=progress,
        )
        attack = entry.build(spec, spec.epsilons[-1])
        grid_adv = attack(
            run.logits_fn, x[:GRID_EXAMPLES], y[:GRID_EXAMPLES], key=jax.random.fold_in(key, 99)
        )
    record = new_report("eval", spec.to_dict(), run, len(y), started, report=report.to_dict())
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(
        directory / MASKS,
        correct=report.robust_examples[0],
        robust=report.robust_examples,
        epsilons=np.asarray(spec.epsilons),
    )
    np.savez(directory / "grid.npz", clean=x[:GRID_EXAMPLES], adversarial=np.asarray(grid_adv))
    written = write_report(directory, record)
    render_eval(record, directory)
    write_index(run.directory)
    return written


def read_masks(report: dict) -> dict[str, np.ndarray]:
    """The per-example flags stored beside a report: ``correct [N]``, ``robust [E, N]``.

    Args:
      report: a dict returned by :func:`evaluate_run` (it holds ``"directory"``).

    Returns:
      ``{"correct", "robust", "epsilons"}`` as numpy arrays.

    Raises:
      RunError: the file is missing or unreadable.

    Example:
      >>> from advjax.runs import read_masks
      >>> read_masks({"directory": "/nonexistent"})
      Traceback (most recent call last):
        ...
      advjax.runs._format.RunError: cannot read the per-example results ...
    """
    return read_per_example(Path(report["directory"]) / MASKS, ("correct", "robust", "epsilons"))


def read_per_example(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``keys`` of a stored ``.npz`` of per-example results, read without pickle.

    Raises:
      RunError: the file is missing or unreadable, or lacks a key.
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in keys}
    except (OSError, KeyError, ValueError) as error:
        raise RunError(f"cannot read the per-example results {path}: {error}") from error
