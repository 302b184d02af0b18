"""Robust accuracy of a classifier under attacks over a sweep of budgets."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import as_int_labels, check_batch, check_epsilon, check_positive_int
from advjax._compile import per_model
from advjax.attacks import (
    REJECTION_REASONS,
    Attack,
    Constraints,
    LogitsFn,
    get_threat_model,
    is_successful,
    per_example_keys,
    predicted_class,
    verify,
)
from advjax.data import map_batches
from advjax.evaluation._compaction import row_keys
from advjax.evaluation._diagnostics import (
    curve_checks,
    gradient_masking_checks,
    input_validity_findings,
)
from advjax.parallel import default_batch_sharding

AttackFactory = Callable[[jax.Array], Attack]


@dataclasses.dataclass
class AttackResult:
    """One attack's results over the budget sweep.

    Attributes:
      name: the attack's name in the report.
      robust_accuracy: per budget, the share of examples classified correctly
        and not broken at this or any smaller budget.
      success_rate: per budget, the share of initially correct examples broken.
      mean_norm: per budget, the mean perturbation norm of the broken examples
        (each at the smallest budget that broke it); ``nan`` if none.
      median_norm: likewise, the median.
      seconds: wall time of the attack over all budgets and batches, compile
        included.
      rejected: per reason (``non_finite``, ``outside_ball``, ``outside_box``),
        per budget, how many returned points failed that check and so were not
        counted as adversarial examples, however they were classified.

    Every list has one entry per budget of the report's ``epsilons``; shares are
    fractions in ``[0, 1]`` and norms are in the report's ``norm``, in input
    units.

    Example:
      >>> from advjax.evaluation import AttackResult
      >>> nan = float("nan")   # no broken example at eps=0: no norm
      >>> pgd = AttackResult("pgd", robust_accuracy=[0.9, 0.5], success_rate=[0.0, 0.44],
      ...                    mean_norm=[nan, 0.1], median_norm=[nan, 0.1], seconds=1.0)
      >>> pgd.robust_accuracy[-1], pgd.rejected
      (0.5, {})
    """

    name: str
    robust_accuracy: list[float]
    success_rate: list[float]
    mean_norm: list[float]
    median_norm: list[float]
    seconds: float
    rejected: dict[str, list[int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RobustnessReport:
    """Clean and robust accuracy per attack and budget; see :func:`evaluate`.

    ``worst_case`` counts an example as broken if any attack broke it, so it is
    never above any single attack's figure. ``warnings`` lists gradient-masking
    signs found by :func:`advjax.evaluation.gradient_masking_checks` and
    :func:`advjax.evaluation.curve_checks`; ``diagnostics`` holds their figures.

    Attributes:
      norm: the threat model's name (``"linf"``, ``"l2"``, ...), in which the
        budgets and perturbation norms are measured.
      epsilons: the budgets ``[E]``, strictly increasing, in input units.
      num_examples: the number of examples ``N`` evaluated.
      clean_accuracy: share of examples classified correctly, in ``[0, 1]``.
      attacks: one :class:`AttackResult` per attack, in the order run.
      worst_case: the per-example worst case over all attacks, as an
        :class:`AttackResult` named ``"worst_case"``.
      meta: free-form facts about the run (model, data, seeds), for the report.
      diagnostics: the figures of the gradient-masking and validity checks.
      warnings: human-readable warnings from those checks.

    Example:
      >>> from advjax.evaluation import AttackResult, RobustnessReport
      >>> pgd = AttackResult("pgd", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.5], [0.0, 0.4], [0.0, 0.1], [0.0, 0.1], 1.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1], 10, 0.9, [pgd], worst)
      >>> report.robust_accuracy("pgd", 0.1), report.robust_accuracy("worst_case", 0.0)
      (0.5, 0.9)
      >>> report.to_dict()["worst_case"]["robust_accuracy"]
      [0.9, 0.5]
      >>> report.robust_accuracy("fgsm", 0.1)
      Traceback (most recent call last):
        ...
      KeyError: "no attack 'fgsm' in this report; it has ['pgd', 'worst_case']."
    """

    norm: str
    epsilons: list[float]
    num_examples: int
    clean_accuracy: float
    attacks: list[AttackResult]
    worst_case: AttackResult
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    diagnostics: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    robust_examples: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    """Per budget and example, ``[E, N]`` bool: correct and broken by no attack
    at this or a smaller budget (the worst case); not part of :meth:`to_dict`."""

    def robust_accuracy(self, attack: str, eps: float) -> float:
        """The robust accuracy of ``attack`` (or ``"worst_case"``) at budget ``eps``.

        Args:
          attack: an attack's name in :attr:`attacks`, or ``"worst_case"``.
          eps: one of :attr:`epsilons` (matched with a relative tolerance of 1e-6).

        Returns:
          The share of examples still robust, in ``[0, 1]``.

        Raises:
          KeyError: ``eps`` is not a budget of the report, or ``attack`` is not in it.
        """
        matches = [i for i, e in enumerate(self.epsilons) if math.isclose(e, eps, rel_tol=1e-6)]
        if not matches:
            raise KeyError(f"eps {eps} is not in this report's budgets {self.epsilons}.")
        index = matches[0]
        if attack == "worst_case":
            return self.worst_case.robust_accuracy[index]
        for result in self.attacks:
            if result.name == attack:
                return result.robust_accuracy[index]
        names = [r.name for r in self.attacks] + ["worst_case"]
        raise KeyError(f"no attack {attack!r} in this report; it has {names}.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``nan`` becomes ``None``)."""

        def clean(value):
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.pop("robust_examples")
        fields["attacks"] = [dataclasses.asdict(a) for a in self.attacks]
        fields["worst_case"] = dataclasses.asdict(self.worst_case)
        return clean(fields)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RobustnessReport:
        """The report back from :meth:`to_dict`'s output (``None`` norms become ``nan``).

        Args:
          values: a dict written by :meth:`to_dict` (for example read from JSON).

        Returns:
          The :class:`RobustnessReport`, without ``robust_examples``.

        Raises:
          KeyError, TypeError: ``values`` lacks a field or has one of the wrong kind.
        """

        def attack(entry):
            entry = dict(entry)
            for name in ("mean_norm", "median_norm"):
                entry[name] = [float("nan") if v is None else v for v in entry[name]]
            return AttackResult(**entry)

        values = dict(values)
        values["attacks"] = [attack(a) for a in values["attacks"]]
        values["worst_case"] = attack(values["worst_case"])
        return cls(**values)


