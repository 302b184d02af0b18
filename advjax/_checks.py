"""The validation layer: one set of checks behind every public entry point.

Static checks (shapes, dtypes, label formats, class counts) run while tracing
and raise ``TypeError`` / ``ValueError`` at once, under ``jax.jit`` or not.
Value checks (range, NaN/inf, label range, negative epsilons) raise the same
``ValueError`` on concrete arrays; on traced arrays they stay in the compiled
program as a ``lax.cond`` whose failing branch calls back to the host and
raises there (the ``error_if`` pattern of equinox). Under ``jax.jit`` the
error then surfaces as a ``jax.errors.JaxRuntimeError`` whose message ends
with the same text. A passing check costs one reduction over the inputs and
no host round trip.

See ``docs/validation.md`` for every check, where it runs and what it says.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

#: Floating dtypes attacks accept; others are refused with a clear error.
SUPPORTED_DTYPES = ("float16", "bfloat16", "float32", "float64")


class InvalidInputError(ValueError):
    """A value check failed (raised eagerly, or from inside a compiled program)."""


class _DropOwnErrors(logging.Filter):
    """Keeps JAX from logging our own value-check errors a second time with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, InvalidInputError)


logging.getLogger("jax._src.debugging").addFilter(_DropOwnErrors())


def is_concrete(value) -> bool:
    """Whether ``value`` holds real numbers rather than a tracer under a transform."""
    return not isinstance(value, jax.core.Tracer)


def raise_if(failed, message: str, *values) -> None:
    """Raises ``InvalidInputError(message.format(*values))`` where ``failed`` is true.

    Concrete ``failed`` raises now. A traced one adds a ``lax.cond`` to the
    program whose failing branch formats the message on the host and raises,
    so the check is alive under ``jax.jit``, ``vmap`` and ``grad``.

    Args:
      failed: a boolean scalar (or array: any true element fails).
      message: a ``str.format`` template for ``values``.
      *values: scalars to report (concrete or traced).

    Raises:
      InvalidInputError: when ``failed`` holds.
    """
    if all(is_concrete(v) for v in (failed, *values)):
        if bool(np.any(np.asarray(failed))):
            raise InvalidInputError(message.format(*(_host(v) for v in values)))
        return

    def report(failed_now, *values_now):
        if np.any(np.asarray(failed_now)):
            raise InvalidInputError(message.format(*(_host(v) for v in values_now)))

    failed = jnp.any(jnp.asarray(failed))
    values = tuple(jnp.asarray(v) for v in values)

    def fail():
        jax.debug.callback(report, failed, *values)

    jax.lax.cond(failed, fail, lambda: None)


def _host(value):
    array = np.asarray(value)
    if array.size == 1:
        return array.reshape(()).item()
    return array.tolist()


def check_epsilon(eps, name: str = "eps") -> None:
    """Refuses a negative or non-finite budget (concrete now, traced inside the program).

    Raises:
      InvalidInputError: ``eps`` has a negative, NaN or infinite entry.
    """
    if eps is None:
        return
    xp = np if is_concrete(eps) else jnp  # float64 on the host, float32 in a program
    values = xp.asarray(eps, dtype=np.float64 if xp is np else jnp.float32)
    raise_if(
        xp.any(~xp.isfinite(values) | (values < 0)),
        name + " must be >= 0 and finite, got {} (the smallest entry): a perturbation budget "
        "cannot be negative, NaN or infinite.",
        xp.min(values),
    )


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Returns ``value`` as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_range(clip_min: float, clip_max: float) -> None:
    """Raises ``ValueError`` unless ``clip_min < clip_max`` are finite numbers."""
    try:
        low, high = float(clip_min), float(clip_max)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"clip_min and clip_max must be numbers, got {clip_min!r} and {clip_max!r}."
        ) from error
    if not (np.isfinite(low) and np.isfinite(high)) or low >= high:
        raise ValueError(
            f"the valid input range must satisfy clip_min < clip_max, got [{clip_min}, {clip_max}]."
        )


def check_input_dtype(x) -> None:
    """Refuses inputs that are not one of :data:`SUPPORTED_DTYPES`."""
    dtype = jnp.result_type(x)
    if jnp.dtype(dtype).name not in SUPPORTED_DTYPES:
        hint = (
            "convert images with x.astype(jnp.float32) / 255"
            if jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_
            else f"use one of {SUPPORTED_DTYPES}"
        )
        raise TypeError(f"inputs x must be floating point, got dtype {dtype}; {hint}.")


