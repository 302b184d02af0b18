"""AutoAttack-strength evaluation that spends its work where the answer can still change.

Standard AutoAttack (:func:`advjax.evaluation.autoattack`) runs APGD-CE, APGD-T
towards the 9 classes of highest logit, FAB-T towards the same 9 and Square
with 5,000 queries on every point still robust. On a robust model almost every
point survives all four, so almost all of that work is spent on points it
cannot break. :func:`fast_autoattack` keeps the attacks and spends them
differently:

1. APGD-CE (100 iterations, the paper's settings) on every correctly classified
   point, with per-example early exit: the loop runs in segments and a broken
   point leaves it (:func:`compacted_loop`), and so does a point where APGD is
   at a fixed point (all-zero gradient, no momentum: it can never move again).
2. APGD-T (targeted DLR, 100 iterations) towards the classes a local linear model
   says are closest (MALT targeting, Melamed, Yehudai & Shamir 2024,
   arXiv:2407.02240): per point the classes whose linearised distance is within
   ``reach * eps``, nearest first, at least one and at most ``max_targets``
   (:func:`malt_targets`), each target only on the points still robust.
3. Square (5,000 queries, the paper's settings) on the still-robust points
   closest to the decision boundary (smallest logit margin at the white-box
   attacks' best points), in chunks of ``boundary_share`` of them, nearest
   first, each run starting from that best point (:func:`square_from`); the
   next chunk runs while a quarter of Square's breaks lie in the farther half
   of the last one, so on a model whose gradients mislead it moves outwards
   until its breaks thin out. The nearest third of the first chunk also gets
   ``square_runs - 1`` runs from Square's own start.
4. A safeguard against gradient masking. Square (from its own start) on a
   random sample of ``probe_examples`` still-robust points far from the
   boundary, plus the model-level checks of :func:`gradient_masking_checks`
   (all-zero or non-finite input gradients, randomized logits). When the probe
   breaks any point or a check warns, the evaluation escalates: AutoAttack's
   full standard ensemble (APGD-T with 9 targets, FAB-T, Square with 5,000
   queries) runs on every point still robust, and ``escalated`` says why.

FAB-T is left out unless escalating: on the models measured in
``docs/attacks.md`` it broke no point that APGD-T had not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import (
    as_int_labels,
    check_batch,
    check_classes,
    check_epsilon,
    check_positive_int,
)
from advjax._compile import per_model
from advjax.attacks import (
    REJECTION_REASONS,
    APGDProblem,
    APGDState,
    Constraints,
    apgd_init,
    apgd_iterate,
    apgd_result,
    apgd_variant,
    get_threat_model,
    is_successful,
    per_example_keys,
    square_from,
)
from advjax.data import map_batches
from advjax.evaluation._autoattack import (
    AutoAttackResult,
    _config,
    _load_state,
    _save_state,
    autoattack,
    judge_points,
    standard_attacks,
)
from advjax.evaluation._compaction import compacted_loop, row_keys
from advjax.evaluation._diagnostics import gradient_masking_checks, input_validity_findings
from advjax.evaluation._robustness import predictor
from advjax.losses import ce, dlr_targeted
from advjax.parallel import default_batch_sharding

FAST_NORMS = ("linf", "l2")


def linearised_distances(logits_fn: Callable, x, y, *, norm: str = "linf") -> jax.Array:
    """Per example and class, the distance to that class's boundary under a linear model.

    ``d_t = (z_y - z_t) / ||grad z_y - grad z_t||_*`` with ``||.||_*`` the dual of
    the threat model's norm: the smallest perturbation (in ``norm``) that makes
    class ``t`` win if the logits were linear around ``x``. One backward pass
    per class.

    Args:
      logits_fn: ``x[B, ...] -> logits[B, K]``.
      x: ``[B, ...]`` inputs.
      y: ``[B]`` integer labels.
      norm: ``"linf"``, ``"l2"`` or ``"l1"`` (a threat model with a dual norm).

    Returns:
      ``[B, K]`` float32 distances, in input units; ``inf`` for the true class,
      ``0`` for a class that already wins.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.evaluation import linearised_distances
      >>> w = jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]])
      >>> d = linearised_distances(lambda x: x @ w, jnp.array([[0.5, 0.2]]), jnp.array([0]))
      >>> [round(float(v), 3) for v in d[0]]
      [inf, 0.15, 0.5]
    """
    threat = get_threat_model(norm)
    if threat.dual_norm is None:
        raise ValueError(f"the {threat.name!r} threat model has no dual norm to linearise with.")
    logits, pullback = jax.vjp(logits_fn, x)
    num_classes = logits.shape[-1]

    def class_gradient(k):
        return pullback(
            jnp.broadcast_to(jax.nn.one_hot(k, num_classes, dtype=logits.dtype), logits.shape)
        )[0]

    def distance_to(k):
        difference = class_gradient(k) - gradient_of_true
        gap = jnp.take_along_axis(logits, y[:, None], -1)[:, 0] - logits[:, k]
        size = threat.dual_norm(difference.astype(jnp.float32))
        return jnp.maximum(gap.astype(jnp.float32), 0.0) / jnp.maximum(size, 1e-12)

    gradient_of_true = jax.vmap(lambda g, label: g[label], in_axes=(1, 0))(
        jax.lax.map(class_gradient, jnp.arange(num_classes)), y
    )
    distances = jax.lax.map(distance_to, jnp.arange(num_classes)).T
    return jnp.where(jax.nn.one_hot(y, num_classes, dtype=bool), jnp.inf, distances)


def malt_targets(distances, eps: float, *, max_targets: int = 9, reach: float = 1.75):
    """Target classes per example, nearest first by linearised distance (MALT).

    A class is a target when its linearised distance is at most ``reach * eps``;
    every example gets at least its nearest class and at most ``max_targets``.

    Args:
      distances: ``[B, K]`` from :func:`linearised_distances`.
      eps: the budget, in the same units.
      max_targets: the most targets per example.
      reach: how far beyond ``eps`` (as a multiple) a linearised boundary may lie
        and still be attacked: the model is not linear at that scale.

    Returns:
      ``(targets [B, max_targets] int, counts [B] int)``: the classes nearest
      first, and how many of them to attack.

    Example:
      >>> import numpy as np
      >>> from advjax.evaluation import malt_targets
      >>> d = np.array([[np.inf, 0.2, 0.9, 0.5], [0.4, np.inf, 2.0, 3.0]])
      >>> targets, counts = malt_targets(d, 0.3, max_targets=2, reach=2.0)
      >>> targets.tolist(), counts.tolist()
      ([[1, 3], [0, 2]], [2, 1])
    """
    distances = np.asarray(distances, np.float64)
    max_targets = min(check_positive_int(max_targets, "max_targets"), distances.shape[1] - 1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :max_targets]
    within = np.take_along_axis(distances, order, 1) <= reach * float(eps)
    counts = np.clip(within.sum(1), 1, max_targets)
    return order.astype(np.int32), counts.astype(np.int32)


@per_model
def _apgd_programs(logits_fn, threat, eps: float, steps: int, clip_min: float, clip_max: float):
    """Jitted ``init`` and ``advance`` of APGD-CE (target ``-1``) or APGD-T for one model."""
    variant = apgd_variant(threat)

    def problem(x, y, target):
        def objective(logits):
            targeted = dlr_targeted(logits, y, jnp.maximum(target, 0))
            return jnp.where(target < 0, ce(logits, y), targeted)

        return APGDProblem(
            logits_fn,
            x,
            jnp.asarray(eps, x.dtype),
            steps,
            threat,
            objective,
            lambda logits: is_successful(logits, y, False),
            clip_min=clip_min,
            clip_max=clip_max,
        )

    def as_carry(state):
        carry = {k: v for k, v in state._asdict().items() if k != "i"}
        return {**carry, "done": state.found | _stalled(state)}

    @jax.jit
    def init(x, y, target, key_data):
        def start(key, xi):
            return variant.start(threat, key, xi[None], jnp.asarray(eps, x.dtype))[0]

        keys = jax.random.wrap_key_data(key_data)
        return as_carry(apgd_init(problem(x, y, target), jax.vmap(start)(keys, x)))

    @jax.jit
    def advance(x, y, target, key_data, carry, start, stop):
        del key_data
        carry = {k: v for k, v in carry.items() if k != "done"}
        return as_carry(apgd_iterate(problem(x, y, target), _state(carry, start), stop=stop))

    @jax.jit
    def finish(carry):
        return apgd_result(_state(carry, jnp.int32(0)))[0]

    return init, advance, finish


def _state(carry, i):
    return APGDState(i=i, **{k: v for k, v in carry.items() if k != "done"})


def _stalled(state: APGDState) -> jax.Array:
    """``[B]``: APGD is at a fixed point (no gradient, no momentum), so it can never move.

    With an all-zero gradient the step direction is zero, and with the last
    iterate equal to the current one the momentum term is zero too; a
    checkpoint only halves the step or returns to the best point, which is
    this point. Dropping such an example cannot weaken the attack.
    """
    batch = state.grad.shape[0]
    no_gradient = jnp.all(state.grad.reshape(batch, -1) == 0, -1)
    no_momentum = jnp.all((state.x_adv == state.x_prev).reshape(batch, -1), -1)
    at_best = jnp.all((state.x_adv == state.x_best).reshape(batch, -1), -1)
    return no_gradient & no_momentum & at_best


@per_model
def _margin_program(logits_fn):
    """Jitted ``(x, y) -> [B]`` logit margin ``z_y - max_{j != y} z_j``."""

    @jax.jit
    def margin(x, y):
        logits = logits_fn(x).astype(jnp.float32)
        true = jnp.take_along_axis(logits, y[:, None], -1)[:, 0]
        others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
        return true - others.max(-1)

    return margin


@per_model
def _distance_program(logits_fn, norm: str):
    return jax.jit(lambda x, y: linearised_distances(logits_fn, x, y, norm=norm))


@per_model
def _per_example_runner(logits_fn, attack):
    """``attack`` jitted for ``logits_fn``, one key per example: ``(x, y, *extras, key_data)``."""
    attack = per_example_keys(attack)

    def run(*arrays):
        key = jax.random.wrap_key_data(arrays[-1])
        return attack(logits_fn, *arrays[:-1], key=key)

    return jax.jit(run)


def _square_on(logits_fn, attack, record, rows, warm, key_data):
    """Square's points for ``rows`` (which may repeat), run ``r`` drawn from ``key_data[r]``.

    Where ``warm`` is set, Square starts from the point nearest the boundary
    that the earlier stages found (``record.closest``), elsewhere from its own
    start. Square runs once per point set, thousands of queries long: its
    batches are padded to a multiple of 32 rows, not to a power of two, so
    that little of each query is spent on padding.
    """
    if not rows.size:
        return record.x[:0]
    size = min(record.over_rows["batch_size"], -(-rows.size // 32) * 32)
    options = {**record.over_rows, "batch_size": size, "bucket": False}
    arrays = [record.x[rows], record.y[rows], record.closest[rows], warm, key_data]
    return map_batches(_per_example_runner(logits_fn, attack), arrays, **options)


def _escalation_reasons(logits_fn, x, y, batch_size, probe_broken, probe_examples):
    """Why the safeguard escalates (empty: it does not), and the checks' figures."""
    figures, reasons = input_validity_findings(logits_fn, x, y, batch_size, 0)
    checks, warnings = gradient_masking_checks(
        logits_fn, x[:batch_size], y[:batch_size], warn_non_finite=False
    )
    figures.update(checks)
    reasons = reasons + warnings
    if probe_broken:
        reasons.append(
            f"the black-box probe (Square) broke {probe_broken} of {probe_examples} points that "
            "the white-box attacks left robust and that were not near the boundary: gradients "
            "may be masked, so the full ensemble ran on every robust point."
        )
    return figures, reasons