def _validated_epsilons(epsilons: Sequence[float]) -> np.ndarray:
    values = np.asarray(epsilons, dtype=np.float32)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"epsilons must be a non-empty 1-D sequence, got {epsilons!r}.")
    check_epsilon(values, "epsilons")
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"epsilons must be strictly increasing, got {list(epsilons)}.")
    return values


def summarise_attack(name, correct, broken, norms, seconds, rejected=None) -> AttackResult:
    """Turns per-budget ``broken[E, N]`` and ``norms[E, N]`` into an :class:`AttackResult`.

    An example broken at some budget counts as broken at every larger one, with
    the perturbation found at the smallest breaking budget.

    Args:
      name: the attack's name in the report.
      correct: ``[N]`` bool, classified correctly without attack.
      broken: ``[E, N]`` bool, a valid adversarial example found at budget ``e``.
      norms: ``[E, N]`` perturbation norms of those examples (ignored where not broken).
      seconds: the attack's wall time.
      rejected: optional per-reason counts of rejected points per budget.

    Returns:
      The :class:`AttackResult`.

    Example:
      >>> import numpy as np
      >>> from advjax.evaluation import summarise_attack
      >>> correct = np.array([True, True, False])
      >>> broken = np.array([[False, False, True], [True, False, True]])
      >>> norms = np.full((2, 3), 0.2)
      >>> summarise_attack("pgd", correct, broken, norms, 1.0).robust_accuracy
      [0.6666666666666666, 0.3333333333333333]
    """
    broken_by = np.logical_or.accumulate(broken & correct[None], axis=0)
    first_break = np.argmax(broken, axis=0)
    norm_at_first = norms[first_break, np.arange(norms.shape[1])]
    robust, success, mean_norm, median_norm = [], [], [], []
    for e in range(broken.shape[0]):
        robust.append(float(np.mean(correct & ~broken_by[e])))
        success.append(float(broken_by[e].sum() / max(correct.sum(), 1)))
        found = norm_at_first[broken_by[e]]
        mean_norm.append(float(found.mean()) if found.size else float("nan"))
        median_norm.append(float(np.median(found)) if found.size else float("nan"))
    return AttackResult(name, robust, success, mean_norm, median_norm, seconds, rejected or {})