def check_classes(num_classes: int, needed: int, what: str) -> None:
    """Refuses a model with fewer classes than ``what`` needs.

    Raises:
      ValueError: naming ``what``, the class count it needs and the count given.
    """
    if num_classes < needed:
        raise ValueError(
            f"{what} needs at least {needed} classes, but the model has {num_classes}."
        )


def model_classes(logits_fn, x) -> int:
    """The class count ``K`` of ``logits_fn`` on ``x`` (shapes only, nothing is computed).

    Raises:
      ValueError: the model does not return ``[B, K]`` logits for a batch of ``B``.
    """
    out = jax.eval_shape(logits_fn, x)
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != jnp.shape(x)[0]:
        raise ValueError(
            f"logits_fn must map x[B, ...] to logits [B, K]; for x of shape {jnp.shape(x)} "
            f"it returned {shape if shape is not None else type(out).__name__}."
        )
    return int(shape[1])


def check_batch(logits_fn, x, y, clip_min=None, clip_max=None) -> int:
    """Every check of :func:`check_inputs`, with the class count taken from the model.

    Args:
      logits_fn: the model ``x[B, ...] -> logits[B, K]`` (only its output shape is used).
      x: inputs ``[B, ...]``.
      y: labels ``[B]`` or probability rows ``[B, K]``.
      clip_min: lower end of the valid input range (``None``: no range check).
      clip_max: upper end of the valid input range.

    Returns:
      The model's class count ``K``.

    Raises:
      TypeError, ValueError, InvalidInputError: as :func:`check_inputs`.
    """
    check_input_dtype(x)
    shape = jnp.shape(x)
    if len(shape) < 1 or shape[0] == 0:
        raise ValueError(f"x needs a leading batch axis with >= 1 example, got shape {shape}.")
    work = jnp.float64 if jnp.result_type(x) == jnp.float64 else jnp.float32
    num_classes = model_classes(logits_fn, jnp.asarray(x).astype(work))
    check_inputs(x, y, clip_min, clip_max, num_classes=num_classes)
    return num_classes


def check_inputs(x, y, clip_min, clip_max, *, num_classes: int | None = None):
    """Validates a batch ``x`` and its labels or targets ``y``.

    Labels follow one rule everywhere: integer class indices ``[B]`` in
    ``[0, K)``, or rows ``[B, K]`` of probabilities (one-hot included, in any
    numeric dtype), each row non-negative and summing to 1.

    Args:
      x: inputs ``[B, ...]``, ``B >= 1``, of a dtype in :data:`SUPPORTED_DTYPES`,
        finite and inside ``[clip_min, clip_max]``.
      y: labels ``[B]`` or probability rows ``[B, K]``.
      clip_min: lower end of the valid input range (``None``: finiteness only).
      clip_max: upper end of the valid input range.
      num_classes: the model's class count ``K`` when known.

    Raises:
      TypeError: for non-floating inputs or labels of a non-numeric dtype.
      ValueError: for wrong shapes, an empty batch or a class count mismatch.
      InvalidInputError: for NaN/inf inputs, inputs out of range, labels outside
        ``[0, K)`` or rows that are not probabilities (under ``jax.jit`` as the
        message of a ``JaxRuntimeError``).
    """
    bounded = clip_min is not None or clip_max is not None
    if bounded:
        check_range(clip_min, clip_max)
    check_input_dtype(x)
    x_shape, y_shape = jnp.shape(x), jnp.shape(y)
    if len(x_shape) < 1 or len(y_shape) < 1:
        raise ValueError(f"x and y need a leading batch axis, got shapes {x_shape} and {y_shape}.")
    if x_shape[0] != y_shape[0]:
        raise ValueError(f"batch sizes differ: x has {x_shape[0]} examples but y has {y_shape[0]}.")
    if x_shape[0] == 0:
        raise ValueError("x holds no examples (batch size 0).")
    y_dtype = jnp.result_type(y)
    if not (jnp.issubdtype(y_dtype, jnp.number) or y_dtype == jnp.bool_):
        raise TypeError(f"labels y must be numeric, got dtype {y_dtype}.")
    if len(y_shape) == 1:
        if not jnp.issubdtype(y_dtype, jnp.integer):
            raise TypeError(
                f"labels y of shape [B] must be integers, got dtype {y_dtype}; "
                "pass y.astype(int) or one-hot rows [B, K]."
            )
    elif len(y_shape) == 2:
        if y_shape[1] == 1:
            raise ValueError(
                f"labels y have shape {y_shape}; integer labels must have shape [B] "
                "(use y.reshape(-1)), one-hot or probability rows shape [B, K]."
            )
        if num_classes is not None and y_shape[1] != num_classes:
            raise ValueError(
                f"labels y are rows of {y_shape[1]} classes but the model has {num_classes}; "
                "one-hot or probability rows need one column per class."
            )
    else:
        raise ValueError(
            f"labels y must be integer labels [B] or one-hot/probability rows [B, K], "
            f"got shape {y_shape}."
        )
    _check_values(x, clip_min, clip_max, bounded)
    _check_label_values(y, num_classes)


