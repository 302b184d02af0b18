"""Gradient-masking diagnostics (Athalye et al. 2018; Carlini et al. 2019 checklist).

Signs that an evaluation may overstate robustness because gradients are masked
or obfuscated: many exactly-zero input gradients, robust accuracy that does not
fall as the budget grows, a black-box attack beating the white-box ones, and
logits that change between identical calls (a randomized model needs EOT).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from advjax._compile import per_model
from advjax.data import map_batches
from advjax.losses import ce

BLACK_BOX_NAMES = ("square", "hopskipjump", "hsj", "one_pixel", "onepixel", "boundary")


def non_finite_gradient_warning(count: int, total: int) -> str:
    """The warning for ``count`` of ``total`` examples whose input gradient has a NaN or inf."""
    return (
        f"{count} of {total} examples have a NaN or infinite input gradient of the "
        "cross-entropy: gradient attacks take no step on them, so their robust accuracy is an "
        "upper bound at best; the model is numerically unstable there (e.g. log(softmax(z)) "
        "instead of log_softmax(z)): fix the model, or add a black-box attack such as square."
    )


@per_model
def _input_gradient_summary(logits_fn):
    """Jitted ``(x, y) ->`` per example: finite, largest ``|g|``, zero coordinates of ``g``.

    ``g`` is the cross-entropy's input gradient. One compiled program serves both
    the NaN count over all examples and the masking checks on one batch.
    """

    @jax.jit
    def summary(xb, yb):
        grad = jax.grad(lambda xx: jnp.sum(ce(logits_fn(xx), yb)))(xb).reshape(xb.shape[0], -1)
        return jnp.all(jnp.isfinite(grad), -1), jnp.max(jnp.abs(grad), -1), jnp.sum(grad == 0, -1)

    return summary


def non_finite_gradient_mask(logits_fn, x, y, batch_size: int) -> np.ndarray:
    """Per example ``[N]``: whether the cross-entropy's input gradient has a NaN or inf.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.evaluation import non_finite_gradient_mask
      >>> unstable = lambda x: jnp.log(jnp.stack([x[:, 0], 1 - x[:, 0]], -1))
      >>> non_finite_gradient_mask(unstable, jnp.array([[0.0], [0.5]]), jnp.array([0, 0]), 2)
      array([ True, False])
    """
    if not len(x):
        return np.zeros(0, bool)
    summary = _input_gradient_summary(logits_fn)
    finite = map_batches(
        lambda xb, yb: summary(xb, yb)[0], [x, y], batch_size=min(batch_size, len(x))
    )
    return ~np.asarray(finite)


def input_validity_findings(
    logits_fn, x, y, batch_size: int, rejected_points: int
) -> tuple[dict[str, Any], list[str]]:
    """What ``evaluate`` and ``autoattack`` (:mod:`advjax.evaluation`) report on validity.

    Counts, over all examples, the points whose cross-entropy input gradient is
    NaN or inf (attacks take no step there), and warns about them and about
    ``rejected_points``, attack outputs that failed the re-verification.

    Returns:
      ``({"non_finite_gradient_examples": count}, warnings)``.
    """
    count = int(non_finite_gradient_mask(logits_fn, x, y, batch_size).sum())
    warnings = [non_finite_gradient_warning(count, len(x))] if count else []
    if rejected_points:
        warnings.append(
            f"{rejected_points} returned points were not finite, outside the eps-ball or outside "
            "the valid range and were not counted as adversarial examples (see each attack's "
            "'rejected'): an attack does not keep its threat model."
        )
    return {"non_finite_gradient_examples": count}, warnings


def _largest_change(first: np.ndarray, second: np.ndarray) -> float:
    """Largest difference between two calls' logits; NaN/inf in the same places count as equal."""
    if not first.size:
        return 0.0
    same_pattern = np.array_equal(np.isfinite(first), np.isfinite(second)) and np.array_equal(
        first[~np.isfinite(first)], second[~np.isfinite(second)], equal_nan=True
    )
    if not same_pattern:
        return float("inf")
    both = np.isfinite(first)
    return float(np.max(np.abs(first[both] - second[both]), initial=0.0))


