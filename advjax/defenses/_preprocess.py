"""Input preprocessors: pure functions put in front of a logits function.

A :class:`Preprocessor` maps images ``x[B, H, W, C]`` in ``[0, 1]`` to images of
the same shape and range. A randomized one (Gaussian noise, random
resize-and-pad) takes a PRNG key. A non-differentiable one (bit-depth
reduction, median smoothing, JPEG) carries a differentiable approximation that
:meth:`Preprocessor.bpda` plugs into the backward pass, which is how an
adaptive attacker differentiates through it (Athalye et al. 2018).

``preprocess(logits_fn, p1, p2, ...)`` returns a :class:`DefendedLogits`: the
defended model, itself a logits function (``(x)`` or, when randomized,
``(x, key)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax.attacks import bpda as _bpda

PreprocessFn = Callable[[jax.Array, jax.Array | None], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessor:
    """A named input transformation ``(x, key) -> x'``.

    Attributes:
      name: a short label used in reports (``"bit_depth(4)"``).
      fn: ``(x, key) -> x'``; ``key`` is ``None`` for deterministic ones.
      randomized: whether ``fn`` consumes the key.
      differentiable: whether ``jax.grad`` through ``fn`` is informative. If not,
        adaptive attacks use :meth:`bpda`.
      approx: a differentiable ``(x, key) -> x'`` approximating ``fn`` for BPDA;
        ``None`` is the identity.

    Calling it as ``p(x, key=None)`` applies ``fn`` to images ``x[B, H, W, C]``
    in ``[0, 1]`` and returns images of the same shape and range.

    Raises:
      ValueError: when a randomized preprocessor is called without a key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import Preprocessor
      >>> invert = Preprocessor("invert", lambda x, key: 1.0 - x)
      >>> invert(jnp.array([0.25, 1.0])).tolist()
      [0.75, 0.0]
      >>> snap = Preprocessor("round", lambda x, key: jnp.round(x), differentiable=False)
      >>> jax.grad(lambda x: snap(x).sum())(jnp.array([0.3])).tolist()   # masked gradient
      [0.0]
      >>> jax.grad(lambda x: snap.bpda()(x).sum())(jnp.array([0.3])).tolist()   # BPDA: identity
      [1.0]
      >>> Preprocessor("noise", lambda x, key: x, randomized=True)(jnp.zeros(1))
      Traceback (most recent call last):
        ...
      ValueError: noise is randomized: pass key=jax.random.key(...)
    """

    name: str
    fn: PreprocessFn
    randomized: bool = False
    differentiable: bool = True
    approx: PreprocessFn | None = None

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        if self.randomized and key is None:
            raise ValueError(f"{self.name} is randomized: pass key=jax.random.key(...)")
        return self.fn(x, key)

    def bpda(self) -> Preprocessor:
        """The same forward pass with a differentiable backward pass (BPDA).

        Differentiable preprocessors are returned unchanged.
        """
        if self.differentiable:
            return self
        approx = self.approx
        if self.randomized:
            wrapped = _bpda(self.fn, approx)
            return dataclasses.replace(self, fn=wrapped, differentiable=True)
        # Deterministic: keep the key out of the custom_vjp signature (it is None).
        single = _bpda(
            lambda x: self.fn(x, None), None if approx is None else lambda x: approx(x, None)
        )
        return dataclasses.replace(self, fn=lambda x, key: single(x), differentiable=True)


def _check_images(x: jax.Array, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects images [B, H, W, C], got shape {tuple(x.shape)}")


def bit_depth(bits: int) -> Preprocessor:
    """Reduces each value to ``bits`` bits: ``round(x * (2**bits - 1)) / (2**bits - 1)``.

    Xu et al. (2018), "Feature Squeezing". Non-differentiable; its BPDA
    approximation is the identity.

    Args:
      bits: an integer in ``[1, 16]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import bit_depth
      >>> bit_depth(1)(jnp.array([0.2, 0.6])).tolist()
      [0.0, 1.0]
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bit_depth: bits must be an integer in [1, 16], got {bits!r}")
    levels = float(2**bits - 1)

    def fn(x, key):
        del key
        return jnp.round(x * levels) / levels

    return Preprocessor(f"bit_depth({bits})", fn, differentiable=False)


def _reflect_pad(x: jax.Array, before: int, after: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), mode="reflect")