class _Record:
    """The evaluation's running record: robust flags, points found, margins, stages."""

    def __init__(self, x, y, correct, constraints, predictions, margin, over_rows, saver):
        self.x, self.y, self.constraints = x, y, constraints
        self.predictions, self.margin_fn, self.over_rows, self.saver = (
            predictions,
            margin,
            over_rows,
            saver,
        )
        self.robust, self.x_adv = correct.copy(), x.copy()
        self.margin = np.full(len(x), np.inf, np.float32)
        self.closest = x.copy()  # per point, the unbroken point of smallest margin found
        self.per_attack: dict[str, dict[str, Any]] = {}
        self.attacks_run: list[str] = []

    def absorb(self, rows, found) -> tuple[int, dict[str, int]]:
        """Counts the valid misclassified points of ``found`` as broken; tracks margins.

        ``rows`` may repeat (several runs on one point): the point is broken
        when any of its runs is, and keeps the smallest margin of the others.
        Returns the points newly broken and the rejections per reason.
        """
        x, y = self.x, self.y
        if not rows.size:
            return 0, dict.fromkeys(REJECTION_REASONS, 0)
        fooled, rejected = judge_points(x[rows], y[rows], found, self.constraints, self.predictions)
        robust_before = int(self.robust.sum())
        newly = fooled & self.robust[rows]  # a point keeps the first adversarial example found
        self.robust[rows[newly]] = False
        self.x_adv[rows[newly]] = found[newly]
        kept, points = rows[~fooled], found[~fooled]
        if kept.size:
            margins = map_batches(self.margin_fn, [points, y[kept]], **self.over_rows)
            by_row = np.lexsort((margins, kept))  # each row's smallest margin first
            best = by_row[np.unique(kept[by_row], return_index=True)[1]]
            better = best[margins[best] < self.margin[kept[best]]]
            self.margin[kept[better]] = margins[better]
            self.closest[kept[better]] = points[better]
        return robust_before - int(self.robust.sum()), rejected

    def log(self, name, started, *, save: bool = True, **figures) -> None:
        """Closes stage ``name``: its figures, then (with ``save``) the saved state."""
        self.per_attack[name] = {
            "robust_accuracy_after": float(self.robust.mean()),
            **figures,
            "seconds": time.perf_counter() - started,
        }
        self.attacks_run.append(name)
        if save:
            self.saver(self)


