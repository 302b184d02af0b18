"""Ensembles of logits functions, returned as one logits function attacked as a whole."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from advjax.attacks import bpda

_METHODS = ("logits", "probs", "vote")


def _weights(weights, n: int) -> jax.Array:
    if weights is None:
        return jnp.full((n,), 1.0 / n)
    w = jnp.asarray(weights, jnp.float32)
    if w.shape != (n,):
        raise ValueError(f"ensemble: expected {n} weights, got shape {tuple(w.shape)}")
    if bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError("ensemble: weights must be non-negative with a positive sum")
    return w / w.sum()


def ensemble(
    logits_fns: Sequence[Callable], *, method: str = "logits", weights=None
) -> Callable[[jax.Array], jax.Array]:
    """Combines models into one logits function.

    - ``"logits"``: weighted mean of the logits.
    - ``"probs"``: log of the weighted mean of the softmax probabilities.
    - ``"vote"``: log of the (weighted) fraction of members voting for each
      class, ties broken by the mean probabilities. Votes have no gradient, so
      the backward pass is that of ``"probs"`` (BPDA): attacking the returned
      function directly is already the adaptive attack.

    Args:
      logits_fns: deterministic members ``x -> logits[B, K]`` with the same ``K``.
      method: ``"logits"``, ``"probs"`` or ``"vote"``.
      weights: optional non-negative member weights (normalised to sum 1).

    Returns:
      ``x -> logits[B, K]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import ensemble
      >>> a, b, c = (lambda x: x), (lambda x: x), (lambda x: -x)
      >>> x = jnp.array([[1.0, 0.0]])
      >>> int(ensemble([a, b, c], method="vote")(x).argmax())
      0
    """
    if method not in _METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; expected one of {_METHODS}")
    fns = tuple(logits_fns)
    if not fns:
        raise ValueError("ensemble: pass at least one logits function")
    for f in fns:
        if not callable(f):
            raise TypeError(f"ensemble members must be callable, got {type(f).__name__}")
        if getattr(f, "randomized", False):
            raise ValueError(
                "ensemble members must be deterministic; wrap randomized ones with eot"
            )
    w = _weights(weights, len(fns))

    def stacked(x):
        return jnp.stack([f(x) for f in fns])  # [M, B, K]

    def mean_logits(x):
        return jnp.einsum("m,mbk->bk", w, stacked(x))

    def mean_log_probs(x):
        log_p = jax.nn.log_softmax(stacked(x), axis=-1)
        return jax.nn.logsumexp(log_p + jnp.log(w)[:, None, None], axis=0)

    def votes(x):
        logits = stacked(x)
        one_hot = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1])
        fraction = jnp.einsum("m,mbk->bk", w, one_hot)
        tie_break = 1e-3 * jnp.exp(mean_log_probs(x))
        return jnp.log(fraction + tie_break + 1e-6)

    if method == "logits":
        return mean_logits
    if method == "probs":
        return mean_log_probs
    return bpda(votes, mean_log_probs)


def agreement(logits_fns: Sequence[Callable], labels: jax.Array, x: jax.Array) -> jax.Array:
    """Fraction of members whose prediction on ``x`` equals ``labels`` (``[B]``).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import agreement
      >>> fns = [lambda x: x, lambda x: -x]
      >>> agreement(fns, jnp.array([0]), jnp.array([[1.0, 0.0]])).tolist()
      [0.5]
    """
    predictions = jnp.stack([jnp.argmax(f(x), axis=-1) for f in logits_fns])
    return jnp.mean(predictions == labels[None], axis=0)


def soft_agreement(logits_fns: Sequence[Callable], labels: jax.Array, x: jax.Array) -> jax.Array:
    """Differentiable surrogate of :func:`agreement`: mean member probability of ``labels``.

    Args:
      logits_fns: the members, each ``x -> logits[B, K]``.
      labels: integer labels ``[B]`` whose probability is averaged.
      x: inputs ``[B, ...]``.

    Returns:
      ``[B]``: per example, the mean over members of ``softmax(logits)[labels]``,
      in ``[0, 1]``; differentiable in ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import agreement, soft_agreement
      >>> fns = [lambda x: x, lambda x: 2 * x]
      >>> x, labels = jnp.array([[1.0, 0.0]]), jnp.array([0])
      >>> round(float(soft_agreement(fns, labels, x)[0]), 3), agreement(fns, labels, x).tolist()
      (0.806, [1.0])
      >>> jax.grad(lambda x: soft_agreement(fns, labels, x).sum())(x).shape
      (1, 2)
    """
    probs = jnp.stack([jax.nn.softmax(f(x), axis=-1) for f in logits_fns])  # [M, B, K]
    return jnp.mean(jnp.take_along_axis(probs, labels[None, :, None], axis=-1)[..., 0], axis=0)
