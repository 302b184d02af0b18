"""JPEG compression written in JAX, with a differentiable approximation for BPDA.

The baseline JPEG pipeline (ITU T.81 / the IJG library's quality scaling),
without entropy coding, which is lossless: pixels to ``[0, 255]``, RGB to
YCbCr (JFIF), level shift by 128, 8x8 blocks, orthonormal 2-D DCT-II,
division by the quality-scaled quantisation table, rounding, de-quantisation,
inverse DCT, back to RGB and rounding to 8-bit pixels. Chroma is not
subsampled (4:4:4). Images whose sides are not multiples of 8 are
edge-padded and cropped back.

Rounding is the only non-differentiable step. ``rounding="cubic"`` replaces
``round(t)`` by ``t + (round(t) - t) ** 3`` (Shin & Song 2017), which has the
same fixed points, stays close to it, and has a useful gradient; that version
is the :class:`Preprocessor`'s BPDA approximation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from advjax.defenses._preprocess import Preprocessor

# ITU T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), quality 50.
_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
)
_CHROMA = np.full((8, 8), 99, np.float32)
_CHROMA[:4, :4] = np.array(
    [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], np.float32
)

_ROUNDINGS = ("exact", "cubic", "identity")


def dct_matrix(n: int = 8) -> np.ndarray:
    """The orthonormal DCT-II matrix ``D`` (``D @ D.T == I``); a block's DCT is ``D @ b @ D.T``.

    Example:
      >>> import numpy as np
      >>> from advjax.defenses import dct_matrix
      >>> d = dct_matrix(8)
      >>> bool(np.allclose(d @ d.T, np.eye(8), atol=1e-6))
      True
    """
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.astype(np.float32)


def quantization_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and chrominance tables scaled for ``quality`` in ``[1, 100]`` (IJG formula).

    Example:
      >>> from advjax.defenses import quantization_tables
      >>> luma, chroma = quantization_tables(100)
      >>> float(luma.max()), float(chroma.max())
      (1.0, 1.0)
    """
    _check_quality(quality)
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality

    def scaled(table):
        return np.clip(np.floor((table * scale + 50.0) / 100.0), 1.0, 255.0).astype(np.float32)

    return scaled(_LUMA), scaled(_CHROMA)


def _check_quality(quality) -> None:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg: quality must be an integer in [1, 100], got {quality!r}")


def _round(t: jax.Array, rounding: str) -> jax.Array:
    if rounding == "exact":
        return jnp.round(t)
    if rounding == "cubic":
        return t + (jax.lax.stop_gradient(jnp.round(t)) - t) ** 3
    return t


def _rgb_to_ycbcr(x):
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
    return jnp.stack([y, cb, cr], axis=-1)


def _ycbcr_to_rgb(x):
    y, cb, cr = x[..., 0], x[..., 1] - 128.0, x[..., 2] - 128.0
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return jnp.stack([r, g, b], axis=-1)


def jpeg_compress(
    x: jax.Array, quality: int = 75, *, rounding: str = "exact", round_pixels: bool = True
) -> jax.Array:
    """JPEG-compresses and decompresses images ``x[B, H, W, C]`` in ``[0, 1]``, ``C`` in {1, 3}.

    Args:
      x: images in ``[0, 1]``.
      quality: IJG quality in ``[1, 100]``.
      rounding: ``"exact"`` (real JPEG), ``"cubic"`` (Shin & Song's
        differentiable approximation) or ``"identity"`` (no rounding).
      round_pixels: round the decoded pixels to 8 bits, as a JPEG file does.

    Returns:
      decoded images of the same shape, in ``[0, 1]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import jpeg_compress
      >>> x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
      >>> bool(jnp.abs(jpeg_compress(x, 100) - x).max() < 0.03)
      True
    """
    _check_quality(quality)
    if rounding not in _ROUNDINGS:
        raise ValueError(f"jpeg: unknown rounding {rounding!r}; expected one of {_ROUNDINGS}")
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"jpeg expects images [B, H, W, 1 or 3], got shape {tuple(x.shape)}")
    batch, height, width, channels = x.shape
    luma_q, chroma_q = quantization_tables(quality)
    pixels = x.astype(jnp.float32) * 255.0
    if channels == 3:
        pixels = _rgb_to_ycbcr(pixels)
        tables = jnp.stack([luma_q, chroma_q, chroma_q])  # [C, 8, 8]
    else:
        tables = jnp.asarray(luma_q)[None]
    pad_h, pad_w = -height % 8, -width % 8
    pixels = jnp.pad(pixels, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rows, cols = (height + pad_h) // 8, (width + pad_w) // 8
    # [B, rows, 8, cols, 8, C] -> [B, rows, cols, C, 8, 8]
    blocks = pixels.reshape(batch, rows, 8, cols, 8, channels).transpose(0, 1, 3, 5, 2, 4)
    d = jnp.asarray(dct_matrix(8))
    coefficients = d @ (blocks - 128.0) @ d.T
    quantized = _round(coefficients / tables, rounding) * tables
    decoded = d.T @ quantized @ d + 128.0
    decoded = decoded.transpose(0, 1, 4, 2, 5, 3).reshape(batch, rows * 8, cols * 8, channels)
    decoded = decoded[:, :height, :width, :]
    if channels == 3:
        decoded = _ycbcr_to_rgb(decoded)
    if round_pixels:
        decoded = _round(decoded, rounding)
    return jnp.clip(decoded / 255.0, 0.0, 1.0).astype(x.dtype)


def jpeg(quality: int = 75) -> Preprocessor:
    """JPEG compression as a preprocessor (Dziugaite et al. 2016; Guo et al. 2018).

    Non-differentiable; its BPDA approximation is :func:`jpeg_compress` with
    ``rounding="cubic"``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import jpeg
      >>> jpeg(50)(jnp.zeros((1, 28, 28, 1))).shape
      (1, 28, 28, 1)
    """
    _check_quality(quality)
    return Preprocessor(
        f"jpeg({quality})",
        lambda x, key: jpeg_compress(x, quality),
        differentiable=False,
        approx=lambda x, key: jpeg_compress(x, quality, rounding="cubic"),
    )
