"""Every attack's contract, enforced in one place.

:func:`guarded` wraps the inner loop of each attack factory: it runs the
validation layer (:mod:`advjax._checks`) on the inputs, runs the loop in
float32 (float64 for float64 inputs) and hands back a result that provably
keeps the invariants, measured on the returned values in the input's dtype:

- finite everywhere (an example whose result is not finite gets the input back);
- inside the threat model's ``eps``-ball around the input (1e-6 relative slack
  for the norm's own rounding), the rounding to the input dtype taken towards
  the input so that it never adds size;
- inside the declared box ``[clip_min, clip_max]``.

:func:`verify` re-checks those invariants wherever a point is counted as an
adversarial example and says which ones failed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import (
    as_targets,
    check_batch,
    check_classes,
    check_epsilon,
    check_range,
)
from advjax._compile import hashable
from advjax.attacks._threat import (
    THREAT_MODELS,
    ThreatModel,
    get_threat_model,
    per_example_value,
)

#: Relative slack on ``norm(x_adv - x) <= eps`` for the norm's own rounding.
BALL_SLACK = 1e-6

#: Why :func:`verify` may refuse a point, in the order reports list them.
REJECTION_REASONS = ("non_finite", "outside_ball", "outside_box")


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Where an attack's outputs must lie: the ``eps``-ball of ``threat`` and the box.

    ``eps`` is ``None`` for a minimum-norm attack with no budget (only the box
    and finiteness then bind). Attached to every built attack as ``attack.constraints``.
    The ball is measured with ``threat.norm`` and projected onto with
    ``threat.project``, so a user-defined threat model is enforced as built.

    Example:
      >>> import advjax
      >>> advjax.pgd(0.1).constraints
      Constraints(threat=ThreatModel(name='linf'), eps=0.1, clip_min=0.0, clip_max=1.0)
    """

    threat: ThreatModel | None
    eps: Any
    clip_min: float
    clip_max: float


