"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016): minimal L2 / Linf perturbations.

"DeepFool: a simple and accurate method to fool deep neural networks" (CVPR
2016, arXiv:1511.04599). The per-norm step to the nearest linearised boundary
is a module-level function in ``DEEPFOOL_STEPS``, keyed by the threat model;
the distance to each boundary uses the threat model's dual norm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import guarded
from advjax.attacks._minnorm import class_jacobian, shrink_along_segment, within_budget
from advjax.attacks._threat import ThreatModel, get_threat_model, l2, linf, per_norm
from advjax.losses import as_labels


def per_class_dual(threat: ThreatModel, w: jax.Array) -> jax.Array:
    """``[B, K]``: the threat model's dual norm of each row of ``w[B, K, D]``.

    The distance from a point to the linearised boundary ``{d : w . d = f}`` in
    the threat model's norm is ``|f| / dual_norm(w)``.

    Args:
      threat: a threat model with a ``dual_norm``.
      w: ``[B, K, D]``.

    Returns:
      ``[B, K]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import l2, linf
      >>> from advjax.attacks._deepfool import per_class_dual
      >>> w = jnp.array([[[3.0, -4.0], [1.0, 0.0]]])
      >>> per_class_dual(linf, w).tolist(), per_class_dual(l2, w).tolist()
      ([[7.0, 1.0]], [[5.0, 1.0]])
    """
    batch, classes = w.shape[:2]
    return threat.dual_norm(w.reshape(batch * classes, -1)).reshape(batch, classes)


def linf_deepfool_step(f, w, dual):
    """The Linf step onto ``{d : w . d = -f}``: ``(|f| + 1e-4) / ||w||_1 * sign(w)``.

    Args:
      f: ``[B]`` the logit differences ``f_k - f_y`` at the current point.
      w: ``[B, D]`` their gradients.
      dual: ``[B]`` ``||w||_1``.

    Returns:
      ``[B, D]`` the step (Linf size ``(|f| + 1e-4) / ||w||_1``).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._deepfool import linf_deepfool_step
      >>> w = jnp.array([[1.0, -1.0]])
      >>> r = linf_deepfool_step(jnp.array([-0.4]), w, jnp.array([2.0]))
      >>> [round(v, 5) for v in r[0].tolist()], round(float((w * r).sum()), 4)
      ([0.20005, -0.20005], 0.4001)
    """
    r = (jnp.abs(f) + 1e-4)[:, None] / jnp.maximum(dual, 1e-12)[:, None]
    return r * jnp.sign(w)


def l2_deepfool_step(f, w, dual):
    """The L2 step onto ``{d : w . d = -f}``: ``(|f| + 1e-4) / ||w||_2^2 * w``.

    Args:
      f: ``[B]`` the logit differences ``f_k - f_y`` at the current point.
      w: ``[B, D]`` their gradients.
      dual: ``[B]`` ``||w||_2``.

    Returns:
      ``[B, D]`` the step (L2 size ``(|f| + 1e-4) / ||w||_2``).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._deepfool import l2_deepfool_step
      >>> r = l2_deepfool_step(jnp.array([-1.0]), jnp.array([[3.0, 4.0]]), jnp.array([5.0]))
      >>> [round(v, 4) for v in r[0].tolist()]
      [0.12, 0.16]
    """
    r = (jnp.abs(f) + 1e-4)[:, None] / jnp.maximum(dual**2, 1e-12)[:, None]
    return r * w


#: DeepFool's per-norm steps, keyed by threat model (see :func:`~advjax.attacks._threat.per_norm`).
DEEPFOOL_STEPS = {linf: linf_deepfool_step, l2: l2_deepfool_step}


def nearest_boundary(logits, jac, labels, excluded, threat: ThreatModel):
    """Per example the closest linearised boundary ``f_k - f_y`` in the threat model's norm.

    Args:
      logits: ``[B, K]``.
      jac: ``[B, K, D]`` the logits' gradients.
      labels: ``[B]`` the true classes.
      excluded: ``[B, K]`` classes not to consider (the true one at least).
      threat: its ``dual_norm`` measures the distances ``|f_k| / dual(w_k)``.

    Returns:
      ``(f [B], w [B, D], dual [B])`` of the closest boundary.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import l2
      >>> from advjax.attacks._deepfool import nearest_boundary
      >>> jac = jnp.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 10.0]]])
      >>> f, w, dual = nearest_boundary(jnp.array([[2.0, 1.0, 0.0]]), jac, jnp.array([0]),
      ...                               jax.nn.one_hot(jnp.array([0]), 3, dtype=bool), l2)
      >>> f.tolist(), w.tolist()  # class 2 is farther in logits but closer in input space
      ([-2.0], [[-1.0, 10.0]])
    """
    own_grad = jnp.take_along_axis(jac, labels[:, None, None], 1)
    own_logit = jnp.take_along_axis(logits, labels[:, None], 1)
    w = jac - own_grad  # [B, K, D]
    f = logits - own_logit  # [B, K]
    dual = per_class_dual(threat, w)
    distance = jnp.abs(f) / jnp.maximum(dual, 1e-12)
    best = jnp.argmin(jnp.where(excluded, jnp.inf, distance), -1)
    w_best = jnp.take_along_axis(w, best[:, None, None], 1)[:, 0]
    f_best = jnp.take_along_axis(f, best[:, None], 1)[:, 0]
    dual_best = jnp.take_along_axis(dual, best[:, None], 1)[:, 0]
    return f_best, w_best, dual_best