def gradient_masking_checks(
    logits_fn,
    x,
    y,
    *,
    zero_gradient_threshold: float = 0.05,
    black_box_accuracy: float | None = None,
    white_box_accuracy: float | None = None,
    tolerance: float = 1e-6,
    warn_non_finite: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """Model-level checks: zero input gradients, non-deterministic logits, black box vs white box.

    Args:
      logits_fn: the eval-mode model.
      x: a batch of inputs.
      y: their integer labels.
      zero_gradient_threshold: warn when more than this share of examples has an
        all-zero input gradient of the cross-entropy.
      black_box_accuracy: robust accuracy under the best black-box attack, if any.
      white_box_accuracy: robust accuracy under the best white-box attack.
      tolerance: largest logit difference between two identical calls.
      warn_non_finite: warn about NaN/inf input gradients in this batch (callers
        that count them over all examples pass ``False`` and warn themselves).

    Returns:
      ``(figures, warnings)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.evaluation import gradient_masking_checks
      >>> flat = lambda x: jnp.zeros((x.shape[0], 3)) + 0.0 * x.sum()  # gradient always zero
      >>> figures, warnings = gradient_masking_checks(flat, jnp.ones((4, 2)), jnp.zeros(4, int))
      >>> figures["zero_gradient_share"], len(warnings)
      (1.0, 1)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    finite, largest, zeros = (np.asarray(a) for a in _input_gradient_summary(logits_fn)(x, y))
    zero_share = float(np.mean((largest == 0) & finite))
    coordinate_share = float(zeros.sum() / max(x.size, 1))
    first, second = np.asarray(logits_fn(x)), np.asarray(logits_fn(x))
    logit_change = _largest_change(first, second)
    figures: dict[str, Any] = {
        "zero_gradient_share": zero_share,
        "zero_gradient_coordinate_share": coordinate_share,
        "non_finite_gradient_share": float(np.mean(~finite)),
        "non_finite_logits_share": float(np.mean(~np.all(np.isfinite(first), -1))),
        "logits_max_abs_change": logit_change,
    }
    warnings = []
    if warn_non_finite and not finite.all():
        warnings.append(non_finite_gradient_warning(int((~finite).sum()), len(finite)))
    if zero_share > zero_gradient_threshold:
        warnings.append(
            f"{100 * zero_share:.1f}% of examples have an all-zero input gradient: gradients may "
            "be masked (shattered or saturated); try BPDA, a black-box attack, or another loss."
        )
    if not np.isfinite(logit_change) or logit_change > tolerance:
        warnings.append(
            f"logits differ between two identical calls (max change {logit_change:.3g}): the "
            "model is randomized or stateful; evaluate with EOT (advjax.attacks.eot)."
        )
    if black_box_accuracy is not None and white_box_accuracy is not None:
        figures["black_box_accuracy"] = black_box_accuracy
        figures["white_box_accuracy"] = white_box_accuracy
        if black_box_accuracy < white_box_accuracy - 1e-9:
            warnings.append(
                f"a black-box attack beats the white-box ones (robust accuracy "
                f"{100 * black_box_accuracy:.2f}% vs {100 * white_box_accuracy:.2f}%): "
                "a sign of gradient masking."
            )
    return figures, warnings


def curve_checks(report, black_box: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """Report-level checks on a :class:`RobustnessReport`'s curves.

    Warns when an attack's robust accuracy does not fall at all over the positive
    budgets (while above zero), when some accuracy stays above zero at a budget
    that covers the whole input range (Linf >= half of it: every image can be
    turned grey), and when a black-box attack (``black_box`` names, or names
    containing ``square``, ``hopskipjump``, ``one_pixel``) beats every white-box
    attack at some budget.

    Args:
      report: a :class:`~advjax.evaluation.RobustnessReport` (or any object with
        its ``norm``, ``epsilons``, ``attacks`` and ``worst_case``).
      black_box: names of further attacks in ``report`` to treat as black-box.

    Returns:
      ``(figures, warnings)``: ``figures["flat_curves"]`` lists the attacks whose
      curve does not fall, ``figures["black_box_wins"]`` the budgets at which a
      black-box attack beats every white-box one; ``warnings`` is a list of
      human-readable strings (empty when nothing is found).

    Example:
      >>> from advjax.evaluation import AttackResult, RobustnessReport, curve_checks
      >>> nan = float("nan")
      >>> pgd = AttackResult("pgd", [0.9, 0.8, 0.8], [0.0, 0.1, 0.1], [nan, 0.1, 0.1],
      ...                    [nan, 0.1, 0.1], 1.0)
      >>> sq = AttackResult("square", [0.9, 0.6, 0.4], [0.0, 0.3, 0.5], [nan, 0.1, 0.15],
      ...                   [nan, 0.1, 0.15], 2.0)
      >>> worst = AttackResult("worst_case", [0.9, 0.6, 0.4], [0.0, 0.3, 0.5], [nan, 0.1, 0.15],
      ...                      [nan, 0.1, 0.15], 3.0)
      >>> report = RobustnessReport("linf", [0.0, 0.1, 0.2], 10, 0.9, [pgd, sq], worst)
      >>> figures, warnings = curve_checks(report)
      >>> figures
      {'flat_curves': ['pgd'], 'black_box_wins': [0.1, 0.2]}
      >>> len(warnings)
      2
    """
    epsilons = np.asarray(report.epsilons, dtype=float)
    positive = np.flatnonzero(epsilons > 0)
    figures: dict[str, Any] = {"flat_curves": [], "black_box_wins": []}
    warnings = []
    for result in report.attacks:
        acc = np.asarray(result.robust_accuracy, dtype=float)
        if len(positive) >= 2 and acc[positive[-1]] > 0 and acc[positive[-1]] >= acc[positive[0]]:
            figures["flat_curves"].append(result.name)
            warnings.append(
                f"robust accuracy under {result.name} does not fall with epsilon "
                f"({100 * acc[positive[0]]:.2f}% at eps={epsilons[positive[0]]:g} and at "
                f"eps={epsilons[positive[-1]]:g}): the attack may be stuck on masked gradients."
            )
    if report.norm == "linf" and len(epsilons) and epsilons[-1] >= 0.5:
        worst = report.worst_case.robust_accuracy[-1]
        if worst > 0:
            warnings.append(
                f"robust accuracy is {100 * worst:.2f}% at eps={epsilons[-1]:g}, a budget that "
                "can erase any image: the attacks are not working (gradient masking?)."
            )
    names = set(black_box) | {
        r.name for r in report.attacks if any(b in r.name.lower() for b in BLACK_BOX_NAMES)
    }
    black = [r for r in report.attacks if r.name in names]
    white = [r for r in report.attacks if r.name not in names]
    if black and white:
        for i, eps in enumerate(epsilons):
            best_black = min(r.robust_accuracy[i] for r in black)
            best_white = min(r.robust_accuracy[i] for r in white)
            if best_black < best_white - 1e-9:
                figures["black_box_wins"].append(float(eps))
        if figures["black_box_wins"]:
            warnings.append(
                "a black-box attack beats every white-box attack at eps="
                + ", ".join(f"{e:g}" for e in figures["black_box_wins"])
                + ": a sign of gradient masking."
            )
    return figures, warnings