def compute_dtype(dtype) -> jnp.dtype:
    """float64 for float64 inputs, float32 for every other floating dtype.

    Args:
      dtype: the inputs' dtype.

    Returns:
      The dtype attacks compute in.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._guard import compute_dtype
      >>> compute_dtype(jnp.bfloat16), compute_dtype(jnp.float64)
      (dtype('float32'), dtype('float64'))
    """
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def inward_box(clip_min: float, clip_max: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The box ends as values of ``dtype``, rounded inwards so they lie inside the real box.

    Args:
      clip_min: lower end of the range.
      clip_max: upper end of the range.
      dtype: the dtype the ends must be represented in.

    Returns:
      ``(low, high)`` NumPy scalars of ``dtype`` with ``clip_min <= low`` and ``high <= clip_max``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._guard import inward_box
      >>> low, high = inward_box(0.1, 0.9, jnp.bfloat16)
      >>> float(low) >= 0.1, float(high) <= 0.9
      (True, True)
    """
    dtype = jnp.dtype(dtype)
    low, high = np.asarray(clip_min, dtype), np.asarray(clip_max, dtype)
    if float(low) < clip_min:
        low = np.nextafter(low, np.asarray(np.inf, dtype))
    if float(high) > clip_max:
        high = np.nextafter(high, np.asarray(-np.inf, dtype))
    return low, high


def _per_example(mask_of_values: jax.Array) -> jax.Array:
    return jnp.all(mask_of_values, axis=tuple(range(1, mask_of_values.ndim)))


def finite_gradient(grad: jax.Array) -> jax.Array:
    """``grad`` with every example whose gradient has a NaN or inf set to zero (no step).

    Args:
      grad: ``[B, ...]``.

    Returns:
      ``[B, ...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._guard import finite_gradient
      >>> finite_gradient(jnp.array([[1.0, jnp.nan], [2.0, 3.0]])).tolist()
      [[0.0, 0.0], [2.0, 3.0]]
    """
    ok = _per_example(jnp.isfinite(grad))
    return jnp.where(per_example_value(ok, grad) > 0, grad, jnp.zeros_like(grad))


def add_towards(x: jax.Array, delta: jax.Array) -> jax.Array:
    """``x + delta`` in ``x.dtype``, rounded so that ``|result - x| <= |delta|`` exactly.

    ``delta`` is in the compute dtype. The sum is taken with its exact rounding
    error (Knuth's two-sum); where rounding to ``x.dtype`` went past the exact
    ``x + delta``, the result steps one unit back towards ``x``.

    Args:
      x: ``[B, ...]`` in any floating dtype.
      delta: ``[B, ...]`` in the compute dtype.

    Returns:
      ``[B, ...]`` in ``x.dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._guard import add_towards
      >>> x = jnp.array([1.0], jnp.bfloat16)
      >>> out = add_towards(x, jnp.array([0.007]))  # nearest would be 1.0078125, past 1.007
      >>> out.astype(jnp.float32).tolist()
      [1.0]
    """
    xc = x.astype(delta.dtype)
    total = xc + delta
    back = total - xc
    error = (xc - (total - back)) + (delta - back)  # xc + delta == total + error exactly
    out = total.astype(x.dtype)
    outc = out.astype(delta.dtype)
    past_up = (outc > total) | ((outc == total) & (error < 0))
    past_down = (outc < total) | ((outc == total) & (error > 0))
    overshoot = jnp.where(delta > 0, past_up, jnp.where(delta < 0, past_down, outc != xc))
    return jnp.where(overshoot, jnp.nextafter(out, x), out)


def enforce(x: jax.Array, x_adv: jax.Array, constraints: Constraints) -> jax.Array:
    """Returns ``x_adv`` in ``x.dtype``, finite, inside the ball and the box.

    The perturbation is projected onto the ball (a no-op for a point already
    inside), added to ``x`` with rounding towards ``x`` and clipped to the box
    rounded inwards. An example that still fails :func:`verify` (or whose
    ``x_adv`` was not finite) gets ``x`` itself back.

    Args:
      x: ``[B, ...]`` the clean inputs.
      x_adv: ``[B, ...]`` the attack's points (any floating dtype).
      constraints: the ball (``threat.project`` onto it) and the box.

    Returns:
      ``[B, ...]`` in ``x.dtype`` that passes :func:`verify`.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._guard import Constraints, enforce
      >>> x = jnp.array([[0.95, 0.5], [0.5, 0.5]], jnp.bfloat16)
      >>> out = enforce(x, jnp.array([[1.5, 0.2], [jnp.nan, 0.6]]), Constraints(linf, 0.1, 0, 1))
      >>> out.dtype, out.astype(jnp.float32).tolist()
      (dtype(bfloat16), [[1.0, 0.400390625], [0.5, 0.5]])
    """
    work = compute_dtype(x.dtype)
    xc, candidate = x.astype(work), x_adv.astype(work)
    finite = _per_example(jnp.isfinite(candidate))
    delta = jnp.where(per_example_value(finite, candidate) > 0, candidate - xc, 0.0)
    if constraints.eps is not None:
        delta = constraints.threat.project(delta, jnp.asarray(constraints.eps, work))
    out = add_towards(x, delta)
    low, high = inward_box(constraints.clip_min, constraints.clip_max, x.dtype)
    out = jnp.clip(out, low, high)
    ok = verify(x, out, constraints)["valid"]
    return jnp.where(per_example_value(ok, out) > 0, out, x)


def verify(x, x_adv, constraints: Constraints) -> dict[str, jax.Array]:
    """Per example ``[B]``: whether ``x_adv`` is an admissible point, and why not.

    Args:
      x: ``[B, ...]`` the clean inputs.
      x_adv: ``[B, ...]`` the points to check.
      constraints: the ball (measured with ``threat.norm``) and the box.

    Returns:
      ``{"valid", "non_finite", "outside_ball", "outside_box"}`` boolean masks;
      ``valid`` is true when the point is finite, its perturbation's norm is at
      most ``eps * (1 + 1e-6)`` (no ball when ``eps`` is ``None``) and every value
      is inside ``[clip_min, clip_max]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._guard import Constraints, verify
      >>> x_adv = jnp.array([[0.1, 0.0], [0.5, 0.0], [jnp.nan, 0.0], [-0.1, 0.0]])
      >>> checks = verify(jnp.zeros((4, 2)), x_adv, Constraints(linf, 0.2, 0.0, 1.0))
      >>> for name in ("valid", "non_finite", "outside_ball", "outside_box"):
      ...     print(name, checks[name].tolist())
      valid [True, False, False, False]
      non_finite [False, False, True, False]
      outside_ball [False, True, False, False]
      outside_box [False, False, False, True]
    """
    work = compute_dtype(jnp.result_type(x))
    xc, xa = jnp.asarray(x).astype(work), jnp.asarray(x_adv).astype(work)
    non_finite = ~_per_example(jnp.isfinite(xa))
    safe = jnp.where(jnp.isfinite(xa), xa, xc)
    low, high = constraints.clip_min, constraints.clip_max
    outside_box = ~_per_example((safe >= low) & (safe <= high)) & ~non_finite
    if constraints.eps is None:
        outside_ball = jnp.zeros_like(non_finite)
    else:
        threat = constraints.threat
        eps = jnp.broadcast_to(jnp.asarray(constraints.eps, work), non_finite.shape)
        outside_ball = (threat.norm(safe - xc) > eps * (1 + BALL_SLACK)) & ~non_finite
    reasons = dict(non_finite=non_finite, outside_ball=outside_ball, outside_box=outside_box)
    return dict(valid=~(non_finite | outside_box | outside_ball), **reasons)


def checked_then_compiled(check, core):
    """``attack(logits_fn, x, y, *extras, key)``: ``check`` eagerly, ``core`` compiled per model.

    The checks run outside the compiled program so that, called eagerly, a bad
    input is a plain ``ValueError``; the core is jitted with the model as a static
    argument, so repeated eager calls reuse one compiled program.

    Args:
      check: ``(logits_fn, x, y, *extras) -> None``, raising on bad inputs.
      core: ``(logits_fn, x, y, *extras, key) -> out``.

    Returns:
      ``attack(logits_fn, x, y, *extras, key)`` (``extras``: further per-example
      arrays an attack may take, such as :func:`~advjax.attacks.square_from`'s
      start points; most take none).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._guard import checked_then_compiled
      >>> def check(logits_fn, x, y):
      ...     if x.ndim != 2:
      ...         raise ValueError("x must be [B, D]")
      >>> attack = checked_then_compiled(check, lambda f, x, y, *, key: x + 1)
      >>> attack(jnp.negative, jnp.zeros((1, 2)), jnp.array([0]), key=jax.random.key(0)).tolist()
      [[1.0, 1.0]]
    """
    compiled = jax.jit(core, static_argnums=0)

    def attack(logits_fn, x, y, *extras, key):
        x, y, extras = jnp.asarray(x), jnp.asarray(y), tuple(jnp.asarray(e) for e in extras)
        check(logits_fn, x, y, *extras)
        return (compiled if hashable(logits_fn) else core)(logits_fn, x, y, *extras, key=key)

    return attack


def admissible(attack, x, x_adv) -> jax.Array:
    """Per example ``[B]``: whether ``x_adv`` may count as ``attack``'s adversarial example.

    Uses ``attack.constraints`` when the attack has them (every built advjax
    attack does); for any other callable, only finiteness can be checked. An
    attack whose output already passed :func:`enforce` (``attack.enforced``)
    needs no second check.

    Args:
      attack: the attack that produced ``x_adv``.
      x: ``[B, ...]`` the clean inputs.
      x_adv: ``[B, ...]`` its output.

    Returns:
      ``[B]`` bool.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._guard import admissible
      >>> unchecked = lambda logits_fn, x, y, *, key: x  # not built by advjax
      >>> admissible(unchecked, jnp.zeros((2, 1)), jnp.array([[0.0], [jnp.nan]])).tolist()
      [True, False]
    """
    if getattr(attack, "enforced", False):
        return jnp.ones(jnp.shape(x_adv)[0], bool)
    constraints = getattr(attack, "constraints", None)
    if constraints is None:
        return _per_example(jnp.isfinite(jnp.asarray(x_adv)))
    return verify(x, x_adv, constraints)["valid"]


def is_zero_budget(eps) -> bool:
    """Whether ``eps`` is one concrete budget of 0: a ball that holds only the clean input.

    An attack with such a budget returns its input unchanged without running (or
    compiling) its loop: every point it could find is projected back onto ``x``.
    A traced budget, a per-example array of budgets or ``None`` (no ball) is not.

    Args:
      eps: the budget an attack was built with.

    Returns:
      ``True`` for a scalar Python, NumPy or concrete JAX zero.

    Example:
      >>> import numpy as np
      >>> from advjax.attacks._guard import is_zero_budget
      >>> is_zero_budget(0.0), is_zero_budget(np.float32(0)), is_zero_budget(0.1)
      (True, True, False)
      >>> is_zero_budget(None), is_zero_budget(np.zeros(3))
      (False, False)
    """
    if eps is None or isinstance(eps, jax.core.Tracer) or np.ndim(eps) != 0:
        return False
    return float(eps) == 0.0


def guarded(
    run,
    *,
    name: str,
    eps,
    norm: str | ThreatModel | None,
    clip_min: float,
    clip_max: float,
    min_classes: int = 2,
    tuple_output: bool = False,
    check_extras: Callable | None = None,
):
    """Wraps an attack's inner ``run(logits_fn, x, y, *, key)`` with the validation layer.

    The returned attack checks ``x``, ``y`` and ``eps`` (static checks while
    tracing, value checks alive under ``jax.jit``), checks the model's class
    count against ``min_classes``, runs ``run`` on float32 inputs (float64 for
    float64) with labels as int32 or float32 rows, and returns a result that
    :func:`enforce` made admissible, in the input's dtype.
    With a concrete budget of 0 (:func:`is_zero_budget`) in a built-in norm, a
    single output and a hashable model, the attack returns its input as it is,
    without running or compiling its loop.

    Args:
      run: the attack's loop.
      name: the attack's name, used in error messages.
      eps: the budget (``None``: no ball, a minimum-norm attack).
      norm: the threat model of ``eps``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.
      min_classes: the fewest classes the attack can work with.
      tuple_output: ``run`` returns ``(x_adv, *extras)``; extras pass through.
      check_extras: for an attack that takes further per-example arrays,
        ``run(logits_fn, x, y, *extras, key)``: ``(x, *extras) -> None``, raising
        on bad ones (static checks: they run while tracing too). ``None``: the
        attack takes none, and any given is refused.

    Returns:
      ``attack(logits_fn, x, y, *, key)`` (with the extras, if any, after ``y``)
      with ``attack.constraints`` set.

    Raises:
      TypeError, ValueError, InvalidInputError: from the validation layer, when
        built (range, budget) or called (inputs, labels, class count); see
        ``docs/validation.md``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._guard import guarded
      >>> escape = lambda logits_fn, x, y, *, key: x + 1.0  # leaves ball and box
      >>> attack = guarded(escape, name="escape", eps=0.1, norm="linf", clip_min=0, clip_max=1)
      >>> f = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], -1)
      >>> attack(f, jnp.full((1, 2), 0.5), jnp.array([0]), key=jax.random.key(0)).tolist()
      [[0.5999999642372131, 0.5999999642372131]]
    """
    check_range(clip_min, clip_max)
    check_epsilon(eps)  # a traced budget is checked inside the program it belongs to
    threat = get_threat_model(norm) if norm is not None else None
    constraints = Constraints(threat, eps, float(clip_min), float(clip_max))
    # Only a built-in norm is known to hold nothing but x at radius 0 (a user's threat model
    # may leave some coordinates free), and a tuple output carries figures only the loop
    # knows (Square's query counts).
    zero_budget = is_zero_budget(eps) and not tuple_output and threat in THREAT_MODELS.values()

    def check(logits_fn, x, y, *extras):
        check_classes(check_batch(logits_fn, x, y, clip_min, clip_max), min_classes, name)
        if check_extras is not None:
            check_extras(x, *extras)
        elif extras:
            raise TypeError(
                f"{name} takes (logits_fn, x, y, *, key), got {len(extras)} more positional "
                "argument(s); pass the key as key=..."
            )

    def core(logits_fn, x, y, *extras, key):
        x = jax.lax.stop_gradient(x)
        extras = tuple(jax.lax.stop_gradient(e) for e in extras)
        inputs = (x.astype(compute_dtype(x.dtype)), as_targets(y), *extras, key)
        if zero_budget and hashable(logits_fn):  # an unhashable model runs eagerly, as ever
            # The ball of radius 0 holds only x: nothing to search, nothing to compile. The
            # loop is still traced (not run), so its own checks (a loss's class count) raise.
            jax.eval_shape(lambda *a: run(logits_fn, *a[:-1], key=a[-1]), *inputs)
            return enforce(x, x, constraints)
        out = run(logits_fn, *inputs[:-1], key=key)
        x_adv, *extras = out if tuple_output else (out,)
        x_adv = enforce(x, jax.lax.stop_gradient(x_adv), constraints)
        return (x_adv, *extras) if tuple_output else x_adv

    attack = functools.wraps(run)(checked_then_compiled(check, core))
    attack.constraints = constraints
    attack.enforced = True
    # Transforms that repeat an attack (restarts) wrap its loop and validate once.
    attack.inner = run
    attack.rewrap = functools.partial(
        guarded,
        name=name,
        eps=eps,
        norm=norm,
        clip_min=clip_min,
        clip_max=clip_max,
        min_classes=min_classes,
        tuple_output=tuple_output,
        check_extras=check_extras,
    )
    attack.attack_name = name
    attack.min_classes = min_classes
    return attack