def fast_autoattack(
    logits_fn: Callable,
    x,
    y,
    *,
    eps: float,
    key: jax.Array,
    norm: str = "linf",
    steps: int = 100,
    max_targets: int = 3,
    reach: float = 1.75,
    boundary_share: float = 0.2,
    queries: int = 5000,
    square_runs: int = 2,
    probe_examples: int = 32,
    segment: int = 10,
    batch_size: int = 500,
    state_dir: str | Path | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    sharding: jax.sharding.Sharding | None = None,
) -> AutoAttackResult:
    """AutoAttack-strength robust accuracy at a fraction of AutoAttack's cost.

    See the module docstring for the stages: APGD-CE with per-example early
    exit, APGD-T towards MALT's linearised-nearest classes (Melamed, Yehudai &
    Shamir 2024, arXiv:2407.02240), Square on the points nearest the boundary,
    and a masking safeguard that escalates to AutoAttack's full ensemble
    (Croce & Hein 2020, arXiv:2003.01690). Every stage runs only on points no
    earlier stage broke; a point counts as broken when the returned point is
    finite, inside the ``eps``-ball and the box, and misclassified.

    Reproducible from ``key`` and, up to the escalation (which is
    :func:`autoattack`), independent of ``segment``, ``batch_size`` and the
    device count: every random draw of APGD and Square comes from the
    example's index. With
    ``state_dir`` the state is saved after each stage and a later call with the
    same arguments resumes after the last completed one (no pickle).

    Args:
      logits_fn: the eval-mode model ``x[B, ...] -> logits[B, K]`` (deterministic;
        for a randomized model use :func:`autoattack` with ``version="rand"``).
      x: inputs ``[N, ...]`` in ``[clip_min, clip_max]``.
      y: integer labels ``[N]`` or one-hot/probability rows ``[N, K]``.
      eps: the budget, in ``norm``, in input units.
      key: PRNG key.
      norm: ``"linf"`` or ``"l2"``.
      steps: APGD iterations per run (the paper's 100).
      max_targets: the most APGD-T targets per point (AutoAttack runs 9; what
        fewer gave up on MNIST is in ``docs/attacks.md``).
      reach: a class is a target when its linearised distance is at most
        ``reach * eps`` (:func:`malt_targets`).
      boundary_share: the chunk Square attacks at a time, as a share of the
        still-robust points, nearest the boundary first (more chunks follow
        while a quarter of the breaks lie in the farther half of the last one).
      queries: Square's queries per run (the paper's 5,000), probe included.
      square_runs: Square's runs on each point of the nearest third of the
        first chunk: one from the closest point the white-box attacks found,
        the others from Square's own start (the rest gets the first only).
      probe_examples: the fewest far still-robust points the masking probe
        tries (Square from its own start, ``queries`` queries).
      segment: APGD iterations between two compactions.
      batch_size: the largest compiled batch.
      state_dir: where to save and resume the state (``None``: no saving).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.
      sharding: where each batch goes (``None``: every local device, see
        :func:`advjax.parallel.default_batch_sharding`).

    Returns:
      An :class:`AutoAttackResult` whose ``per_attack`` has one entry per stage
      (``apgd-ce``, ``apgd-t``, ``probe``, ``square``, then, when escalating,
      ``escalation:apgd-t``, ``escalation:fab-t``, ``escalation:square``), each
      with ``examples`` (points attacked) and, for APGD, ``example_iterations``
      (iterations summed over points: the work spent); ``square`` also has
      ``broken_per_chunk`` (breaks from the closest points, chunk by chunk),
      ``broken_by_runs_from_own_start`` and ``deepest_break``, the position
      (nearest first, 1-based) of the farthest point broken in the chunks.
      The probe runs in Square's first call, whose time counts as the
      ``square`` stage's. ``escalated`` says why the full ensemble ran, or is
      ``None``.

    Raises:
      ValueError, TypeError, InvalidInputError: bad inputs, labels, budget,
        counts or options; a norm other than ``"linf"`` or ``"l2"``; a model
        with fewer than 4 classes (targeted DLR), before any attack runs.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (16, 4))
      >>> logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x = jax.random.uniform(jax.random.key(1), (8, 4, 4, 1))
      >>> y = jnp.argmax(logits_fn(x), -1)
      >>> result = advjax.evaluation.fast_autoattack(logits_fn, x, y, eps=0.05, steps=5,
      ...     queries=20, key=jax.random.key(2))
      >>> result.robust_accuracy <= result.clean_accuracy, result.attacks_run[:2]
      (True, ['apgd-ce', 'apgd-t'])
    """
    x, y = np.asarray(x), np.asarray(y)
    if norm not in FAST_NORMS:
        raise ValueError(
            f"fast_autoattack supports norm in {FAST_NORMS}, got {norm!r}; use autoattack."
        )
    if np.ndim(eps) != 0:
        raise ValueError(f"eps must be a scalar budget, got shape {np.shape(eps)}.")
    check_epsilon(eps)
    counts_given = dict(
        steps=steps,
        max_targets=max_targets,
        queries=queries,
        square_runs=square_runs,
        segment=segment,
        batch_size=batch_size,
    )
    for name, value in counts_given.items():
        check_positive_int(value, name)
    if isinstance(probe_examples, bool) or int(probe_examples) != probe_examples:
        raise TypeError(f"probe_examples must be an integer, got {probe_examples!r}.")
    if probe_examples < 0:
        raise ValueError(f"probe_examples must be >= 0, got {probe_examples}.")
    if not (np.isfinite(reach) and reach > 0):
        raise ValueError(f"reach must be a positive number, got {reach}.")
    if not 0.0 <= boundary_share <= 1.0:
        raise ValueError(f"boundary_share must be in [0, 1], got {boundary_share}.")
    threat = get_threat_model(norm)
    num_classes = check_batch(logits_fn, x, y, clip_min, clip_max)
    check_classes(num_classes, 4, "fast_autoattack (APGD-T's targeted DLR loss)")
    y = np.asarray(as_int_labels(y))
    sharding = default_batch_sharding() if sharding is None else sharding
    over_rows = dict(batch_size=batch_size, bucket=True, sharding=sharding, min_bucket=32)
    predict = predictor(logits_fn)

    def predictions(images):
        return map_batches(predict, [images], **over_rows)

    correct = predictions(x) == y
    settings = dict(
        counts_given,
        reach=float(reach),
        boundary_share=float(boundary_share),
        probe_examples=int(probe_examples),
    )
    settings.pop("batch_size")
    config = _config(eps, norm, "fast", len(x), [f"{k}={v}" for k, v in settings.items()], key)
    state_path = Path(state_dir) if state_dir is not None else None

    def save(record):
        if state_path is not None:
            _save_state(
                state_path,
                config,
                record.robust,
                record.x_adv,
                record.attacks_run,
                record.per_attack,
                margin=record.margin,
                closest=record.closest,
            )

    constraints = Constraints(threat, float(eps), float(clip_min), float(clip_max))
    margin = _margin_program(logits_fn)
    record = _Record(x, y, correct, constraints, predictions, margin, over_rows, save)
    loaded = _load_state(state_path, config) if state_path is not None else None
    if loaded is not None:
        robust, x_adv, record.attacks_run, record.per_attack, saved = loaded
        record.robust, record.x_adv = robust.copy(), x_adv.copy()
        record.margin, record.closest = saved["margin"].copy(), saved["closest"].copy()

    init, advance, finish = _apgd_programs(
        logits_fn, threat, float(eps), steps, float(clip_min), float(clip_max)
    )

    def apgd_on(rows, targets, key_data):
        arrays = [x[rows], y[rows], np.asarray(targets, np.int32), key_data]
        carry, work = compacted_loop(
            init,
            advance,
            arrays,
            steps=steps,
            segment=segment,
            batch_size=batch_size,
            sharding=sharding,
            done="done",
            groups=rows,
        )
        names = sorted(carry)
        found = map_batches(
            lambda *leaves: finish(dict(zip(names, leaves, strict=True))),
            [carry[n] for n in names],
            **over_rows,
        )
        return found, work

    box = dict(clip_min=clip_min, clip_max=clip_max)
    full_square = square_from(eps, norm=norm, queries=queries, **box)
    square_options = dict(
        boundary_share=boundary_share, square_runs=square_runs, probe_examples=probe_examples
    )
    stages = {
        "apgd-ce": lambda: _apgd_ce_stage(record, apgd_on, key),
        "apgd-t": lambda: _apgd_t_stage(
            record, apgd_on, key, _distance_program(logits_fn, norm), eps, max_targets, reach
        ),
        "square": lambda: _square_stage(record, logits_fn, full_square, square_options, key),
    }
    for name, stage in stages.items():
        if name not in record.attacks_run:
            stage()

    figures, reasons = _escalation_reasons(
        logits_fn,
        x,
        y,
        batch_size,
        record.per_attack["probe"]["broken"],
        record.per_attack["probe"]["examples"],
    )
    escalated = " ".join(reasons) if reasons else None
    rows = np.flatnonzero(record.robust)
    if escalated and not any(n.startswith("escalation:") for n in record.attacks_run):
        ensemble = standard_attacks(
            eps, norm=norm, steps=steps, targets=min(9, num_classes - 1), queries=queries, **box
        )
        del ensemble["apgd-ce"]  # it already ran, on every point
        _escalate(
            record,
            logits_fn,
            rows,
            ensemble,
            jax.random.fold_in(key, 103),
            dict(eps=eps, norm=norm, batch_size=batch_size, sharding=sharding, **box),
        )
    rejected = sum(sum(r.get("rejected", {}).values()) for r in record.per_attack.values())
    _, validity = input_validity_findings(logits_fn, x[:0], y[:0], batch_size, rejected)
    return AutoAttackResult(
        clean_accuracy=float(correct.mean()),
        robust_accuracy=float(record.robust.mean()),
        robust=record.robust,
        x_adv=record.x_adv,
        attacks_run=list(record.attacks_run),
        per_attack=record.per_attack,
        warnings=reasons + validity,
        diagnostics=figures,
        correct=correct,
        escalated=escalated,
    )


