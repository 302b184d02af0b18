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
    """A value check failed (raised eagerly, or from inside a compiled program).

    A ``ValueError``: code that catches ``ValueError`` catches it too. Under
    ``jax.jit`` its message surfaces inside a ``jax.errors.JaxRuntimeError``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._checks import InvalidInputError, check_epsilon
      >>> try:
      ...     check_epsilon(jnp.array(-0.1))
      ... except ValueError as error:
      ...     print(type(error).__name__)
      InvalidInputError
    """


class _DropOwnErrors(logging.Filter):
    """Keeps JAX from logging our own value-check errors a second time with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, InvalidInputError)


logging.getLogger("jax._src.debugging").addFilter(_DropOwnErrors())


def is_concrete(value) -> bool:
    """Whether ``value`` holds real numbers rather than a tracer under a transform.

    Args:
      value: any value (an array, a Python number, a tracer).

    Returns:
      ``False`` for a ``jax.core.Tracer`` (under ``jit``, ``grad``, ``vmap``, ...),
      ``True`` otherwise.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax._checks import is_concrete
      >>> is_concrete(jnp.ones(2))
      True
      >>> jax.jit(lambda x: jnp.asarray(is_concrete(x)))(jnp.ones(2)).item()
      False
    """
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
      InvalidInputError: when ``failed`` holds (under ``jax.jit``, wrapped in the
        ``jax.errors.JaxRuntimeError`` the compiled program raises).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._checks import raise_if
      >>> x = jnp.array([0.5, 2.0])
      >>> raise_if(x.max() > 1, "x has a maximum of {}, above 1", x.max())
      Traceback (most recent call last):
        ...
      advjax._checks.InvalidInputError: x has a maximum of 2.0, above 1
      >>> raise_if(x.max() > 5, "x has a maximum of {}, above 5", x.max()) is None
      True
    """
    if all(is_concrete(v) for v in (failed, *values)):
        if bool(np.any(np.asarray(failed))):
            raise InvalidInputError(message.format(*(_host(v) for v in values)))
        return

    def report(failed_now, *values_now):
        if np.any(np.asarray(failed_now)):
            raise InvalidInputError(message.format(*(_host(v) for v in values_now)))

    @jax.custom_batching.custom_vmap
    def check(failed_now, values_now):
        jax.lax.cond(
            failed_now, lambda: jax.debug.callback(report, failed_now, *values_now), lambda: None
        )
        return failed_now

    # Under vmap one check covers the whole batch (reporting its first failing example);
    # vmap's default rule would unroll one host callback per example into the program.
    @check.def_vmap
    def check_batch(axis_size, in_batched, failed_now, values_now):
        failed_batched, values_batched = in_batched
        index = jnp.argmax(failed_now) if failed_batched else 0
        first = failed_now[index] if failed_batched else failed_now
        pairs = zip(values_now, values_batched, strict=True)
        chosen = tuple(v[index] if batched else v for v, batched in pairs)
        return check(first, chosen), False

    stop = jax.lax.stop_gradient  # a check is not differentiated
    check(stop(jnp.any(jnp.asarray(failed))), tuple(stop(jnp.asarray(v)) for v in values))


def _host(value):
    array = np.asarray(value)
    if array.size == 1:
        return array.reshape(()).item()
    return array.tolist()


