"""Certified accuracy of a run beside an attack's upper bound, stored in ``certify/<name>/``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from advjax import certify
from advjax._integrity import json_digest
from advjax.runs._evaluate import checked_budgets, evaluation_examples, read_per_example
from advjax.runs._format import LoadedRun, RunError
from advjax.runs._reports import render_certify, write_index
from advjax.runs._store import new_report, report_directory, stored_report, write_report

CERTIFY_DIR = "certify"
MASKS = "per_example.npz"

CERTIFY_METHODS: dict[str, str] = {
    "ibp": "interval bound propagation, Linf (Gowal et al. 2018, arXiv:1810.12715)",
    "crown-ibp": "IBP forward, CROWN backward bounds, Linf (Zhang et al. 2020, arXiv:1906.06316)",
    "crown": "CROWN linear relaxation, Linf (Zhang et al. 2018, arXiv:1811.00866)",
    "smoothing": "randomized smoothing, L2 radius with confidence 1 - alpha "
    "(Cohen et al. 2019, arXiv:1902.02918)",
}
"""The methods of :func:`certify_run` (``advjax certify --method``), each described."""


SMOOTHING_ONLY = ("sigma", "samples", "alpha")


@dataclasses.dataclass(frozen=True)
class CertifySpec:
    """What a certification measures.

    Attributes:
      method: a key of :data:`CERTIFY_METHODS`.
      epsilons: Linf budgets for the bound methods, L2 radii for smoothing.
      n: the first ``n`` test examples of the run's data set.
      seed: the PRNG seed of the PGD upper bound (and of smoothing's noise).
      pgd_steps: PGD steps of the upper bound (step ``2.5 * eps / steps``).
      pgd_restarts: PGD restarts of the upper bound.
      pgd_examples: attack only the first this many of the ``n`` examples (``None``:
        all); the per-example consistency check covers those.
      sigma: smoothing's noise level (standard deviation, input units).
      samples: smoothing's Monte Carlo samples per example (``n`` of Cohen et al.;
        the class is selected from ``n0 = 100`` further samples, their default).
      alpha: smoothing's failure probability.

    Example:
      >>> from advjax.runs import CertifySpec
      >>> CertifySpec("ibp", (0.1,), n=50).name()
      'ibp-eps0.1-n50'
    """

    method: str = "ibp"
    epsilons: tuple[float, ...] = (0.1,)
    n: int = 1000
    seed: int = 0
    pgd_steps: int = 100
    pgd_restarts: int = 10
    pgd_examples: int | None = None
    sigma: float = 0.25
    samples: int = 1000
    alpha: float = 0.001

    def __post_init__(self):
        if self.method not in CERTIFY_METHODS:
            raise RunError(f"unknown method {self.method!r}; known: {sorted(CERTIFY_METHODS)}.")
        smoothing = self.method == "smoothing"
        object.__setattr__(self, "epsilons", checked_budgets(self.epsilons, zero=smoothing))
        for name in ("n", "pgd_steps", "pgd_restarts", "samples", "pgd_examples"):
            value = getattr(self, name)
            if name == "pgd_examples" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                flag = {"samples": "--samples (smoothing's Monte Carlo samples)"}.get(name, name)
                raise RunError(f"{flag} must be a whole number >= 1, got {value!r}.")
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise RunError(f"sigma (smoothing's noise) must be finite and > 0, got {self.sigma}.")
        if not 0 < self.alpha < 1:
            raise RunError(
                f"alpha (smoothing's failure probability) must be in (0, 1), got {self.alpha}."
            )

    def name(self) -> str:
        """The report's folder name."""
        default = CertifySpec(self.method, self.epsilons, self.n)
        suffix = "" if self == default else "-" + json_digest(self.to_dict())[:8]
        budgets = "_".join(f"{e:g}" for e in self.epsilons)
        return f"{self.method}-eps{budgets}-n{self.n}{suffix}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (only those the method uses)."""
        unused = (
            ("pgd_steps", "pgd_restarts", "pgd_examples")
            if self.method == "smoothing"
            else SMOOTHING_ONLY
        )
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in unused}
        return {**fields, "epsilons": list(self.epsilons)}


def _bound_report(run, x, y, spec, progress=False) -> tuple[dict, dict]:
    report = certify.certified_report(
        run.logits_fn,
        x,
        y,
        list(spec.epsilons),
        methods=(spec.method,),
        key=jax.random.key(spec.seed),
        pgd_steps=spec.pgd_steps,
        pgd_restarts=spec.pgd_restarts,
        pgd_examples=spec.pgd_examples,
        return_masks=True,
        progress=progress,
    )
    masks = report.pop("masks")
    flags = {
        "correct": masks["correct"],
        "certified": masks["certified"][spec.method],
        "attack_robust": masks["pgd_robust"],
    }
    summary = {
        "norm": "linf",
        "epsilons": list(spec.epsilons),
        "clean_accuracy": report["clean_acc"],
        "certified_accuracy": report["certified"][spec.method],
        "attack_accuracy": report["pgd"]["acc"],
        "attack": f"pgd-{spec.pgd_steps}x{spec.pgd_restarts}",
        "attacked_examples": report["pgd"]["n"],
        "certified_on_attacked": report["pgd"]["certified"][spec.method],
        "violations": report["violations"],
        "consistent": report["consistent"],
    }
    return summary, flags


