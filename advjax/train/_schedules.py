"""Schedules as optax schedules: learning rates, epsilon ramps and attack curricula.

Every schedule is a function of the step (``state.step``), so it lives inside
the compiled step. An attack's *number of steps* is different: it sets the
length of a compiled loop and must be a Python ``int`` inside ``jit``. A
curriculum over attack strength is therefore :func:`staged_step`: one compiled
step per stage, chosen on the host from the step counter (each stage compiles
once, at its first use). Masking (always running the largest number of steps
and freezing the iterate after ``k`` of them) would cost the largest stage's
time in every stage, which defeats the purpose of a curriculum.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import optax

from advjax._checks import check_positive_int


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")


def piecewise_lr(
    init_value: float, total_steps: int, milestones: Sequence[float] = (0.5, 0.75), factor=0.1
) -> optax.Schedule:
    """Step decay: ``init_value``, times ``factor`` at each milestone (fractions of training).

    Madry et al. (2018, arXiv:1706.06083) and Rice et al. (2020, arXiv:2002.11569)
    decay by 10 at 50% and 75%.

    Args:
      init_value: Initial learning rate.
      total_steps: Steps of the whole training (> 0).
      milestones: Fractions of ``total_steps`` in ``[0, 1]`` where the rate decays.
      factor: Multiplier applied at each milestone.

    Returns:
      An optax schedule ``step -> learning rate``.

    Raises:
      ValueError: For a non-positive ``total_steps`` or a milestone outside ``[0, 1]``.

    Example:
      >>> from advjax import train
      >>> lr = train.piecewise_lr(0.1, 100)
      >>> [round(float(lr(s)), 4) for s in (0, 50, 75)]
      [0.1, 0.01, 0.001]
    """
    total_steps = check_positive_int(total_steps, "total_steps")
    for m in milestones:
        _check_fraction(m, "milestones")
    boundaries = {int(m * total_steps): factor for m in milestones}
    return optax.piecewise_constant_schedule(init_value, boundaries)


def triangular_lr(
    peak: float, total_steps: int, *, peak_at: float = 0.4, start: float = 0.0, end: float = 0.0
) -> optax.Schedule:
    """One cycle: linear from ``start`` to ``peak`` at ``peak_at`` of training, then to ``end``.

    The "cyclic" learning rate of Wong, Rice & Kolter (2020, arXiv:2001.03994)
    (``peak_at=0.4`` on MNIST and CIFAR-10; Smith 2017's one-cycle policy,
    arXiv:1506.01186). The rise lasts ``max(round(peak_at * total_steps), 1)``
    steps.

    Args:
      peak: Learning rate at the peak.
      total_steps: Steps of the whole training (> 0).
      peak_at: Fraction of training at the peak, in ``[0, 1]``.
      start: Learning rate at step 0.
      end: Learning rate at ``total_steps``.

    Returns:
      An optax schedule ``step -> learning rate``.

    Raises:
      ValueError: For a non-positive ``total_steps`` or ``peak_at`` outside ``[0, 1]``.

    Example:
      >>> from advjax import train
      >>> lr = train.triangular_lr(1.0, 10)
      >>> [round(float(lr(s)), 2) for s in (0, 4, 7, 10)]
      [0.0, 1.0, 0.5, 0.0]
    """
    total_steps = check_positive_int(total_steps, "total_steps")
    _check_fraction(peak_at, "peak_at")
    rise = max(int(round(peak_at * total_steps)), 1)
    fall = max(total_steps - rise, 1)
    return optax.join_schedules(
        [optax.linear_schedule(start, peak, rise), optax.linear_schedule(peak, end, fall)],
        [rise],
    )


def cyclic_lr(low: float, high: float, period: int) -> optax.Schedule:
    """Repeating triangles between ``low`` and ``high`` with ``period`` steps per cycle.

    Args:
      low: Value at the start of every cycle.
      high: Value at mid-cycle.
      period: Steps per cycle (>= 2).

    Returns:
      A schedule ``step -> value`` (float32).

    Raises:
      ValueError: For a ``period`` below 2.

    Example:
      >>> from advjax import train
      >>> lr = train.cyclic_lr(0.0, 1.0, 4)
      >>> [float(lr(s)) for s in (0, 2, 4, 6)]
      [0.0, 1.0, 0.0, 1.0]
    """
    period = check_positive_int(period, "period", minimum=2)

    def schedule(step):
        phase = jnp.mod(jnp.asarray(step, jnp.float32), period) / period
        return low + (high - low) * (1.0 - jnp.abs(2.0 * phase - 1.0))

    return schedule


def cosine_lr(init_value: float, total_steps: int, *, warmup_steps: int = 0, end_value=0.0):
    """Cosine decay to ``end_value`` after an optional linear warm-up from 0.

    Args:
      init_value: Learning rate after the warm-up (at step 0 without one).
      total_steps: Steps of the whole training, warm-up included (> 0).
      warmup_steps: Steps of the linear warm-up from 0 (>= 0).
      end_value: Learning rate at ``total_steps``.

    Returns:
      An optax schedule ``step -> learning rate``.

    Raises:
      ValueError: For a non-positive ``total_steps`` or negative ``warmup_steps``.

    Example:
      >>> from advjax import train
      >>> lr = train.cosine_lr(1.0, 10)
      >>> [round(float(lr(s)), 2) for s in (0, 5, 10)]
      [1.0, 0.5, 0.0]
    """
    total_steps = check_positive_int(total_steps, "total_steps")
    warmup_steps = check_positive_int(warmup_steps, "warmup_steps", minimum=0)
    if warmup_steps == 0:
        return optax.cosine_decay_schedule(init_value, total_steps, alpha=end_value / init_value)
    return optax.warmup_cosine_decay_schedule(
        0.0, init_value, warmup_steps, total_steps, end_value=end_value
    )


def epsilon_ramp(
    epsilon: float,
    ramp_steps: int,
    *,
    start_step: int = 0,
    kind: str = "linear",
    initial: float = 0.0,
) -> optax.Schedule:
    """A value held at ``initial`` until ``start_step``, then ramped to ``epsilon``.

    The ramp lasts ``ramp_steps`` steps (``0`` jumps to ``epsilon`` at
    ``start_step``); ``epsilon`` is held after it. ``kind="linear"`` is the ramp of
    Gowal et al. (IBP, arXiv:1810.12715) and of PGD training at eps 0.3 on MNIST
    (without one, PGD-AT of small nets often collapses); ``kind="smooth"`` is the
    smoothstep ``3t^2 - 2t^3``, whose slope is zero at both ends (a smooth ramp in
    the spirit of CROWN-IBP's, Zhang et al., arXiv:1906.06316). With ``initial``
    the same schedule ramps any weight the recipes ramp together with the budget:
    IBP's kappa (``initial=1.0``, ``epsilon=0.5``) or CROWN-IBP's beta
    (``initial=1.0``, ``epsilon=0.0``).

    Args:
        epsilon: Value after the ramp (>= 0; a budget in input units, or a weight).
        ramp_steps: Length of the ramp in steps (>= 0).
        start_step: Steps held at ``initial`` before the ramp (>= 0).
        kind: ``"linear"`` or ``"smooth"``.
        initial: Value before the ramp.

    Returns:
        An optax schedule ``step -> value`` (a float32 scalar).

    Raises:
        ValueError: For a negative ``epsilon`` or step count, or an unknown ``kind``.

    Example:
      >>> from advjax import train
      >>> ramp = train.epsilon_ramp(0.3, 10, kind="smooth")
      >>> [round(float(ramp(s)), 3) for s in (0, 5, 10, 20)]
      [0.0, 0.15, 0.3, 0.3]
      >>> kappa = train.epsilon_ramp(0.5, 20, start_step=10, initial=1.0)
      >>> [float(kappa(s)) for s in (0, 10, 20, 30, 100)]
      [1.0, 1.0, 0.75, 0.5, 0.5]
    """
    if not epsilon >= 0.0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}.")
    ramp_steps = check_positive_int(ramp_steps, "ramp_steps", minimum=0)
    start_step = check_positive_int(start_step, "start_step", minimum=0)
    if kind not in ("linear", "smooth"):
        raise ValueError(f"kind must be 'linear' or 'smooth', got {kind!r}.")

    def schedule(step):
        if ramp_steps == 0:
            t = (jnp.asarray(step) >= start_step).astype(jnp.float32)
        else:
            t = jnp.clip((jnp.asarray(step, jnp.float32) - start_step) / ramp_steps, 0.0, 1.0)
        if kind == "smooth":
            t = t * t * (3.0 - 2.0 * t)
        if initial == 0.0:
            return epsilon * t
        return initial + (epsilon - initial) * t

    return schedule


def curriculum(stages: Sequence[tuple[int, object]]) -> Callable[[int], object]:
    """A piecewise-constant host-side schedule: ``[(first_step, value), ...]`` -> ``step -> value``.

    Values may be anything (e.g. PGD steps); the first stage must start at 0.
    Use it with :func:`staged_step` for quantities that must be static in ``jit``.

    Args:
      stages: ``(first_step, value)`` pairs with distinct first steps, one at 0.

    Returns:
      A host-side function ``step (int) -> value``.

    Raises:
      ValueError: Without a stage at step 0, or for two stages at the same step.

    Example:
      >>> from advjax import train
      >>> steps_at = train.curriculum([(0, 1), (100, 5), (300, 10)])
      >>> steps_at(0), steps_at(150), steps_at(1000)
      (1, 5, 10)
    """
    stages = sorted(stages, key=lambda s: s[0])
    if not stages or stages[0][0] != 0:
        raise ValueError(f"a curriculum needs a first stage starting at step 0, got {stages}.")
    starts = [int(s[0]) for s in stages]
    if len(set(starts)) != len(starts):
        raise ValueError(f"curriculum stages must start at distinct steps, got {starts}.")

    def value_at(step: int):
        return stages[bisect.bisect_right(starts, int(step)) - 1][1]

    return value_at


def staged_step(build_step: Callable[[object], Callable], stage_of: Callable[[int], object]):
    """A step that switches between compiled steps as ``stage_of(state.step)`` changes.

    ``build_step(value)`` returns a compiled step (e.g. ``make_step(pgd_at(...
    steps=value ...))``); it is called once per distinct value, when first
    needed, so each curriculum stage compiles once. The dispatch reads
    ``state.step`` on the host (one scalar per step, which :func:`fit` reads
    anyway); keys and resume behave as with a single step.

    Args:
      build_step: ``value -> compiled step``, e.g. ``lambda k: make_step(...)``.
      stage_of: ``step (int) -> value`` on the host, e.g. :func:`curriculum`.

    Returns:
      ``step(state, batch, key) -> (state, metrics)``, with the compiled steps by
      value in ``step.compiled``.

    Example:
      >>> import advjax
      >>> from advjax import train
      >>> steps_at = train.curriculum([(0, 1), (500, 10)])
      >>> step = train.staged_step(
      ...     lambda k: train.make_step(train.pgd_at(
      ...         lambda e: advjax.pgd(e, steps=k, step_size=2.5 * e / k, keep_best=False), 0.3)),
      ...     steps_at)
    """
    compiled: dict = {}

    def step(state, batch, key):
        value = stage_of(int(state.step))
        if value not in compiled:
            compiled[value] = build_step(value)
        return compiled[value](state, batch, key)

    step.compiled = compiled
    return step
