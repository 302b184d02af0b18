"""Output sanitisation: a model that answers a label or abstains (``-1``).

A :class:`Guarded` model abstains when any calibrated detector flags the
input, when its top softmax probability is below ``min_confidence``, or when
fewer than ``min_agreement`` of the ensemble ``members`` agree with its
prediction. An adversarial example only counts as a success against it if the
guard answers, and answers wrong.

:meth:`Guarded.attack_logits` is the objective of the adaptive attack on the
whole system (Carlini & Wagner 2017, "Adversarial Examples Are Not Easily
Detected"): logits in which the true class's score is raised above every other
class whenever the guard would abstain, so that "misclassified" in these
logits means "misclassified *and* not rejected", and the gradient of any
attack loss trades off misclassification against the detectors' margins
(BPDA through non-differentiable squeezers, soft agreement for votes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from advjax.defenses._detectors import Detector
from advjax.defenses._ensemble import agreement, soft_agreement

ABSTAIN = -1
"""The label a guarded classifier gives where it abstains (rejects the input)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Guarded:
    """A classifier with rejection.

    Attributes:
      logits_fn: the classifier ``x -> logits`` (or ``(x, key)`` if randomized,
        e.g. a randomized :class:`~advjax.defenses.DefendedLogits`).
      detectors: calibrated detectors; any flag makes the model abstain.
      min_confidence: abstain when the top softmax probability is below it.
      members: ensemble members whose agreement is checked.
      min_agreement: abstain when the fraction of members agreeing with the
        prediction is below it.
      sharpness: how steeply the adaptive objective rewards staying below the
        detectors' thresholds (per unit of normalised margin).

    :func:`guard` builds one with its arguments checked. ``predict(x, key=None)``
    gives labels ``[B]`` with ``-1`` (``ABSTAIN``) where it abstains,
    ``abstains(x, key=None)`` gives ``bool[B]``, and ``attack_logits(y)`` the
    adaptive attack target ``x -> logits[B, K]`` (see the module docstring).

    Raises:
      ValueError: from ``predict``/``abstains`` when a detector is not calibrated
        (:func:`guard` refuses such detectors up front).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import Guarded
      >>> g = Guarded(lambda x: x, min_confidence=0.9)
      >>> x = jnp.array([[5.0, 0.0], [0.1, 0.0]])
      >>> g.predict(x).tolist(), g.abstains(x).tolist()
      ([0, -1], [False, True])
      >>> g.attack_logits(jnp.array([0, 0]))(x).argmax(-1).tolist()   # abstaining is no success
      [0, 0]
    """

    logits_fn: Callable
    detectors: tuple[Detector, ...] = ()
    min_confidence: float | None = None
    members: tuple[Callable, ...] = ()
    min_agreement: float | None = None
    sharpness: float = 10.0

    @property
    def randomized(self) -> bool:
        return bool(getattr(self.logits_fn, "randomized", False))

    def _logits(self, fn, x, key):
        return fn(x, key) if self.randomized else fn(x)

    def _abstain_from(self, x, logits):
        labels = jnp.argmax(logits, axis=-1)
        abstain = jnp.zeros(x.shape[0], bool)
        for det in self.detectors:
            abstain = abstain | det.flags(x)
        if self.min_confidence is not None:
            confidence = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
            abstain = abstain | (confidence < self.min_confidence)
        if self.min_agreement is not None:
            abstain = abstain | (agreement(self.members, labels, x) < self.min_agreement)
        return labels, abstain

    def abstains(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """``bool[B]``: where the model refuses to answer."""
        return self._abstain_from(x, self._logits(self.logits_fn, x, key))[1]

    def predict(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Predicted labels ``[B]``, with ``-1`` where the model abstains."""
        labels, abstain = self._abstain_from(x, self._logits(self.logits_fn, x, key))
        return jnp.where(abstain, ABSTAIN, labels)

    def rejection_margin(self, x: jax.Array, logits: jax.Array) -> jax.Array:
        """Differentiable ``[B]`` margin, positive where the model would abstain."""
        margins = [det.margin(x, adaptive=True) for det in self.detectors]
        if self.min_confidence is not None:
            confidence = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
            margins.append((self.min_confidence - confidence) / 0.05)
        if self.min_agreement is not None:
            labels = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1))
            margins.append((self.min_agreement - soft_agreement(self.members, labels, x)) / 0.1)
        if not margins:
            return jnp.full(x.shape[0], -jnp.inf, logits.dtype)
        return jnp.max(jnp.stack(margins), axis=0)

    def attack_logits(self, y: jax.Array) -> Callable:
        """The adaptive attack target for labels ``y``: ``x -> logits`` (or ``(x, key)``).

        The true class's logit becomes ``logaddexp(z_y, max_k z_k + sharpness * m(x))``
        with ``m`` the :meth:`rejection_margin`: above every other logit when the
        guard would abstain, essentially ``z_y`` when it would answer.
        """
        fn = self.logits_fn.adaptive() if hasattr(self.logits_fn, "adaptive") else self.logits_fn
        y = jnp.asarray(y)

        def joint(x, key=None):
            logits = self._logits(fn, x, key)
            margin = self.rejection_margin(x, logits)
            z_y = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
            top = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
            raised = jnp.logaddexp(z_y, top + self.sharpness * margin)
            return (
                logits
                + jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype) * (raised - z_y)[:, None]
            )

        if self.randomized:
            return joint
        return lambda x: joint(x)


def guard(
    logits_fn: Callable,
    *,
    detectors: Sequence[Detector] = (),
    min_confidence: float | None = None,
    members: Sequence[Callable] = (),
    min_agreement: float | None = None,
    sharpness: float = 10.0,
) -> Guarded:
    """Wraps a classifier so that it abstains (``-1``) on suspicious inputs.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import guard
      >>> g = guard(lambda x: x, min_confidence=0.9)
      >>> g.predict(jnp.array([[5.0, 0.0], [0.1, 0.0]])).tolist()
      [0, -1]
    """
    if not callable(logits_fn):
        raise TypeError(f"guard: logits_fn must be callable, got {type(logits_fn).__name__}")
    detectors = tuple(detectors)
    for det in detectors:
        if not isinstance(det, Detector):
            raise TypeError(f"guard: detectors must be Detector objects, got {type(det).__name__}")
        if det.threshold is None:
            raise ValueError(f"guard: detector {det.name!r} is not calibrated; call calibrate(...)")
    if min_confidence is not None and not 0 < min_confidence <= 1:
        raise ValueError(f"guard: min_confidence must be in (0, 1], got {min_confidence!r}")
    members = tuple(members)
    if min_agreement is not None:
        if not 0 < min_agreement <= 1:
            raise ValueError(f"guard: min_agreement must be in (0, 1], got {min_agreement!r}")
        if not members:
            raise ValueError("guard: min_agreement needs ensemble members")
    if not sharpness > 0:
        raise ValueError(f"guard: sharpness must be > 0, got {sharpness!r}")
    return Guarded(logits_fn, detectors, min_confidence, members, min_agreement, float(sharpness))