@per_model
def predictor(logits_fn):
    """The jitted ``x -> predicted class`` of a model, compiled once per model and shape."""
    return jax.jit(lambda xb: predicted_class(logits_fn(xb)))


@per_model
def _budget_program(logits_fn, factory, threat, clip_min, clip_max):
    """A jitted ``(x, y, key_data, eps) -> (broken[B], norms[B], rejected{reason: [B]})``.

    The attack ``factory(eps)`` runs on each example with its own key
    (:func:`advjax.attacks.per_example_keys`), so an example's outcome does not depend on the other
    examples of its batch: dropping broken examples changes nothing for the
    rest. A point counts as broken only when its logits are finite and
    misclassify it and it passes :func:`advjax.attacks.verify` for ``eps``
    (a traced scalar: one compilation serves every budget).
    """

    @jax.jit
    def run(x, y, key_data, eps):
        attack = per_example_keys(factory(eps))
        x_adv = attack(logits_fn, x, y, key=jax.random.wrap_key_data(key_data))
        checks = verify(x, x_adv, Constraints(threat, eps, clip_min, clip_max))
        fooled = is_successful(logits_fn(x_adv), y, False) & checks["valid"]
        norms = threat.norm(x_adv.astype(jnp.float32) - x.astype(jnp.float32))
        return fooled, norms, {r: checks[r] for r in REJECTION_REASONS}

    return run


def restart_plan(factory: AttackFactory, budget: float) -> tuple[int, AttackFactory]:
    """``(R, single_factory)``: how to run ``factory``'s restarts one by one, if it has any.

    An attack built with :func:`advjax.attacks.with_restarts` (``pgd(...,
    restarts=R)``, ``apgd(..., restarts=R)``) breaks a point when some restart
    does; run one restart at a time on the points still unbroken, with the keys
    ``with_restarts`` would use, it breaks exactly the same points. Targeted
    restarts (which rank successes by the target) are not split.

    Args:
      factory: ``eps -> attack``.
      budget: a budget to build the attack with (on the host, to read it).

    Returns:
      ``(1, factory)`` when the attack has no restarts to split.

    Example:
      >>> import advjax
      >>> from advjax.evaluation._robustness import restart_plan
      >>> restarts, single = restart_plan(lambda e: advjax.pgd(e, steps=3, restarts=4), 0.1)
      >>> restarts, getattr(single(0.1), "restarts", 1)
      (4, 1)
    """
    attack = factory(budget)
    restarts, single = getattr(attack, "restarts", 1), getattr(attack, "single", None)
    if restarts > 1 and single is not None and not getattr(attack, "restart_targeted", True):
        return restarts, lambda eps: factory(eps).single
    return 1, factory


def _fold_key_data(key_data: np.ndarray, index: int) -> np.ndarray:
    keys = jax.random.wrap_key_data(jnp.asarray(key_data))
    folded = jax.vmap(lambda k: jax.random.fold_in(k, index))(keys)
    return np.asarray(jax.random.key_data(folded))


def _attack_budgets(runs, x, y, correct, budgets, key, *, early_exit, over_rows, progress):
    """Runs one attack at every budget: ``(broken[N, E], norms[N, E], rejected{[N, E]})``.

    Budget ``j`` attacks the correctly classified rows (with ``early_exit``:
    only those no smaller budget broke), row ``n`` with ``fold_in(fold_in(key,
    j), n)``. ``runs`` holds one program, or (with ``early_exit`` and an attack
    with restarts) one per restart: restart ``r`` then runs on the rows no
    earlier restart broke, with the key ``with_restarts`` gives restart ``r``.
    """
    broken = np.zeros((len(x), len(budgets)), bool)
    norms = np.zeros(broken.shape, np.float32)
    rejected = {reason: np.zeros(broken.shape, bool) for reason in REJECTION_REASONS}
    for j, eps in enumerate(budgets):
        todo = correct & ~broken[:, :j].any(1) if early_exit else correct
        budget_key = jax.random.fold_in(key, j)
        for restart, run in enumerate(runs):
            rows = np.flatnonzero(todo & ~broken[:, j])
            if not rows.size:
                break
            keys = row_keys(budget_key, rows)
            if restart:
                keys = _fold_key_data(keys, restart)
            found, sizes, refused = map_batches(
                lambda xb, yb, kb, eps=eps, run=run: run(xb, yb, kb, jnp.float32(eps)),
                [x[rows], y[rows], keys],
                progress=f"{progress} eps={eps:g}" if progress else False,
                **over_rows,
            )
            broken[rows, j], norms[rows, j] = found, sizes
            for reason, mask in refused.items():
                rejected[reason][rows, j] |= mask
    return broken, norms, rejected