def median_smoothing(size: int = 2) -> Preprocessor:
    """Median filter over ``size x size`` windows of each channel (reflect padding).

    Xu et al. (2018) use 2x2 on MNIST and 2x2 or 3x3 on CIFAR-10. For even
    sizes the median is the mean of the two middle values. Non-differentiable
    in practice (the gradient flows to one pixel per window); its BPDA
    approximation is the identity.

    Args:
      size: window side, an integer in ``[2, 11]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import median_smoothing
      >>> x = jnp.zeros((1, 5, 5, 1)).at[0, 2, 2, 0].set(1.0)   # an isolated dot
      >>> float(median_smoothing(3)(x).max())
      0.0
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 11:
        raise ValueError(f"median_smoothing: size must be an integer in [2, 11], got {size!r}")

    def fn(x, key):
        del key
        _check_images(x, "median_smoothing")
        height, width = x.shape[1:3]
        padded = _reflect_pad(x, (size - 1) // 2, size // 2)
        windows = [
            padded[:, i : i + height, j : j + width, :] for i in range(size) for j in range(size)
        ]
        return jnp.median(jnp.stack(windows), axis=0)

    return Preprocessor(f"median_smoothing({size})", fn, differentiable=False)


def _gaussian_kernel(sigma: float, size: int) -> jax.Array:
    offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def gaussian_smoothing(sigma: float = 1.0, size: int | None = None) -> Preprocessor:
    """Gaussian blur of each channel (separable, reflect padding). Differentiable.

    Args:
      sigma: standard deviation in pixels, > 0.
      size: kernel side (odd); ``None`` uses ``2 * ceil(2 * sigma) + 1``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import gaussian_smoothing
      >>> y = gaussian_smoothing(1.0)(jnp.full((1, 8, 8, 1), 0.5))
      >>> bool(jnp.allclose(y, 0.5))
      True
    """
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"gaussian_smoothing: sigma must be > 0, got {sigma!r}")
    if size is None:
        size = 2 * math.ceil(2 * sigma) + 1
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"gaussian_smoothing: size must be a positive odd integer, got {size!r}")
    half = size // 2

    def fn(x, key):
        del key
        _check_images(x, "gaussian_smoothing")
        kernel = _gaussian_kernel(float(sigma), size).astype(x.dtype)
        height, width = x.shape[1:3]
        padded = _reflect_pad(x, half, half)
        rows = sum(kernel[i] * padded[:, i : i + height, :, :] for i in range(size))
        return sum(kernel[j] * rows[:, :, j : j + width, :] for j in range(size))

    return Preprocessor(f"gaussian_smoothing({sigma:g})", fn)


def gaussian_noise(sigma: float = 0.1, *, clip: bool = True) -> Preprocessor:
    """Adds ``N(0, sigma^2)`` noise (randomized; differentiable), clipped to ``[0, 1]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import gaussian_noise
      >>> y = gaussian_noise(0.1)(jnp.full((2, 4, 4, 1), 0.5), jax.random.key(0))
      >>> y.shape, bool((y >= 0).all() & (y <= 1).all())
      ((2, 4, 4, 1), True)
    """
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"gaussian_noise: sigma must be > 0, got {sigma!r}")

    def fn(x, key):
        noisy = x + sigma * jax.random.normal(key, x.shape, x.dtype)
        return jnp.clip(noisy, 0.0, 1.0) if clip else noisy

    return Preprocessor(f"gaussian_noise({sigma:g})", fn, randomized=True)


def random_resize_pad(min_scale: float = 0.8, *, fill: float = 0.0) -> Preprocessor:
    """Random resizing and padding (Xie et al. 2018), keeping the input's shape.

    Each image is shrunk by a factor drawn uniformly from ``[min_scale, 1]``
    (bilinear) and placed at a uniformly random offset inside a canvas of the
    original size filled with ``fill``. Randomized; differentiable in ``x``.

    Args:
      min_scale: smallest scale, in ``(0, 1]``.
      fill: value of the padding, in ``[0, 1]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import random_resize_pad
      >>> random_resize_pad(0.8)(jnp.ones((3, 28, 28, 1)), jax.random.key(0)).shape
      (3, 28, 28, 1)
    """
    if not isinstance(min_scale, (int, float)) or not 0 < min_scale <= 1:
        raise ValueError(f"random_resize_pad: min_scale must be in (0, 1], got {min_scale!r}")
    if not 0 <= fill <= 1:
        raise ValueError(f"random_resize_pad: fill must be in [0, 1], got {fill!r}")

    def one(image, key):
        height, width = image.shape[:2]
        scale_key, row_key, col_key = jax.random.split(key, 3)
        scale = jax.random.uniform(scale_key, (), minval=min_scale, maxval=1.0)
        row = jax.random.uniform(row_key, ()) * height * (1.0 - scale)
        col = jax.random.uniform(col_key, ()) * width * (1.0 - scale)
        shifted = image - fill
        out = jax.image.scale_and_translate(
            shifted,
            image.shape,
            (0, 1),
            jnp.stack([scale, scale]),
            jnp.stack([row, col]),
            "linear",
            antialias=False,
        )
        return out + fill

    def fn(x, key):
        _check_images(x, "random_resize_pad")
        return jax.vmap(one)(x, jax.random.split(key, x.shape[0]))

    return Preprocessor(f"random_resize_pad({min_scale:g})", fn, randomized=True)


def chain(*preprocessors: Preprocessor) -> Preprocessor:
    """Applies preprocessors left to right; randomized ones get independent keys.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import bit_depth, chain, median_smoothing
      >>> squeeze = chain(median_smoothing(2), bit_depth(3))
      >>> squeeze.name, squeeze(jnp.zeros((1, 4, 4, 1))).shape
      ('chain(median_smoothing(2), bit_depth(3))', (1, 4, 4, 1))
    """
    if not preprocessors:
        raise ValueError("chain: pass at least one preprocessor")
    for p in preprocessors:
        if not isinstance(p, Preprocessor):
            raise TypeError(f"chain: expected Preprocessor objects, got {type(p).__name__}")
    steps = tuple(preprocessors)
    randomized = any(p.randomized for p in steps)

    def run(x, key, use_approx):
        keys = jax.random.split(key, len(steps)) if randomized else [None] * len(steps)
        for p, k in zip(steps, keys, strict=True):
            if use_approx and not p.differentiable:
                x = p.approx(x, k) if p.approx is not None else x
            else:
                x = p.fn(x, k if p.randomized else None)
        return x

    approx = None
    if not all(p.differentiable for p in steps):
        approx = lambda x, key: run(x, key, True)  # noqa: E731
    return Preprocessor(
        "chain(" + ", ".join(p.name for p in steps) + ")",
        lambda x, key: run(x, key, False),
        randomized=randomized,
        differentiable=all(p.differentiable for p in steps),
        approx=approx,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class DefendedLogits:
    """A logits function behind a preprocessor: ``logits_fn(preprocessor(x))``.

    Call it as ``defended(x)`` or, when :attr:`randomized`, ``defended(x, key)``.
    A deterministic one is a plain ``LogitsFn`` that attacks accept directly
    (that is the *naive* white-box attack, which gradient masking fools);
    :meth:`adaptive` returns the BPDA version an adaptive attacker differentiates.

    Attributes:
      logits_fn: the undefended model, ``x[B, H, W, C] -> logits[B, K]``.
      preprocessor: the (possibly chained) preprocessor.

    Calling it returns ``logits[B, K]`` for images ``x[B, H, W, C]`` in
    ``[0, 1]``; :attr:`randomized` and :attr:`name` are the preprocessor's.

    Raises:
      ValueError: when a randomized one is called without a key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import DefendedLogits, bit_depth, gaussian_noise
      >>> flat = lambda x: x.reshape(x.shape[0], -1)
      >>> defended = DefendedLogits(flat, bit_depth(1))
      >>> x = jnp.full((1, 1, 2, 1), 0.7)
      >>> defended(x).tolist(), defended.randomized, defended.name
      ([[1.0, 1.0]], False, 'bit_depth(1)')
      >>> jax.grad(lambda x: defended(x).sum())(x).ravel().tolist()   # naive: masked
      [0.0, 0.0]
      >>> jax.grad(lambda x: defended.adaptive()(x).sum())(x).ravel().tolist()   # BPDA
      [1.0, 1.0]
      >>> DefendedLogits(flat, gaussian_noise(0.1))(x, jax.random.key(0)).shape
      (1, 2)
    """

    logits_fn: Callable[[jax.Array], jax.Array]
    preprocessor: Preprocessor

    @property
    def randomized(self) -> bool:
        return self.preprocessor.randomized

    @property
    def name(self) -> str:
        return self.preprocessor.name

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return self.logits_fn(self.preprocessor(x, key))

    def adaptive(self) -> DefendedLogits:
        """The same model with every non-differentiable step under BPDA."""
        return DefendedLogits(self.logits_fn, self.preprocessor.bpda())


def preprocess(logits_fn: Callable, *preprocessors: Preprocessor) -> DefendedLogits:
    """Puts preprocessors (applied left to right) in front of a logits function.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import bit_depth, preprocess
      >>> defended = preprocess(lambda x: x.reshape(x.shape[0], -1), bit_depth(1))
      >>> defended(jnp.full((1, 2, 2, 1), 0.7)).tolist()
      [[1.0, 1.0, 1.0, 1.0]]
    """
    if not callable(logits_fn):
        raise TypeError(f"preprocess: logits_fn must be callable, got {type(logits_fn).__name__}")
    if not preprocessors:
        raise ValueError("preprocess: pass at least one preprocessor")
    pre = preprocessors[0] if len(preprocessors) == 1 else chain(*preprocessors)
    if not isinstance(pre, Preprocessor):
        raise TypeError(f"preprocess: expected a Preprocessor, got {type(pre).__name__}")
    return DefendedLogits(logits_fn, pre)
