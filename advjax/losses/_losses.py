"""Per-example objectives of logits: ``(logits[B, K], target) -> loss[B]``.

A target is either integer labels ``[B]`` or soft targets ``[B, K]`` (rows of
probabilities), so that cross-entropy on hard labels and TRADES' KL term share
one code path. Attacks maximise these losses (untargeted) or minimise them
towards a target class (targeted).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Loss = Callable[[jax.Array, jax.Array], jax.Array]
"""A per-example objective: ``loss(logits[B, K], target) -> [B]`` (labels or probabilities)."""


def require_classes(logits: jax.Array, needed: int, loss_name: str) -> None:
    """Refuses, while tracing, logits with fewer than ``needed`` classes for ``loss_name``.

    A loss evaluated below its class count is silently constant (a negative
    index past the class axis is clamped), so an attack on it would stall.

    Args:
      logits: ``[B, K]`` unnormalised scores (only the shape is read).
      needed: the smallest class count ``K`` the loss is defined for.
      loss_name: the loss's name, for the message.

    Raises:
      ValueError: naming the loss, the class count it needs and the count it got.

    Example:
      >>> import jax.numpy as jnp
      >>> require_classes(jnp.zeros((1, 2)), 3, "dlr")
      Traceback (most recent call last):
        ...
      ValueError: the 'dlr' loss needs logits with at least 3 classes, got 2; ...
    """
    if logits.ndim < 1 or logits.shape[-1] < needed:
        got = logits.shape[-1] if logits.ndim else 0
        raise ValueError(
            f"the {loss_name!r} loss needs logits with at least {needed} classes, got {got}; "
            "use 'ce' (or 'cw' with 2 classes) for models with fewer classes."
        )


def as_probabilities(target: jax.Array, num_classes: int) -> jax.Array:
    """Returns soft targets ``[B, K]`` from integer labels ``[B]`` or rows ``[B, K]``.

    Args:
      target: integer labels ``[B]`` (made one-hot) or probability rows ``[B, K]``
        (cast to float32 as they are).
      num_classes: the class count ``K`` of the one-hot rows.

    Returns:
      Float32 probability rows ``[B, K]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import losses
      >>> losses.as_probabilities(jnp.array([2, 0]), 3).tolist()
      [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    if target.ndim == 1:
        return jax.nn.one_hot(target, num_classes, dtype=jnp.float32)
    return target.astype(jnp.float32)


def as_labels(target: jax.Array) -> jax.Array:
    """Returns integer labels ``[B]``: the labels themselves or the argmax of rows ``[B, K]``.

    Args:
      target: integer labels ``[B]`` or probability rows ``[B, K]``.

    Returns:
      Integer labels ``[B]`` (the most probable class of each row).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import losses
      >>> losses.as_labels(jnp.array([[0.1, 0.9], [0.7, 0.3]])).tolist()
      [1, 0]
    """
    if target.ndim == 1:
        return target
    return jnp.argmax(target, axis=-1)


def ce(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Cross-entropy between ``softmax(logits)`` and hard or soft targets.

    For integer labels it is computed as ``softplus(logsumexp_{k != y} z_k - z_y)``,
    the same value as ``-log softmax(z)_y``, so that value and gradient stay
    accurate when the softmax saturates: there ``1 - p_y`` is below float32's
    resolution, autodiff of ``log_softmax`` rounds the true class's gradient
    component to a multiple of ``6e-8``, and a gradient attack on a confidently
    classified point would step along rounding noise.

    Args:
      logits: ``[B, K]`` unnormalised scores.
      target: integer labels ``[B]`` or probabilities ``[B, K]``.

    Returns:
      The per-example loss ``[B]`` in nats (float32).

    Raises:
      ValueError: ``logits`` have fewer than 2 classes.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import losses
      >>> round(float(losses.ce(jnp.array([[2.0, 0.0]]), jnp.array([0]))[0]), 3)
      0.127
    """
    require_classes(logits, 2, "ce")
    logits = logits.astype(jnp.float32)
    if target.ndim == 1:
        return _hard_label_ce(logits, target)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(as_probabilities(target, logits.shape[-1]) * log_probs, axis=-1)


def _hard_label_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    is_label = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    label_logit = jnp.sum(jnp.where(is_label, logits, 0.0), axis=-1)
    others = jax.nn.logsumexp(jnp.where(is_label, -jnp.inf, logits), axis=-1)
    return jax.nn.softplus(others - label_logit)


def cw_margin(logits: jax.Array, target: jax.Array, confidence: float | None = None) -> jax.Array:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y``, capped at ``confidence``.

    Positive exactly when the example is misclassified (ties aside), so an
    untargeted attack maximises it. Carlini & Wagner (2017), "Towards Evaluating
    the Robustness of Neural Networks" (arXiv:1608.04644), objective f6.

    Args:
      logits: ``[B, K]`` unnormalised scores.
      target: integer labels ``[B]`` or soft targets (their argmax is used).
      confidence: the margin ``kappa`` beyond which the loss stops growing;
        ``None`` (the default) applies no cap.

    Returns:
      The per-example margin ``[B]``, in logit units (float32).

    Raises:
      ValueError: ``logits`` have fewer than 2 classes.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import losses
      >>> losses.cw_margin(jnp.array([[2.0, 0.5, 1.0]]), jnp.array([0]))
      Array([-1.], dtype=float32)
    """
    require_classes(logits, 2, "cw")
    logits = logits.astype(jnp.float32)
    labels = as_labels(target)
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    true_logit = jnp.sum(jnp.where(one_hot, logits, 0.0), axis=-1)
    best_other = jnp.max(jnp.where(one_hot, -jnp.inf, logits), axis=-1)
    margin = best_other - true_logit
    if confidence is not None:
        margin = jnp.minimum(margin, confidence)
    return margin


def kl(logits: jax.Array, target: jax.Array) -> jax.Array:
    """KL divergence ``KL(target || softmax(logits))`` per example.

    With ``target = softmax(clean_logits)`` this is TRADES' inner objective
    (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness
    and Accuracy", arXiv:1901.08573). Integer labels are treated as one-hot,
    which makes it equal to cross-entropy.

    Args:
      logits: ``[B, K]`` unnormalised scores of the model under attack.
      target: probability rows ``[B, K]`` (e.g. the clean softmax) or integer
        labels ``[B]``.

    Returns:
      The per-example divergence ``[B]`` in nats (float32, ``>= 0``).

    Raises:
      ValueError: ``logits`` have fewer than 2 classes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import losses
      >>> p = jax.nn.softmax(jnp.array([[1.0, 2.0]]))
      >>> abs(float(losses.kl(jnp.array([[1.0, 2.0]]), p)[0])) < 1e-6
      True
    """
    require_classes(logits, 2, "kl")
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    p = as_probabilities(target, logits.shape[-1])
    return jnp.sum(jax.scipy.special.xlogy(p, p) - p * log_probs, axis=-1)


def dlr(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Difference-of-logits-ratio loss of Croce & Hein (2020), untargeted.

    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)`` with ``pi`` the logits sorted
    in decreasing order: invariant to shift and scale of the logits. Croce &
    Hein (2020), "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks" (arXiv:2003.01690).

    Args:
      logits: ``[B, K]`` unnormalised scores, ``K >= 3``.
      target: integer labels ``[B]`` or soft targets (their argmax is used).

    Returns:
      The per-example loss ``[B]`` (float32, unitless); positive exactly when
      the example is misclassified.

    Raises:
      ValueError: ``logits`` have fewer than 3 classes.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import losses
      >>> round(float(losses.dlr(jnp.array([[3.0, 1.0, 0.0]]), jnp.array([0]))[0]), 3)
      -0.667
    """
    require_classes(logits, 3, "dlr")
    logits = logits.astype(jnp.float32)
    sorted_logits = jnp.sort(logits, axis=-1)
    scale = sorted_logits[:, -1] - sorted_logits[:, -3] + 1e-12
    return cw_margin(logits, target) / scale


def dlr_targeted(logits: jax.Array, labels: jax.Array, target: jax.Array) -> jax.Array:
    """Targeted difference-of-logits-ratio loss of Croce & Hein (2020), to be maximised.

    ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)``: positive once the target
    logit ``z_t`` exceeds the true one ``z_y``. Needs at least 4 classes.
    Croce & Hein (2020), arXiv:2003.01690.

    Args:
      logits: ``[B, K]`` unnormalised scores, ``K >= 4``.
      labels: the true classes, integer ``[B]`` or rows ``[B, K]`` (argmax used).
      target: the target classes, integer ``[B]`` or rows ``[B, K]`` (argmax used).

    Returns:
      The per-example loss ``[B]`` (float32, unitless).

    Raises:
      ValueError: ``logits`` have fewer than 4 classes.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import losses
      >>> z = jnp.array([[3.0, 1.0, 0.0, -1.0]])
      >>> round(float(losses.dlr_targeted(z, jnp.array([0]), jnp.array([1]))[0]), 3)
      -0.571
    """
    require_classes(logits, 4, "dlr_targeted")
    logits = logits.astype(jnp.float32)
    sorted_logits = jnp.sort(logits, axis=-1)
    scale = sorted_logits[:, -1] - 0.5 * (sorted_logits[:, -3] + sorted_logits[:, -4]) + 1e-12
    true_logit = jnp.take_along_axis(logits, as_labels(labels)[:, None], -1)[:, 0]
    target_logit = jnp.take_along_axis(logits, as_labels(target)[:, None], -1)[:, 0]
    return (target_logit - true_logit) / scale


_LOSSES = {"ce": ce, "cw": cw_margin, "cw_margin": cw_margin, "kl": kl, "dlr": dlr}


def get_loss(loss: str | Loss) -> Loss:
    """Resolves a loss given by name (``ce``, ``cw``, ``kl``, ``dlr``) or as a callable.

    Args:
      loss: a name (``"ce"``, ``"cw"`` / ``"cw_margin"``, ``"kl"``, ``"dlr"``) or
        a callable ``(logits[B, K], target) -> loss[B]``, returned as it is.

    Returns:
      The loss function ``(logits[B, K], target) -> loss[B]``.

    Raises:
      ValueError: ``loss`` is neither a known name nor callable.

    Example:
      >>> from advjax import losses
      >>> losses.get_loss("ce") is losses.ce
      True
      >>> losses.get_loss("hinge")
      Traceback (most recent call last):
        ...
      ValueError: unknown loss 'hinge'; choose one of ['ce', 'cw', 'cw_margin', 'dlr', 'kl'] ...
    """
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in _LOSSES:
        return _LOSSES[loss]
    raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(_LOSSES)} or pass a callable.")