def check_epsilon(eps, name: str = "eps") -> None:
    """Refuses a negative or non-finite budget (concrete now, traced inside the program).

    Args:
      eps: the perturbation budget, a scalar or a per-example array ``[B]`` (in
        input units); ``None`` is accepted and not checked.
      name: the argument's name, for the message.

    Raises:
      InvalidInputError: ``eps`` has a negative, NaN or infinite entry.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._checks import check_epsilon
      >>> check_epsilon(0.3) is None
      True
      >>> check_epsilon(jnp.array([0.1, -0.2]))
      Traceback (most recent call last):
        ...
      advjax._checks.InvalidInputError: eps must be >= 0 and finite, got -0.2... (the smallest ...
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
    """Returns ``value`` as an int after checking it is an integer >= ``minimum``.

    Args:
      value: the value to check (a Python or numpy integer; ``bool`` is refused).
      name: the argument's name, for the message.
      minimum: the smallest value accepted.

    Returns:
      ``value`` as a Python ``int``.

    Raises:
      TypeError: ``value`` is not an integer (or is a ``bool``).
      ValueError: ``value`` is less than ``minimum``.

    Example:
      >>> import numpy as np
      >>> from advjax._checks import check_positive_int
      >>> check_positive_int(np.int64(3), "steps")
      3
      >>> check_positive_int(0, "steps")
      Traceback (most recent call last):
        ...
      ValueError: steps must be >= 1, got 0.
      >>> check_positive_int(2.0, "steps")
      Traceback (most recent call last):
        ...
      TypeError: steps must be an integer, got float 2.0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_range(clip_min: float, clip_max: float) -> None:
    """Raises ``ValueError`` unless ``clip_min < clip_max`` are finite numbers.

    Args:
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Raises:
      TypeError: either end is not a number.
      ValueError: either end is not finite, or ``clip_min >= clip_max``.

    Example:
      >>> from advjax._checks import check_range
      >>> check_range(0.0, 1.0) is None
      True
      >>> check_range(1.0, 0.0)
      Traceback (most recent call last):
        ...
      ValueError: the valid input range must satisfy clip_min < clip_max, got [1.0, 0.0].
    """
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
    """Refuses inputs that are not one of :data:`SUPPORTED_DTYPES`.

    Args:
      x: the inputs (an array; only its dtype is read).

    Raises:
      TypeError: ``x`` is not floating point; for integer images the message
        says how to convert them.

    Example:
      >>> import numpy as np
      >>> from advjax._checks import check_input_dtype
      >>> check_input_dtype(np.zeros(2, np.float32)) is None
      True
      >>> check_input_dtype(np.zeros(2, np.uint8))
      Traceback (most recent call last):
        ...
      TypeError: inputs x must be floating point, got dtype uint8; convert images ...
    """
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

    Args:
      num_classes: the model's class count ``K``.
      needed: the smallest ``K`` that ``what`` works with.
      what: the name of the attack or loss, for the message.

    Raises:
      ValueError: naming ``what``, the class count it needs and the count given.

    Example:
      >>> from advjax._checks import check_classes
      >>> check_classes(10, 4, "targeted DLR") is None
      True
      >>> check_classes(2, 4, "targeted DLR")
      Traceback (most recent call last):
        ...
      ValueError: targeted DLR needs at least 4 classes, but the model has 2.
    """
    if num_classes < needed:
        raise ValueError(
            f"{what} needs at least {needed} classes, but the model has {num_classes}."
        )


def model_classes(logits_fn, x) -> int:
    """The class count ``K`` of ``logits_fn`` on ``x`` (shapes only, nothing is computed).

    Args:
      logits_fn: the model ``x[B, ...] -> logits[B, K]``.
      x: a batch ``[B, ...]`` (an array or a ``jax.ShapeDtypeStruct``).

    Returns:
      ``K``, the size of the logits' last axis.

    Raises:
      ValueError: the model does not return ``[B, K]`` logits for a batch of ``B``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._checks import model_classes
      >>> model_classes(lambda x: x.reshape(len(x), -1)[:, :3], jnp.zeros((2, 4, 4, 1)))
      3
      >>> model_classes(lambda x: x.sum(), jnp.zeros((2, 4)))
      Traceback (most recent call last):
        ...
      ValueError: logits_fn must map x[B, ...] to logits [B, K]; ... it returned ().
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
      TypeError: as :func:`check_inputs`.
      ValueError: as :func:`check_inputs`, or the model does not return logits
        ``[B, K]`` (:func:`model_classes`).
      InvalidInputError: as :func:`check_inputs`.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._checks import check_batch
      >>> logits_fn = lambda x: jnp.stack([x.sum((1, 2, 3)), -x.sum((1, 2, 3))], -1)
      >>> x = jnp.full((2, 4, 4, 1), 0.5)
      >>> check_batch(logits_fn, x, jnp.array([0, 1]), 0.0, 1.0)
      2
      >>> check_batch(logits_fn, x, jnp.array([0, 2]), 0.0, 1.0)
      Traceback (most recent call last):
        ...
      advjax._checks.InvalidInputError: labels y lie in [0, 2], outside the model's classes ...
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

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._checks import check_inputs
      >>> x = jnp.full((2, 3), 0.5)
      >>> check_inputs(x, jnp.array([[0.0, 1.0], [0.5, 0.5]]), 0.0, 1.0) is None
      True
      >>> check_inputs(3 * x, jnp.array([0, 1]), 0.0, 1.0)
      Traceback (most recent call last):
        ...
      advjax._checks.InvalidInputError: inputs x lie in [1.5, 1.5], outside the declared ...
      >>> check_inputs(x, jnp.array([0.0, 1.0]), 0.0, 1.0)
      Traceback (most recent call last):
        ...
      TypeError: labels y of shape [B] must be integers, got dtype float32; ...
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
    """Labels in the form losses take: int32 ``[B]``, or float32 probability rows ``[B, K]``.

    Args:
      y: integer labels ``[B]`` or probability rows ``[B, K]`` of any numeric dtype.

    Returns:
      ``y`` as int32 ``[B]`` or float32 ``[B, K]``.

    Example:
      >>> import numpy as np
      >>> from advjax._checks import as_targets
      >>> as_targets(np.array([1, 0])).dtype, as_targets(np.eye(2, dtype=np.uint8)).dtype
      (dtype('int32'), dtype('float32'))
    """
    y = jnp.asarray(y)
    if y.ndim == 1:
        return y.astype(jnp.int32)
    return y.astype(jnp.float32)


def as_int_labels(y) -> jax.Array:
    """Integer labels ``[B]``: the labels themselves, or the argmax of one-hot/probability rows.

    Args:
      y: integer labels ``[B]`` or probability rows ``[B, K]``.

    Returns:
      int32 labels ``[B]``.

    Example:
      >>> import numpy as np
      >>> from advjax._checks import as_int_labels
      >>> as_int_labels(np.array([[0.2, 0.8], [1.0, 0.0]])).tolist()
      [1, 0]
    """
    y = jnp.asarray(y)
    if y.ndim == 1:
        return y.astype(jnp.int32)
    return jnp.argmax(y, axis=-1).astype(jnp.int32)