def _check_values(x, clip_min, clip_max, bounded: bool) -> None:
    # One path, eager or traced: raise_if raises now on concrete values and from the
    # compiled program on traced ones. The range ends are rounded outwards to float32.
    values = jnp.asarray(x).astype(jnp.float32)
    bad = ~jnp.isfinite(values)
    raise_if(
        jnp.any(bad),
        "inputs x contain {} non-finite (NaN or inf) values; attacks need finite inputs.",
        jnp.sum(bad),
    )
    if not bounded:
        return
    low, high = jnp.min(values), jnp.max(values)
    raise_if(
        (low < _outward(clip_min, -1)) | (high > _outward(clip_max, 1)),
        "inputs x lie in [{:.4g}, {:.4g}], outside the declared valid range "
        f"[{clip_min}, {clip_max}]; rescale them (e.g. uint8 images / 255) or pass "
        "clip_min/clip_max matching your data.",
        low,
        high,
    )


def _outward(bound: float, direction: int) -> np.float32:
    value = np.float32(bound)
    if direction < 0 and float(value) > bound:
        value = np.nextafter(value, np.float32(-np.inf))
    if direction > 0 and float(value) < bound:
        value = np.nextafter(value, np.float32(np.inf))
    return value


def _check_label_values(y, num_classes) -> None:
    y = jnp.asarray(y)
    if y.ndim == 1:
        upper = num_classes if num_classes is not None else np.iinfo(np.int32).max
        classes = f"[0, {num_classes})" if num_classes is not None else "[0, K)"
        raise_if(
            (jnp.min(y) < 0) | (jnp.max(y) >= upper),
            "labels y lie in [{}, {}], outside the model's classes " + classes + "; "
            "labels are class indices from 0.",
            jnp.min(y),
            jnp.max(y),
        )
        return
    # Rows [B, K]: probabilities, one-hot included.
    tolerance = 1e-2 if jnp.finfo(_float_of(y.dtype)).bits <= 16 else 1e-4
    rows = y.astype(jnp.float32)
    error = jnp.abs(jnp.sum(rows, -1) - 1)
    raise_if(
        ~jnp.all(jnp.isfinite(rows)) | (jnp.min(rows) < 0) | ~(jnp.max(error) <= tolerance),
        "one-hot/probability label rows y must be finite, non-negative and sum to 1; "
        "found a row summing to {} (minimum entry {}).",
        jnp.sum(rows, -1)[jnp.argmax(jnp.where(jnp.isnan(error), jnp.inf, error))],
        jnp.min(rows),
    )


def _float_of(dtype):
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


def as_targets(y) -> jax.Array:
    """Labels in the form losses take: int32 ``[B]``, or float32 probability rows ``[B, K]``."""
    y = jnp.asarray(y)
    if y.ndim == 1:
        return y.astype(jnp.int32)
    return y.astype(jnp.float32)


def as_int_labels(y) -> jax.Array:
    """Integer labels ``[B]``: the labels themselves, or the argmax of one-hot/probability rows."""
    y = jnp.asarray(y)
    if y.ndim == 1:
        return y.astype(jnp.int32)
    return jnp.argmax(y, axis=-1).astype(jnp.int32)