def evaluate(
    logits_fn: LogitsFn,
    x,
    y,
    attacks: Mapping[str, AttackFactory],
    epsilons: Sequence[float],
    *,
    key: jax.Array,
    norm: str = "linf",
    batch_size: int = 500,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    diagnostics: bool = True,
    black_box: Sequence[str] = (),
    sharding: jax.sharding.Sharding | None = None,
    progress: bool = False,
    early_exit: bool = True,
) -> RobustnessReport:
    """Measures clean accuracy and robust accuracy per attack and budget.

    Each attack factory ``eps -> attack`` runs budget by budget, smallest
    first, in one compiled program for all budgets (``eps`` is traced), on the
    correctly classified examples only; with ``early_exit`` an example broken
    at a smaller budget is not attacked at larger ones (it already counts as
    broken there), and the examples left are packed into bucketed batches.
    Every example is attacked with its own key, ``fold_in(fold_in(fold_in(key,
    i), j), n)`` for attack ``i``, budget ``j`` and example ``n``, so the
    report's robust accuracies are the same with and without ``early_exit``,
    for any ``batch_size`` and device count. With ``early_exit`` the restarts
    of an attack built with :func:`advjax.attacks.with_restarts` run one at a
    time, each on the examples no earlier restart broke (see
    :func:`restart_plan`; a broken example's perturbation is then the first
    restart's that broke it, so its norm may differ). A budget of 0 is not attacked (no point
    can move): its robust accuracy is the clean accuracy, so a robustness
    curve can start at 0 at no cost.

    Args:
      logits_fn: the eval-mode model, ``x[B, ...] -> logits[B, K]``.
      x: inputs ``[N, ...]`` in ``[clip_min, clip_max]`` (numpy or jax).
      y: integer labels ``[N]`` or one-hot/probability rows ``[N, K]`` (their argmax).
      attacks: ``{name: eps -> attack}``, e.g.
        ``{"pgd": lambda e: advjax.pgd(e, steps=20, restarts=5)}``.
      epsilons: strictly increasing budgets, measured in ``norm``.
      key: PRNG key; attack ``i`` on batch ``b`` uses ``fold_in(fold_in(key, i), b)``.
      norm: the threat model in which perturbation sizes are reported.
      batch_size: examples per compiled batch.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.
      diagnostics: run the gradient-masking checks (zero input gradients on the
        first batch, non-deterministic logits, curves that do not fall, black-box
        attacks beating white-box ones) and list what they find in
        ``report.warnings``.
      black_box: names of black-box attacks in ``attacks`` (names containing
        ``square``, ``hopskipjump`` or ``one_pixel`` are recognised anyway).
      sharding: where each batch goes, e.g.
        ``advjax.parallel.batch_sharding(mesh)`` to split it over devices (a
        batch the device count does not divide is padded with copies of its
        first example). ``None`` takes
        :func:`advjax.parallel.default_batch_sharding`: every local device
        when there are several, else the default device. The report does not
        depend on the device count (random starts are drawn per example).
      progress: show a progress bar over the batches of each attack.
      early_exit: skip, at each budget, the examples a smaller budget already
        broke (the counts are the same either way; only the time differs).

    Returns:
      A :class:`RobustnessReport`. An example counts as broken only if the
      attack's point is finite, inside the ``eps``-ball of ``norm`` (1e-6
      relative slack) and inside ``[clip_min, clip_max]``, and its logits are
      finite; each attack's ``rejected`` counts the points that failed.

    Raises:
      TypeError, ValueError, InvalidInputError: bad inputs, labels, budgets or
        options (see ``docs/validation.md``), before any attack runs.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (4, 3))
      >>> logits_fn = lambda x: x @ w
      >>> x = jax.random.uniform(jax.random.key(1), (8, 4))
      >>> y = jnp.argmax(logits_fn(x), -1)
      >>> report = advjax.evaluation.evaluate(logits_fn, x, y, {"fgsm": lambda e: advjax.fgsm(e)},
      ...                               [0.0, 1.0], key=jax.random.key(2))
      >>> report.clean_accuracy
      1.0
    """
    x, y = np.asarray(x), np.asarray(y)
    check_batch(logits_fn, x, y, clip_min, clip_max)
    y = np.asarray(as_int_labels(y))
    if not attacks:
        raise ValueError("attacks is empty: give at least one {name: eps -> attack}.")
    batch_size = min(check_positive_int(batch_size, "batch_size"), len(x))
    if sharding is None:
        sharding = default_batch_sharding()
    epsilons_array = _validated_epsilons(epsilons)
    threat = get_threat_model(norm)
    predict = predictor(logits_fn)

    over_data = functools.partial(map_batches, batch_size=batch_size, sharding=sharding)
    correct = over_data(predict, [x]) == y
    attacked = epsilons_array > 0  # at budget 0 nothing can move: robust accuracy is clean accuracy
    results, all_broken, all_norms = [], [], []
    for attack_index, (name, factory) in enumerate(attacks.items()):
        budgets = tuple(epsilons_array[attacked].tolist())
        attack_key = jax.random.fold_in(key, attack_index)
        started = time.perf_counter()
        broken = np.zeros((len(x), len(epsilons_array)), bool)
        norms = np.zeros(broken.shape, np.float32)
        rejected = {reason: np.zeros(broken.shape, bool) for reason in REJECTION_REASONS}
        if budgets:
            restarts, single = restart_plan(factory, budgets[-1]) if early_exit else (1, factory)
            box = (float(clip_min), float(clip_max))
            runs = [_budget_program(logits_fn, single, threat, *box)] * restarts
            found, sizes, refused = _attack_budgets(
                runs,
                x,
                y,
                correct,
                budgets,
                attack_key,
                early_exit=early_exit,
                over_rows=dict(batch_size=batch_size, bucket=early_exit, sharding=sharding),
                progress=name if progress else "",
            )
            broken[:, attacked], norms[:, attacked] = found, sizes
            for reason, mask in refused.items():
                rejected[reason][:, attacked] = mask
        seconds = time.perf_counter() - started
        all_broken.append(broken.T)
        all_norms.append(norms.T)
        rejected = {reason: mask.sum(axis=0).tolist() for reason, mask in rejected.items()}
        results.append(
            summarise_attack(name, correct, all_broken[-1], all_norms[-1], seconds, rejected)
        )

    any_broken = np.any(all_broken, axis=0)
    smallest_norm = np.min(
        [np.where(b, n, np.inf) for b, n in zip(all_broken, all_norms, strict=True)], axis=0
    )
    smallest_norm = np.where(np.isfinite(smallest_norm), smallest_norm, 0.0)
    worst = summarise_attack(
        "worst_case", correct, any_broken, smallest_norm, sum(r.seconds for r in results)
    )
    report = RobustnessReport(
        norm=threat.name,
        epsilons=[float(e) for e in epsilons],
        num_examples=int(len(x)),
        clean_accuracy=float(correct.mean()),
        attacks=results,
        worst_case=worst,
        robust_examples=(correct[None] & ~np.logical_or.accumulate(any_broken, axis=0)),
    )
    rejected_total = sum(sum(sum(c) for c in r.rejected.values()) for r in results)
    report.diagnostics, report.warnings = input_validity_findings(
        logits_fn, x, y, batch_size, rejected_total
    )
    if diagnostics:
        model_figures, model_warnings = gradient_masking_checks(
            logits_fn, x[:batch_size], y[:batch_size], warn_non_finite=False
        )
        curve_figures, curve_warnings = curve_checks(report, tuple(black_box))
        report.diagnostics.update({**model_figures, **curve_figures})
        report.warnings.extend(model_warnings + curve_warnings)
    return report
