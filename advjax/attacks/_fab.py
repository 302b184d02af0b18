"""FAB (Croce & Hein 2020): the fast adaptive boundary attack, minimum norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._apgd import top_classes
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._minnorm import class_jacobian, within_budget
from advjax.attacks._threat import _solve_capped_linear, get_threat_model
from advjax.losses import as_labels


def hyperplane_box_step(w, c, low, high, norm_name: str):
    """Minimal-norm ``delta`` with ``w . delta = c`` and ``low <= delta <= high`` (per row).

    L2: ``delta = clip(tau * s, low, high)``; Linf: ``delta = clip(tau * sign(s), low,
    high)`` with ``s = sign(c) * w`` and ``tau`` solved exactly (sorted breakpoints).
    If the box cannot reach the hyperplane, the box corner closest to it.
    All arrays are flat ``[B, D]``; ``c`` is ``[B]``.
    """
    s = jnp.sign(c)[:, None] * w
    cap = jnp.where(s > 0, high, -low)
    rate = jnp.abs(s) if norm_name == "l2" else (s != 0).astype(s.dtype)
    tau = _solve_capped_linear(jnp.abs(s), rate, jnp.maximum(cap, 0.0), jnp.abs(c))
    direction = s if norm_name == "l2" else jnp.sign(s)
    return jnp.clip(tau[:, None] * direction, low, high)


def fab(
    eps=None,
    *,
    norm: str = "linf",
    steps: int = 100,
    num_targets: int | None = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds FAB / FAB-T, the fast adaptive boundary attack (minimum norm).

    Croce & Hein (2020), "Minimally distorted adversarial examples with a fast
    adaptive boundary attack".

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
    ``eta = 1.05``, ``beta = 0.9``, 9 targets, no random restarts.

    Args:
      eps: ``None`` for minimum norm; a budget projects the result into the ball
        and lets the loop stop once every example is broken within it.
      norm: ``"linf"`` or ``"l2"``.
      steps: iterations per target.
      num_targets: top classes to target (FAB-T), or ``None`` (untargeted FAB).
      alpha_max: the largest weight of the step from the original point.
      eta: the overshoot of the projections.
      beta: the backward step towards the original point after a success.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused).

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
    if num_targets is not None:
        num_targets = check_positive_int(num_targets, "num_targets")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    if threat.name not in ("l2", "linf"):
        raise ValueError(f"fab supports norm 'linf' or 'l2', got {norm!r}.")
    if not (0 < alpha_max <= 1 and eta >= 1 and 0 < beta <= 1):
        raise ValueError(
            f"need 0 < alpha_max <= 1, eta >= 1, 0 < beta <= 1; got {alpha_max}, {eta}, {beta}."
        )

    def attack(logits_fn, x, y, *, key):
        del key
        labels = as_labels(y)
        batch = x.shape[0]
        flat0 = x.reshape(batch, -1)
        clean_logits = logits_fn(x)
        classes = clean_logits.shape[-1]
        broken0 = jnp.argmax(clean_logits, -1) != labels
        big = jnp.full((batch,), jnp.inf)

        def boundary(x_flat, target):
            """``g = z_y - z_t`` at ``x`` and its gradient (flat), for one target or the closest."""
            if target is not None:

                def g_fn(xf):
                    logits = logits_fn(xf.reshape(x.shape))
                    pick = lambda c: jnp.take_along_axis(logits, c[:, None], 1)[:, 0]  # noqa: E731
                    g = pick(labels) - pick(target)
                    return jnp.sum(g), (g, logits)

                grad, (g, logits) = jax.grad(g_fn, has_aux=True)(x_flat)
                grad = finite_gradient(grad)
                return g, grad, logits
            logits, jac = class_jacobian(logits_fn, x_flat.reshape(x.shape))
            jac = jnp.moveaxis(jac, 0, 1).reshape(batch, classes, -1)
            own = jnp.take_along_axis(jac, labels[:, None, None], 1)
            g_all = jnp.take_along_axis(logits, labels[:, None], 1) - logits
            w_all = own - jac
            dual = (
                jnp.sum(jnp.abs(w_all), -1)
                if threat.name == "linf"
                else jnp.linalg.norm(w_all, axis=-1)
            )
            dist = jnp.where(
                jax.nn.one_hot(labels, classes, dtype=bool),
                jnp.inf,
                jnp.abs(g_all) / jnp.maximum(dual, 1e-12),
            )
            best = jnp.argmin(dist, -1)
            g = jnp.take_along_axis(g_all, best[:, None], 1)[:, 0]
            w = jnp.take_along_axis(w_all, best[:, None, None], 1)[:, 0]
            return g, w, logits

        def norm_of(delta):
            return threat.norm(delta)

        def run(best, target):
            best_x, best_norm = best

            def body(state):
                i, xk = state
                g, w, logits = boundary(xk, target)
                success = jnp.argmax(logits, -1) != labels
                dk = hyperplane_box_step(w, -g, clip_min - xk, clip_max - xk, threat.name)
                c0 = -g - jnp.sum(w * (flat0 - xk), -1)
                d0 = hyperplane_box_step(w, c0, clip_min - flat0, clip_max - flat0, threat.name)
                nk, n0 = norm_of(dk), norm_of(d0)
                a = jnp.minimum(nk / jnp.maximum(nk + n0, 1e-12), alpha_max)[:, None]
                x_next = jnp.clip(
                    (1 - a) * (xk + eta * dk) + a * (flat0 + eta * d0), clip_min, clip_max
                )
                del success
                return i + 1, x_next

            def track(carry, _):
                xk, best_x, best_norm = carry
                _, x_next = body((0, xk))
                logits = logits_fn(x_next.reshape(x.shape))
                success = jnp.argmax(logits, -1) != labels
                n = norm_of(x_next - flat0)
                better = success & (n < best_norm)
                best_x = _select(better, x_next, best_x)
                best_norm = jnp.where(better, n, best_norm)
                x_back = (1 - beta) * flat0 + beta * x_next
                xk = _select(success, x_back, x_next)
                return (xk, best_x, best_norm), None

            def cond(state):
                i, _, _, best_norm = state
                more = i < steps
                if eps is None:
                    return more
                return more & ~jnp.all(best_norm <= eps)

            def loop_body(state):
                i, xk, best_x, best_norm = state
                (xk, best_x, best_norm), _ = track((xk, best_x, best_norm), None)
                return i + 1, xk, best_x, best_norm

            _, _, best_x, best_norm = jax.lax.while_loop(
                cond, loop_body, (jnp.asarray(0), flat0, best_x, best_norm)
            )
            return best_x, best_norm

        best = (flat0, jnp.where(broken0, 0.0, big))
        if num_targets is None:
            best = run(best, None)
        else:
            count = min(num_targets, classes - 1)
            targets = top_classes(clean_logits, labels, count)

            def per_target(best, target):
                done = jnp.all(best[1] <= (jnp.inf if eps is None else eps))
                if eps is None:
                    return run(best, target), None
                return jax.lax.cond(done, lambda b: b, lambda b: run(b, target), best), None

            best, _ = jax.lax.scan(per_target, best, targets)
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
