"""FAB (Croce & Hein 2020): the fast adaptive boundary attack, minimum norm.

"Minimally distorted adversarial examples with a fast adaptive boundary
attack" (ICML 2020, arXiv:1907.02044). The per-norm projection onto a
hyperplane intersected with the box is a module-level function in
``FAB_STEPS``, keyed by the threat model; one FAB iteration is
:func:`fab_step` and the bookkeeping after it :func:`fab_keep_best`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._apgd import top_classes
from advjax.attacks._core import Attack, _select
from advjax.attacks._deepfool import per_class_dual
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._minnorm import class_jacobian, within_budget
from advjax.attacks._threat import (
    ThreatModel,
    _solve_capped_linear,
    get_threat_model,
    l2,
    linf,
    per_norm,
)
from advjax.losses import as_labels


def _hyperplane_box(w, c, low, high, rate_of, direction_of):
    s = jnp.sign(c)[:, None] * w
    cap = jnp.where(s > 0, high, -low)
    tau = _solve_capped_linear(jnp.abs(s), rate_of(s), jnp.maximum(cap, 0.0), jnp.abs(c))
    return jnp.clip(tau[:, None] * direction_of(s), low, high)


def linf_hyperplane_step(w, c, low, high):
    """Minimal-Linf ``delta`` with ``w . delta = c`` and ``low <= delta <= high`` (per row).

    ``delta = clip(tau * sign(s), low, high)`` with ``s = sign(c) * w`` and ``tau``
    solved exactly (sorted breakpoints); if the box cannot reach the
    hyperplane, the box corner closest to it.

    Args:
      w: ``[B, D]`` the hyperplanes' normals.
      c: ``[B]`` their offsets.
      low: ``[B, D]`` lower box bounds on ``delta`` (``<= 0``).
      high: ``[B, D]`` upper box bounds on ``delta`` (``>= 0``).

    Returns:
      ``[B, D]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._fab import linf_hyperplane_step
      >>> w, low, high = jnp.array([[1.0, 2.0]]), jnp.full((1, 2), -1.0), jnp.array([[0.1, 1.0]])
      >>> d = linf_hyperplane_step(w, jnp.array([0.6]), low, high)
      >>> [round(v, 4) for v in d[0].tolist()]  # the first coordinate is capped at 0.1
      [0.1, 0.25]
    """
    return _hyperplane_box(w, c, low, high, lambda s: (s != 0).astype(s.dtype), jnp.sign)


def l2_hyperplane_step(w, c, low, high):
    """Minimal-L2 ``delta`` with ``w . delta = c`` and ``low <= delta <= high`` (per row).

    ``delta = clip(tau * s, low, high)`` with ``s = sign(c) * w`` and ``tau``
    solved exactly; if the box cannot reach the hyperplane, the box corner
    closest to it.

    Args:
      w: ``[B, D]`` the hyperplanes' normals.
      c: ``[B]`` their offsets.
      low: ``[B, D]`` lower box bounds on ``delta`` (``<= 0``).
      high: ``[B, D]`` upper box bounds on ``delta`` (``>= 0``).

    Returns:
      ``[B, D]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._fab import l2_hyperplane_step
      >>> d = l2_hyperplane_step(jnp.array([[3.0, 4.0]]), jnp.array([5.0]),
      ...                        jnp.full((1, 2), -1.0), jnp.full((1, 2), 1.0))
      >>> [round(v, 4) for v in d[0].tolist()]  # the orthogonal projection
      [0.6, 0.8]
    """
    return _hyperplane_box(w, c, low, high, jnp.abs, lambda s: s)


#: FAB's per-norm hyperplane ∩ box projections, keyed by threat model (see
#: :func:`~advjax.attacks._threat.per_norm`).
FAB_STEPS = {linf: linf_hyperplane_step, l2: l2_hyperplane_step}

#: The authors' default budgets (fab_base.py), used for the restarts' radius in minimum-norm runs.
FAB_DEFAULT_EPS = {linf: 0.3, l2: 1.0}


def hyperplane_box_step(w, c, low, high, threat: ThreatModel):
    """Minimal-norm ``delta`` with ``w . delta = c`` inside the box, in ``threat``'s norm.

    Dispatches through ``FAB_STEPS`` (:func:`linf_hyperplane_step`,
    :func:`l2_hyperplane_step`).

    Args:
      w: ``[B, D]`` the hyperplanes' normals.
      c: ``[B]`` their offsets.
      low: ``[B, D]`` lower box bounds on ``delta``.
      high: ``[B, D]`` upper box bounds on ``delta``.
      threat: the threat model whose norm is minimised.

    Returns:
      ``[B, D]``.

    Raises:
      ValueError: ``threat`` has no entry in ``FAB_STEPS``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import l2
      >>> from advjax.attacks._fab import hyperplane_box_step
      >>> d = hyperplane_box_step(jnp.array([[0.0, 2.0]]), jnp.array([1.0]),
      ...                         jnp.full((1, 2), -1.0), jnp.full((1, 2), 1.0), l2)
      >>> d.tolist()
      [[0.0, 0.5]]
    """
    return per_norm(FAB_STEPS, threat, "fab")(w, c, low, high)


def fab_step(
    w, g, xk, x0, *, hyperplane_step: Callable, norm: Callable, alpha_max, eta, clip_min, clip_max
):
    """One FAB iteration from ``xk`` for the linearised boundary ``g + w . (x - xk) = 0``.

    Projects both ``xk`` and the original ``x0`` onto the boundary (within the
    box) and moves to ``(1 - a)(xk + eta dk) + a (x0 + eta d0)`` with
    ``a = min(|dk| / (|dk| + |d0|), alpha_max)``, clipped to the range.

    Args:
      w: ``[B, D]`` the gradient of ``g`` at ``xk``.
      g: ``[B]`` ``z_y - z_t`` at ``xk``.
      xk: ``[B, D]`` the current iterate.
      x0: ``[B, D]`` the original points.
      hyperplane_step: the norm's ``(w, c, low, high) -> delta`` (``FAB_STEPS``).
      norm: ``[B, D] -> [B]`` the threat model's norm.
      alpha_max: the largest weight of the step from the original point.
      eta: the overshoot.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``[B, D]`` the next iterate.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import l2
      >>> from advjax.attacks._fab import fab_step, l2_hyperplane_step
      >>> x0 = jnp.array([[0.2, 0.2]])
      >>> # boundary 0.8 - x_1 - x_2 = 0: from x0, the closest point on it is (0.4, 0.4)
      >>> x1 = fab_step(jnp.array([[-1.0, -1.0]]), jnp.array([0.4]), x0, x0,
      ...               hyperplane_step=l2_hyperplane_step, norm=l2.norm, alpha_max=0.1,
      ...               eta=1.0, clip_min=0.0, clip_max=1.0)
      >>> [round(v, 4) for v in x1[0].tolist()]
      [0.4, 0.4]
    """
    dk = hyperplane_step(w, -g, clip_min - xk, clip_max - xk)
    c0 = -g - jnp.sum(w * (x0 - xk), -1)
    d0 = hyperplane_step(w, c0, clip_min - x0, clip_max - x0)
    nk, n0 = norm(dk), norm(d0)
    a = jnp.minimum(nk / jnp.maximum(nk + n0, 1e-12), alpha_max)[:, None]
    return jnp.clip((1 - a) * (xk + eta * dk) + a * (x0 + eta * d0), clip_min, clip_max)


class FABState(NamedTuple):
    """FAB's loop carry (flat ``[B, D]`` points).

    Attributes:
      i: the iteration.
      xk: the current iterate.
      best_x: per example the smallest successful point so far (``x0`` if none).
      best_norm: ``[B]`` its norm (``inf`` if none, ``0`` if clean-misclassified).

    Example:
      >>> from advjax.attacks._fab import FABState
      >>> FABState._fields
      ('i', 'xk', 'best_x', 'best_norm')
    """

    i: jax.Array
    xk: jax.Array
    best_x: jax.Array
    best_norm: jax.Array


def fab_keep_best(state: FABState, x_next, success, size, x0, beta) -> FABState:
    """Records ``x_next`` where it succeeds with a smaller norm, then steps back after a success.

    After a success the next iterate is ``(1 - beta) x0 + beta x_next`` (back
    towards the original point); otherwise ``x_next``.

    Args:
      state: the carry.
      x_next: ``[B, D]`` the new iterate (from :func:`fab_step`).
      success: ``[B]`` whether it is misclassified.
      size: ``[B]`` its perturbation's norm.
      x0: ``[B, D]`` the original points.
      beta: the backward step.

    Returns:
      The next carry.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._fab import FABState, fab_keep_best
      >>> state = FABState(jnp.asarray(0), jnp.zeros((2, 1)), jnp.zeros((2, 1)),
      ...                  jnp.array([jnp.inf, 0.1]))
      >>> new = fab_keep_best(state, jnp.ones((2, 1)), jnp.array([True, True]),
      ...                     jnp.array([1.0, 1.0]), jnp.zeros((2, 1)), 0.9)
      >>> new.best_norm.tolist(), [round(v, 4) for v in new.xk.ravel().tolist()]
      ([1.0, 0.10000000149011612], [0.9, 0.9])
    """
    better = success & (size < state.best_norm)
    x_back = (1 - beta) * x0 + beta * x_next
    return FABState(
        i=state.i + 1,
        xk=_select(success, x_back, x_next),
        best_x=_select(better, x_next, state.best_x),
        best_norm=jnp.where(better, size, state.best_norm),
    )


def closest_boundary(logits, jac, labels, threat: ThreatModel):
    """Untargeted FAB: per example ``g = z_y - z_k`` and its gradient for the closest class.

    Args:
      logits: ``[B, K]``.
      jac: ``[B, K, D]`` the logits' gradients.
      labels: ``[B]`` the true classes.
      threat: its ``dual_norm`` ranks the linearised distances ``|g_k| / dual(w_k)``.

    Returns:
      ``(g [B], w [B, D])``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._fab import closest_boundary
      >>> jac = jnp.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 10.0]]])
      >>> g, w = closest_boundary(jnp.array([[2.0, 1.0, 0.0]]), jac, jnp.array([0]), linf)
      >>> g.tolist(), w.tolist()
      ([2.0], [[1.0, -10.0]])
    """
    classes = logits.shape[-1]
    own = jnp.take_along_axis(jac, labels[:, None, None], 1)
    g_all = jnp.take_along_axis(logits, labels[:, None], 1) - logits
    w_all = own - jac
    dual = per_class_dual(threat, w_all)
    dist = jnp.where(
        jax.nn.one_hot(labels, classes, dtype=bool),
        jnp.inf,
        jnp.abs(g_all) / jnp.maximum(dual, 1e-12),
    )
    best = jnp.argmin(dist, -1)
    g = jnp.take_along_axis(g_all, best[:, None], 1)[:, 0]
    w = jnp.take_along_axis(w_all, best[:, None, None], 1)[:, 0]
    return g, w


def fab_random_start(key, x0, radius, threat: ThreatModel, clip_min, clip_max):
    """A restart's start: ``x0`` plus a random direction of norm ``radius``, clipped to the box.

    The direction is a draw of ``threat.random_init`` scaled to unit norm (for
    Linf a uniform vector divided by its largest entry, as in the authors' code).

    Args:
      key: the draw's key.
      x0: ``[B, D]`` the (flattened) clean inputs.
      radius: ``[B]`` the distance of the start in the threat model's norm.
      threat: the threat model.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``[B, D]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._fab import fab_random_start
      >>> x0 = jnp.full((2, 4), 0.5)
      >>> start = fab_random_start(jax.random.key(0), x0, jnp.array([0.1, 0.2]), linf, 0, 1)
      >>> [round(v, 4) for v in jnp.abs(start - x0).max(-1).tolist()]
      [0.1, 0.2]
    """
    direction = threat.random_init(key, x0.shape, 1.0)
    direction = direction / jnp.maximum(threat.norm(direction), 1e-12)[:, None]
    return jnp.clip(x0 + radius[:, None] * direction, clip_min, clip_max)


def fab(
    eps=None,
    *,
    norm: str | ThreatModel = "linf",
    steps: int = 100,
    num_targets: int | None = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    restarts: int = 1,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds FAB / FAB-T, the fast adaptive boundary attack (minimum norm).

    Croce & Hein (2020), "Minimally distorted adversarial examples with a fast
    adaptive boundary attack" (ICML 2020, arXiv:1907.02044).

    Each step linearises the boundary between the true class and a target,
    projects both the current iterate and the original point onto it (exact
    projection onto the hyperplane intersected with the box), and moves to
    ``(1 - a)(x_k + eta d_k) + a (x_0 + eta d_0)`` with ``a = min(|d_k| / (|d_k| +
    |d_0|), alpha_max)``; after a success it steps back towards the original,
    ``x <- (1 - beta) x_0 + beta x``. Each example keeps its smallest successful
    perturbation. With ``num_targets`` (FAB-T, as in AutoAttack) the targets are
    the top classes of the clean logits, run one after the other in a
    ``lax.scan``; ``None`` is the untargeted FAB (closest linearised boundary
    each step). Paper / AutoAttack defaults: 100 steps, ``alpha_max = 0.1``,
    ``eta = 1.05``, ``beta = 0.9``, 9 targets, one run (AutoAttack's standard
    version; its "plus" version runs 5 restarts of untargeted FAB). Restart
    ``r > 0`` (per target with FAB-T) starts, as in the authors' code, from a
    random point at distance ``min(best, eps) / 2`` from ``x`` in the threat
    model's norm (``best``: the smallest perturbation found so far; ``eps``:
    the budget, or the authors' default 0.3 Linf / 1.0 L2 for minimum norm),
    clipped to the box; each example keeps its smallest success over all runs.

    Args:
      eps: ``None`` for minimum norm; a budget projects the result into the ball
        and lets the loop stop once every example is broken within it.
      norm: ``"linf"``, ``"l2"`` or one of those threat models (the ones in
        ``FAB_STEPS``); perturbation sizes are measured in its norm.
      steps: iterations per target.
      num_targets: top classes to target (FAB-T), or ``None`` (untargeted FAB).
      alpha_max: the largest weight of the step from the original point.
      eta: the overshoot of the projections.
      beta: the backward step towards the original point after a success.
      restarts: runs per target; every run after the first starts at random.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key draws the restarts'
      starts), ``x`` of any shape ``[B, ...]``.

    Raises:
      ValueError: a threat model with no FAB step, ``alpha_max``, ``eta`` or
        ``beta`` out of range, or a bad budget, range or step count.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (3, 5))
      >>> logits_fn = lambda x: x @ w
      >>> x = jnp.full((2, 3), 0.5)
      >>> advjax.attacks.fab(steps=10, num_targets=2)(logits_fn, x, jnp.array([0, 1]),
      ...                                             key=jax.random.key(0)).shape
      (2, 3)
    """
    if eps is not None:
        check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    if num_targets is not None:
        num_targets = check_positive_int(num_targets, "num_targets")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    hyperplane_step = per_norm(FAB_STEPS, threat, "fab")
    if not (0 < alpha_max <= 1 and eta >= 1 and 0 < beta <= 1):
        raise ValueError(
            f"need 0 < alpha_max <= 1, eta >= 1, 0 < beta <= 1; got {alpha_max}, {eta}, {beta}."
        )

    start_radius = FAB_DEFAULT_EPS.get(threat, 1.0) if eps is None else eps

    def attack(logits_fn, x, y, *, key):
        labels = as_labels(y)
        batch = x.shape[0]
        flat0 = x.reshape(batch, -1)
        clean_logits = logits_fn(x)
        classes = clean_logits.shape[-1]
        broken0 = jnp.argmax(clean_logits, -1) != labels

        def boundary(x_flat, target):
            """``g = z_y - z_t`` at ``x`` and its gradient (flat), for one target or the closest."""
            if target is not None:

                def g_fn(xf):
                    logits = logits_fn(xf.reshape(x.shape))
                    pick = lambda c: jnp.take_along_axis(logits, c[:, None], 1)[:, 0]  # noqa: E731
                    g = pick(labels) - pick(target)
                    return jnp.sum(g), g

                grad, g = jax.grad(g_fn, has_aux=True)(x_flat)
                return g, finite_gradient(grad)
            logits, jac = class_jacobian(logits_fn, x_flat.reshape(x.shape))
            jac = jnp.moveaxis(jac, 0, 1).reshape(batch, classes, -1)
            return closest_boundary(logits, jac, labels, threat)

        def run_from(best, target, start):
            def cond(state: FABState):
                more = state.i < steps
                if eps is None:
                    return more
                return more & ~jnp.all(state.best_norm <= eps)

            def body(state: FABState):
                g, w = boundary(state.xk, target)
                x_next = fab_step(
                    w,
                    g,
                    state.xk,
                    flat0,
                    hyperplane_step=hyperplane_step,
                    norm=threat.norm,
                    alpha_max=alpha_max,
                    eta=eta,
                    clip_min=clip_min,
                    clip_max=clip_max,
                )
                logits = logits_fn(x_next.reshape(x.shape))
                success = jnp.argmax(logits, -1) != labels
                size = threat.norm(x_next - flat0)
                return fab_keep_best(state, x_next, success, size, flat0, beta)

            state = FABState(jnp.asarray(0), start, *best)
            state = jax.lax.while_loop(cond, body, state)
            return state.best_x, state.best_norm

        def run(best, target, run_key):
            """One run from ``x`` (``run_key`` None) or from a random start."""
            if run_key is None:
                return run_from(best, target, flat0)
            radius = 0.5 * jnp.minimum(best[1], start_radius)
            start = fab_random_start(run_key, flat0, radius, threat, clip_min, clip_max)
            return run_from(best, target, start)

        def runs(best, target, target_key):
            for r in range(restarts):
                best = run(best, target, None if r == 0 else jax.random.fold_in(target_key, r))
            return best

        best = (flat0, jnp.where(broken0, 0.0, jnp.full((batch,), jnp.inf)))
        if num_targets is None:
            best = runs(best, None, key)
        else:
            count = min(num_targets, classes - 1)
            targets = top_classes(clean_logits, labels, count)
            target_keys = jax.random.split(key, count)

            def per_target(best, inputs):
                target, target_key = inputs
                if eps is None:
                    return runs(best, target, target_key), None
                done = jnp.all(best[1] <= eps)
                return jax.lax.cond(
                    done, lambda b: b, lambda b: runs(b, target, target_key), best
                ), None

            best, _ = jax.lax.scan(per_target, best, (targets, target_keys))
        x_adv = best[0].reshape(x.shape)
        return jax.lax.stop_gradient(within_budget(threat, x, x_adv, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="fab" if num_targets is None else f"fab (FAB-T, num_targets={num_targets})",
        eps=eps,
        norm=threat,
        clip_min=clip_min,
        clip_max=clip_max,
        min_classes=2 if num_targets is None else num_targets + 1,
    )