def deepfool(
    eps=None,
    *,
    norm: str | ThreatModel = "l2",
    steps: int = 50,
    overshoot: float = 0.02,
    num_classes: int | None = None,
    refine_steps: int = 0,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds DeepFool, a minimum-norm attack by iterated linearisation (L2 or Linf).

    Moosavi-Dezfooli, Fawzi & Frossard (2016), "DeepFool: a simple and accurate
    method to fool deep neural networks", arXiv:1511.04599.

    Each step linearises the logit differences ``f_k - f_y`` and moves to the
    nearest linearised boundary: ``r = (|f_k| + 1e-4) / ||w_k||_q^q * |w_k|^(q-1) sign(w_k)``
    with ``q`` the dual norm (2 for L2, 1 for Linf). The total perturbation is
    scaled by ``1 + overshoot``. Paper defaults: 50 steps, overshoot 0.02, all
    classes as candidates (``num_classes``: only the top ones by clean logits).
    The loop is a ``lax.while_loop`` with a per-example done mask. DeepFool's
    last linearised step usually crosses the boundary by more than needed;
    ``refine_steps > 0`` (not in the paper) bisects back along the segment from
    ``x`` to the result to the closest point still misclassified.

    Args:
      eps: ``None`` for the minimum-norm attack; a budget projects the result into
        the ball (for fixed-budget evaluation).
      norm: ``"l2"``, ``"linf"`` or one of those threat models (the ones in
        ``DEEPFOOL_STEPS``); sizes are measured in its norm.
      steps: maximum iterations.
      overshoot: the overshoot factor.
      num_classes: candidate classes (``None``: all).
      refine_steps: bisection steps of the final line search (0: the paper's attack).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused).

    Raises:
      ValueError: a threat model with no DeepFool step (only ``DEEPFOOL_STEPS``:
        linf and l2), ``overshoot < 0``, or a bad budget, range or count.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 1.0, 1.0 - x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.deepfool()(logits_fn, jnp.full((1, 2), 0.55), jnp.array([0]),
      ...                                   key=jax.random.key(0))
      >>> int(jnp.argmax(logits_fn(x_adv)))
      1
    """
    if eps is not None:
        check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    step_to_boundary = per_norm(DEEPFOOL_STEPS, threat, "deepfool")
    if overshoot < 0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot}.")
    refine_steps = check_positive_int(refine_steps, "refine_steps", minimum=0)

    def attack(logits_fn, x, y, *, key):
        del key
        labels = as_labels(y)
        batch = x.shape[0]
        clean_logits = logits_fn(x)
        classes = clean_logits.shape[-1]
        candidates = classes if num_classes is None else min(num_classes, classes)

        def step(state):
            i, r_total, done = state
            x_adv = jnp.clip(x + (1 + overshoot) * r_total, clip_min, clip_max)
            logits, jac = class_jacobian(logits_fn, x_adv)  # jac [K, B, ...]
            done = done | (jnp.argmax(logits, -1) != labels)
            jac = jnp.moveaxis(jac, 0, 1).reshape(batch, classes, -1)
            excluded = jax.nn.one_hot(labels, classes, dtype=bool)
            if candidates < classes:
                rank = jnp.argsort(jnp.argsort(-clean_logits, -1), -1)
                excluded = excluded | (rank >= candidates)
            f_best, w_best, dual_best = nearest_boundary(logits, jac, labels, excluded, threat)
            r = step_to_boundary(f_best, w_best, dual_best)
            r_total = r_total + jnp.where(done[:, None], 0.0, r).reshape(x.shape)
            return i + 1, r_total, done

        def cond(state):
            i, _, done = state
            return (i < steps) & ~jnp.all(done)

        done0 = jnp.argmax(clean_logits, -1) != labels
        _, r_total, _ = jax.lax.while_loop(cond, step, (0, jnp.zeros_like(x), done0))
        x_adv = jnp.clip(x + (1 + overshoot) * r_total, clip_min, clip_max)
        if refine_steps:
            x_adv = shrink_along_segment(logits_fn, x, x_adv, labels, refine_steps)
        x_adv = _select(done0, x, x_adv)
        return jax.lax.stop_gradient(within_budget(threat, x, x_adv, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="deepfool",
        eps=eps,
        norm=threat,
        clip_min=clip_min,
        clip_max=clip_max,
    )