def _apgd_ce_stage(record: _Record, apgd_on, key) -> None:
    started = time.perf_counter()
    rows = np.flatnonzero(record.robust)
    found, work = apgd_on(rows, np.full(rows.size, -1), row_keys(jax.random.fold_in(key, 0), rows))
    broken, rejected = record.absorb(rows, found)
    record.log(
        "apgd-ce",
        started,
        broken=broken,
        examples=int(rows.size),
        example_iterations=work,
        rejected=rejected,
    )


def _apgd_t_stage(record: _Record, apgd_on, key, distance, eps, max_targets, reach) -> None:
    """APGD-T towards every chosen target of every point at once, as one pool of runs.

    The runs of a point leave the pool together as soon as one of them breaks
    it; the target of rank ``k`` draws its random start from ``fold_in(fold_in(
    key, 1 + k), n)`` for point ``n``.
    """
    started = time.perf_counter()
    rows = np.flatnonzero(record.robust)
    # equal batches: one compiled shape (a second one for a short last batch costs more)
    batches = max(-(-rows.size // record.over_rows["batch_size"]), 1)
    even = {**record.over_rows, "batch_size": max(-(-rows.size // batches), 1)}
    distances = map_batches(distance, [record.x, record.y], rows=rows, **even)
    targets, counts = malt_targets(distances, eps, max_targets=max_targets, reach=reach)
    owner = np.repeat(np.arange(rows.size), counts)
    rank = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    points = rows[owner]
    key_data = np.zeros((owner.size, *row_keys(key, rows[:1]).shape[1:]), np.uint32)
    for k in np.unique(rank):
        key_data[rank == k] = row_keys(jax.random.fold_in(key, 1 + int(k)), points[rank == k])
    broken, rejected, work = 0, dict.fromkeys(REJECTION_REASONS, 0), 0
    if points.size:
        found, work = apgd_on(points, targets[owner, rank], key_data)
        broken, rejected = record.absorb(points, found)
    record.log(
        "apgd-t",
        started,
        broken=broken,
        examples=int(rows.size),
        runs=int(points.size),
        mean_targets=float(counts.mean()) if counts.size else 0.0,
        example_iterations=work,
        rejected=rejected,
    )


def _margin_order(record: _Record) -> np.ndarray:
    """The still-robust points, smallest logit margin (nearest the boundary) first."""
    rows = np.flatnonzero(record.robust)
    return rows[np.argsort(record.margin[rows], kind="stable")]


def _probe_rows(order: np.ndarray, chunk: int, probe_examples: int, key) -> np.ndarray:
    """A random sample of the points beyond the first two chunks (far from the boundary).

    With fewer points than that, of the points beyond the first chunk.
    """
    others = order[2 * chunk :] if order.size > 2 * chunk else order[chunk:]
    seed = np.asarray(jax.random.key_data(jax.random.fold_in(key, 102))).ravel()
    return np.sort(np.random.default_rng(seed.tolist()).permutation(others)[:probe_examples])


def _square_stage(record: _Record, logits_fn, attack, options, key) -> None:
    """Square near the boundary (from the closest points found and from its own start), the probe.

    1. One call: the first chunk (``boundary_share`` of the still-robust
       points, nearest the boundary first), each from the point nearest the
       boundary that the earlier stages found (:func:`square_from`);
       ``square_runs - 1`` runs from Square's own start on the nearest third
       of that chunk; and the masking probe, Square from its own start on a
       random sample of points beyond the first two chunks (at least
       ``probe_examples``, more where the call's last batch has room: it is
       padded to a multiple of 32 rows anyway).
    2. The next chunk (from the closest points) while at least a quarter of
       the last chunk's breaks lie in its farther half: on a model whose
       margins say little, the stage moves outwards until its breaks thin out.

    From the closest point Square broke about twice as many of the points
    nearest the boundary as from its own start on the MNIST models of
    ``docs/attacks.md``, but not all of the same ones, hence the runs from its
    own start; the probe starts cold so that it owes nothing to the gradients
    it is there to check.

    Point ``n`` draws from ``fold_in(fold_in(key, 100), n)`` from its closest
    point, ``fold_in(fold_in(fold_in(key, 104), r), n)`` in run ``r`` from
    Square's own start and ``fold_in(fold_in(key, 101), n)`` in the probe.
    """
    started = time.perf_counter()
    order = _margin_order(record)
    chunk = int(np.ceil(options["boundary_share"] * order.size))
    windows = [order[position : position + chunk] for position in range(0, order.size, chunk or 1)]
    nearest = windows[0] if chunk else order[:0]
    nearest_third = nearest[: -(-nearest.size // 3)]
    cold = np.tile(nearest_third, options["square_runs"] - 1)
    # the probe fills the first call's last batch (padded to a multiple of 32 rows anyway)
    attacked = nearest.size + cold.size
    probe_size = -(-(attacked + options["probe_examples"]) // 32) * 32 - attacked
    probe = _probe_rows(order, chunk, probe_size, key)
    cold_keys = [
        row_keys(jax.random.fold_in(jax.random.fold_in(key, 104), r), nearest_third)
        for r in range(1, options["square_runs"])
    ]
    rows = np.concatenate([nearest, cold, probe])
    keys = np.concatenate(
        [
            row_keys(jax.random.fold_in(key, 100), nearest),
            *cold_keys,
            row_keys(jax.random.fold_in(key, 101), probe),
        ]
    )
    warm = np.arange(rows.size) < nearest.size  # the probe starts cold: no gradient in it
    found = _square_on(logits_fn, attack, record, rows, warm, keys)
    found_nearest, found_cold, found_probe = np.split(
        found, [nearest.size, nearest.size + cold.size]
    )
    probe_started = time.perf_counter()  # the shared call counts as the square stage's
    probe_broken, probe_rejected = record.absorb(probe, found_probe)
    record.log(
        "probe",
        probe_started,
        save=False,
        broken=probe_broken,
        examples=int(probe.size),
        rejected=probe_rejected,
    )
    broken_cold, rejected = record.absorb(cold, found_cold)
    broken_per_chunk, deepest, position = [], 0, 0
    for index, window in enumerate(windows if chunk else []):
        if index == 0:
            broken, reasons = record.absorb(nearest, found_nearest)
        else:
            attacked = window[~np.isin(window, probe)]  # the probe has tried those
            warm = np.ones(attacked.size, bool)
            keys = row_keys(jax.random.fold_in(key, 100), attacked)
            found = _square_on(logits_fn, attack, record, attacked, warm, keys)
            broken, reasons = record.absorb(attacked, found)
        rejected = {r: rejected[r] + reasons[r] for r in rejected}
        broken_per_chunk.append(broken)
        hits = np.flatnonzero(~record.robust[window])  # cold runs and probe count too
        deepest = position + int(hits.max()) + 1 if hits.size else deepest
        position += window.size
        farther = int(np.sum(2 * hits >= window.size))
        if not hits.size or 4 * farther < hits.size:
            break
    record.log(
        "square",
        started,
        broken=int(sum(broken_per_chunk)) + broken_cold,
        examples=position,
        broken_per_chunk=broken_per_chunk,
        deepest_break=deepest,
        broken_by_runs_from_own_start=broken_cold,
        rejected=rejected,
    )


def _escalate(record: _Record, logits_fn, rows, ensemble, key, options) -> None:
    """``ensemble`` run by :func:`autoattack` on ``rows``, merged into ``record``."""
    started = time.perf_counter()
    if rows.size:
        result = autoattack(
            logits_fn,
            record.x[rows],
            record.y[rows],
            key=key,
            version="custom",
            attacks=ensemble,
            diagnostics=False,
            **options,
        )
        broken_rows = rows[~result.robust]
        still_robust = int(record.robust.sum())
        record.robust[broken_rows] = False
        record.x_adv[broken_rows] = result.x_adv[~result.robust]
        for name, figures in result.per_attack.items():
            still_robust -= figures["broken"]
            record.per_attack[f"escalation:{name}"] = {
                **figures,
                "robust_accuracy_after": still_robust / len(record.robust),
                "examples": int(rows.size),
            }
            record.attacks_run.append(f"escalation:{name}")
    else:
        record.log("escalation:none", started, broken=0, examples=0, save=False)
    record.saver(record)