def _smoothing_report(run, x, y, spec, progress=False) -> tuple[dict, dict]:
    from tqdm import tqdm

    key = jax.random.key(spec.seed)
    predictions, radii = [], []
    for index in tqdm(range(len(y)), desc="smoothing", disable=not progress, leave=False):
        label, radius = certify.smooth_certify(
            run.logits_fn,
            x[index],
            sigma=spec.sigma,
            n0=100,
            n=spec.samples,
            alpha=spec.alpha,
            key=jax.random.fold_in(key, index),
        )
        predictions.append(label)
        radii.append(radius)
    predictions, radii = np.asarray(predictions), np.asarray(radii)
    correct = predictions == y
    certified = np.stack([correct & (radii >= r) for r in spec.epsilons])
    summary = {
        "norm": "l2",
        "epsilons": list(spec.epsilons),
        "clean_accuracy": float(correct.mean()),
        "certified_accuracy": [float(c.mean()) for c in certified],
        "attack_accuracy": None,
        "attack": None,
        "violations": None,
        "consistent": None,
        "sigma": spec.sigma,
        "abstained": float((predictions < 0).mean()),
    }
    return summary, {"correct": correct, "certified": certified, "radii": radii}


def certify_run(
    run: LoadedRun,
    spec: CertifySpec,
    *,
    data_dir: str | None = None,
    progress: bool = False,
    reuse: bool = True,
) -> dict:
    """Certified accuracy of ``run`` (with an attack's upper bound), stored in the run.

    The report goes to ``<run>/certify/<spec.name()>/``: ``report.json`` and
    ``per_example.npz`` (per example: correct, certified per budget, and robust to
    PGD per budget for the bound methods). For the bound methods every example
    certified must survive PGD; ``violations`` counts those that do not (a
    soundness bug if ever positive) and ``consistent`` is the verdict.
    Smoothing certifies the *smoothed* classifier's L2 radius with probability
    ``1 - alpha``; it has no attack column. A stored report with the same spec
    and model digest is reused.

    Args:
      run: a loaded run.
      spec: what to certify.
      data_dir: where the run's data set is, when it reads files.
      progress: show progress bars.
      reuse: return a stored report with the same spec and weights instead of
        certifying again (``False``: certify, and replace it).

    Returns:
      The report as a dict (what ``report.json`` holds), with ``"directory"``.

    Raises:
      RunError: the run has no directory.

    Example:
      >>> import tempfile, jax
      >>> from advjax import models
      >>> from advjax.runs import CertifySpec, certify_run, load_run, save_run_model
      >>> model = models.get_model("mlp", hidden=(16,))
      >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = save_run_model(tmp, variables, model_name="mlp",
      ...                        model_kwargs={"hidden": [16]}, input_shape=(28, 28, 1))
      ...     spec = CertifySpec("ibp", (0.01,), n=20, pgd_steps=5, pgd_restarts=1)
      ...     report = certify_run(load_run(tmp), spec)
      >>> report["summary"]["consistent"]
      True
    """
    x, y = evaluation_examples(run, spec.n, data_dir)
    spec = dataclasses.replace(spec, n=len(y))  # the examples there are
    directory = report_directory(run, CERTIFY_DIR, spec.name())
    stored = stored_report(directory, spec.to_dict(), run, needs=(MASKS,)) if reuse else None
    if stored is not None:
        return stored
    started = time.perf_counter()
    if spec.method == "smoothing":
        summary, flags = _smoothing_report(run, x, y, spec, progress)
    else:
        summary, flags = _bound_report(run, x, y, spec, progress)
    record = new_report("certify", spec.to_dict(), run, len(y), started, summary=summary)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / MASKS, **{k: v for k, v in flags.items() if v is not None})
    written = write_report(directory, record)
    render_certify(record, directory)
    write_index(run.directory)
    return written


def read_certified(report: dict) -> np.ndarray:
    """Per budget and example, ``[E, N]`` bool: certified (see :func:`certify_run`).

    Raises:
      RunError: the stored file is missing or unreadable.

    Example:
      >>> from advjax.runs import read_certified
      >>> read_certified({"directory": "/nonexistent"})
      Traceback (most recent call last):
        ...
      advjax.runs._format.RunError: cannot read the per-example results ...
    """
    return read_per_example(Path(report["directory"]) / MASKS, ("certified",))["certified"]
