"""Adaptive-attack transforms: BPDA for non-differentiable steps, EOT for randomness.

Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False Sense of
Security" (arXiv:1802.00420): a defense that shatters gradients (a non-differentiable or
numerically unstable preprocessing step) is attacked with the *Backward Pass
Differentiable Approximation* -- the forward pass runs the real step, the
backward pass differentiates a smooth approximation of it (often the identity);
a randomized defense is attacked with *Expectation over Transformation* --
the attacker ascends the loss of the model averaged over the randomness.

- :func:`bpda` is a function transform built on ``jax.custom_vjp``.
- :func:`eot_logits` turns a randomized logits function ``(x, key) -> logits``
  into one averaged over ``n`` vmapped draws.
- :func:`eot` wraps any attack so that it can be pointed at a randomized
  logits function: each call of the logits function inside the attack's compiled
  loop draws ``n`` fresh samples.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax._checks import check_positive_int
from advjax.attacks._core import Attack

RandomizedLogitsFn = Callable[[jax.Array, jax.Array], jax.Array]

_AVERAGES = ("logits", "probs")


def _identity(x, *args):
    del args
    return x


def bpda(preprocess: Callable, approx: Callable | None = None) -> Callable:
    """Backward Pass Differentiable Approximation of a preprocessing step.

    The returned function computes ``preprocess(x, *args)`` in the forward pass
    and, in the backward pass, the vector-Jacobian product of
    ``approx(x, *args)`` at the same ``x`` (the identity by default, i.e. a
    straight-through estimator). Extra positional arguments (a PRNG key, say)
    receive no gradient.

    Args:
      preprocess: ``(x, *args) -> x'``, possibly non-differentiable (rounding,
        median filtering, JPEG).
      approx: a differentiable ``(x, *args) -> x'`` approximating
        ``preprocess``; ``None`` is the identity.

    Returns:
      ``(x, *args) -> preprocess(x, *args)`` whose gradient is ``approx``'s.

    Raises:
      TypeError: ``preprocess`` or ``approx`` is not callable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import bpda
      >>> rounded = bpda(jnp.round)
      >>> float(rounded(jnp.array(0.4))), float(jax.grad(rounded)(jnp.array(0.4)))
      (0.0, 1.0)
    """
    if not callable(preprocess):
        raise TypeError(f"bpda: preprocess must be callable, got {type(preprocess).__name__}")
    if approx is None:
        approx = _identity
    elif not callable(approx):
        raise TypeError(f"bpda: approx must be callable or None, got {type(approx).__name__}")

    @jax.custom_vjp
    def wrapped(x, *args):
        return preprocess(x, *args)

    def forward(x, *args):
        return preprocess(x, *args), (x, args)

    def backward(residuals, cotangent):
        x, args = residuals
        _, vjp = jax.vjp(lambda x_: approx(x_, *args), x)
        (grad_x,) = vjp(cotangent)
        return (grad_x, *(None for _ in args))

    wrapped.defvjp(forward, backward)
    return wrapped


def _check_average(average: str) -> str:
    if average not in _AVERAGES:
        raise ValueError(f"unknown EOT average {average!r}; expected one of {_AVERAGES}")
    return average


def eot_logits(
    randomized_logits_fn: RandomizedLogitsFn, n: int, *, average: str = "probs"
) -> RandomizedLogitsFn:
    """Expectation over Transformation of a randomized logits function.

    Draws ``n`` keys from ``key`` and evaluates ``randomized_logits_fn`` on
    each with ``vmap``; returns the mean logits (``average="logits"``) or the
    log of the mean softmax probabilities (``average="probs"``, the expected
    classifier of Athalye et al. 2018), so the gradient of any loss of the
    result is the average over the draws.

    Args:
      randomized_logits_fn: ``(x, key) -> logits[B, K]``.
      n: number of draws per call.
      average: ``"probs"`` or ``"logits"``.

    Returns:
      ``(x, key) -> logits[B, K]``.

    Raises:
      ValueError: ``n < 1`` or an unknown ``average``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import eot_logits
      >>> noisy = lambda x, key: x + jax.random.normal(key, x.shape)
      >>> mean = eot_logits(noisy, 4000, average="logits")
      >>> bool(jnp.abs(mean(jnp.zeros((1, 3)), jax.random.key(0))).max() < 0.1)
      True
    """
    n = check_positive_int(n, "n")
    average = _check_average(average)

    def averaged(x, key):
        keys = jax.random.split(key, n)
        logits = jax.vmap(lambda k: randomized_logits_fn(x, k))(keys)
        if average == "logits":
            return jnp.mean(logits, axis=0)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(n)

    return averaged


def _point_key(key: jax.Array, x: jax.Array) -> jax.Array:
    """A key that changes with the point ``x``: fresh draws at every iterate of an attack."""
    x = jax.lax.stop_gradient(x).astype(jnp.float32).reshape(-1)
    weights = jnp.sin(jnp.arange(x.shape[0], dtype=jnp.float32) * 12.9898 + 78.233)
    fingerprint = jax.lax.bitcast_convert_type(jnp.sum(x * weights), jnp.uint32)
    return jax.random.fold_in(key, fingerprint)


def eot(attack: Attack, n: int, *, average: str = "probs", resample: bool = True) -> Attack:
    """Points an attack at a randomized model with Expectation over Transformation.

    The returned attack takes a randomized logits function ``(x, key) ->
    logits`` and runs ``attack`` on the deterministic function
    ``x -> eot_logits(fn, n)(x, k(x))``. With ``resample=True`` the key ``k(x)``
    is folded with a fingerprint of the queried point, so every iterate of the
    attack's compiled loop sees ``n`` fresh draws (the gradient estimate is
    unbiased across steps); with ``resample=False`` the same ``n`` draws are
    used throughout (common random numbers). Either way the attack stays one
    compiled loop and its restarts, keep-best logic and loss are unchanged.

    Args:
      attack: any ``attack(logits_fn, x, y, *, key) -> x_adv``.
      n: draws averaged per query.
      average: ``"probs"`` (default) or ``"logits"``; see :func:`eot_logits`.
      resample: fresh draws per queried point (default) or fixed draws.

    Returns:
      ``attack(randomized_logits_fn, x, y, *, key) -> x_adv``.

    Raises:
      TypeError: ``attack`` is not callable.
      ValueError: ``n < 1`` or an unknown ``average``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> from advjax.attacks import eot
      >>> w = jnp.ones((4, 3))
      >>> noisy_fn = lambda x, key: (x + 0.1 * jax.random.normal(key, x.shape)) @ w
      >>> attack = eot(advjax.pgd(eps=0.1, steps=3), n=8)
      >>> x, y = jnp.full((2, 4), 0.5), jnp.array([0, 1])
      >>> attack(noisy_fn, x, y, key=jax.random.key(0)).shape
      (2, 4)
    """
    if not callable(attack):
        raise TypeError(f"eot: attack must be callable, got {type(attack).__name__}")
    n = check_positive_int(n, "n")
    average = _check_average(average)

    def eot_attack(randomized_logits_fn, x, y, *, key):
        attack_key, draw_key = jax.random.split(key)
        expected = eot_logits(randomized_logits_fn, n, average=average)

        def logits_fn(x_query):
            draw = _point_key(draw_key, x_query) if resample else draw_key
            return expected(x_query, draw)

        return attack(logits_fn, x, y, key=attack_key)

    return eot_attack
