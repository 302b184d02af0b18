"""Certified training objectives: IBP (Gowal et al., 2018) and CROWN-IBP (Zhang et al., 2020).

Both objectives have the signature of :mod:`advjax.train` objectives,
``(params, state, batch, key) -> (loss, (metrics, batch_stats))``, and plug into
``advjax.train.make_step``. The loss is

``kappa * CE(clean logits) + (1 - kappa) * CE(worst-case logits)``

where the worst-case logits are minus the lower bounds of the margins
``logit_y - logit_j`` over the clipped L-inf ball of radius ``eps`` (the label's
own entry is 0). The margin bounds are

``beta * IBP + (1 - beta) * CROWN-IBP``

with IBP using the elision of the specification into the last affine layer.
``eps``, ``kappa`` and ``beta`` are optax schedules of the step (constants are
accepted); :func:`ramp_schedule` builds the warm-up-then-ramp schedules of the
papers.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from advjax.certify._crown import _backward, _Node, _record_batched

__all__ = [
    "ramp_schedule",
    "ibp_schedules",
    "certified_training",
    "ibp_training",
    "crown_ibp_training",
    "batched_margin_lower_bounds",
    "gaussian_noise_training",
]

Schedule = float | Callable[[jax.Array], jax.Array]
SHAPES = ("linear", "smooth")


def _as_schedule(value: Schedule, name: str) -> Callable[[jax.Array], jax.Array]:
    if callable(value):
        return value
    try:
        return optax.constant_schedule(float(value))
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a number or a schedule (callable); got {value!r}"
        ) from None


def ramp_schedule(
    start: float,
    end: float,
    *,
    warmup_steps: int,
    ramp_steps: int,
    shape: str = "linear",
) -> optax.Schedule:
    """Warm-up at ``start``, then a ramp to ``end`` over ``ramp_steps``, then ``end``.

    ``"linear"`` is the ramp of Gowal et al. (2018); ``"smooth"`` is the cubic
    smoothstep ``3t^2 - 2t^3`` (zero slope at both ends), a smoothed ramp in the
    spirit of the smoothed schedule of CROWN-IBP.

    Args:
        start: Value during warm-up.
        end: Value after the ramp.
        warmup_steps: Steps held at ``start`` (>= 0).
        ramp_steps: Steps of the ramp (>= 0; 0 jumps to ``end``).
        shape: ``"linear"`` or ``"smooth"``.

    Returns:
        An optax schedule ``step -> value``.

    Raises:
        ValueError: For negative step counts or an unknown ``shape``.

    Example:
        >>> s = ramp_schedule(0.0, 0.4, warmup_steps=10, ramp_steps=20)
        >>> [round(float(s(t)), 3) for t in (0, 10, 20, 30, 100)]
        [0.0, 0.0, 0.2, 0.4, 0.4]
        >>> round(float(ramp_schedule(1.0, 0.5, warmup_steps=0, ramp_steps=4,
        ...                           shape="smooth")(1)), 4)
        0.9219
    """
    if warmup_steps < 0 or ramp_steps < 0:
        raise ValueError(
            f"warmup_steps and ramp_steps must be >= 0; got {warmup_steps}, {ramp_steps}"
        )
    if shape not in SHAPES:
        raise ValueError(f"Unknown shape {shape!r}; valid shapes: {list(SHAPES)}")

    def schedule(step):
        t = (jnp.asarray(step, jnp.float32) - warmup_steps) / max(ramp_steps, 1)
        t = jnp.clip(t, 0.0, 1.0)
        if ramp_steps == 0:
            t = (jnp.asarray(step) >= warmup_steps).astype(jnp.float32)
        if shape == "smooth":
            t = t * t * (3.0 - 2.0 * t)
        return start + (end - start) * t

    return schedule


def ibp_schedules(
    train_eps: float,
    *,
    warmup_steps: int,
    ramp_steps: int,
    kappa_start: float = 1.0,
    kappa_end: float = 0.5,
    shape: str = "linear",
) -> tuple[optax.Schedule, optax.Schedule]:
    """The ``(eps, kappa)`` schedules of Gowal et al. (2018).

    During warm-up ``eps = 0`` and ``kappa = kappa_start`` (clean training); then
    ``eps`` ramps to ``train_eps`` while ``kappa`` ramps to ``kappa_end``. The paper
    trains with ``train_eps = 1.1 x`` (or more) the test epsilon; on MNIST it uses
    0.2 for a test epsilon of 0.1 and 0.4 for 0.3.

    Args:
        train_eps: Final training epsilon.
        warmup_steps: Clean steps before the ramp.
        ramp_steps: Length of the ramp in steps.
        kappa_start: Weight of the clean loss during warm-up.
        kappa_end: Weight of the clean loss after the ramp.
        shape: ``"linear"`` or ``"smooth"`` (see :func:`ramp_schedule`).

    Returns:
        ``(eps_schedule, kappa_schedule)``.

    Example:
        >>> eps, kappa = ibp_schedules(0.4, warmup_steps=2, ramp_steps=10)
        >>> float(eps(0)), float(kappa(0)), round(float(eps(7)), 2), float(kappa(12))
        (0.0, 1.0, 0.2, 0.5)
    """
    if train_eps < 0:
        raise ValueError(f"train_eps must be non-negative; got {train_eps}")
    kw = dict(warmup_steps=warmup_steps, ramp_steps=ramp_steps, shape=shape)
    return ramp_schedule(0.0, train_eps, **kw), ramp_schedule(kappa_start, kappa_end, **kw)


def _batch_lower_bounds(fn, lo, hi, specs, beta, use_crown: bool, parts: bool = False):
    """Lower bounds of ``specs[i] @ fn(x_i)`` over ``[lo_i, hi_i]`` for every example ``i``.

    The tape of the per-example ``fn`` is recorded once with batched boxes and the
    backward passes run on all examples together (:func:`_record_batched`).
    With ``parts`` (and ``use_crown``) returns ``(ibp, crown_ibp)`` unmixed.
    """
    tape = _record_batched(fn, lo, hi)
    if len(tape.outputs) != 1:
        raise ValueError("Certified training needs a model with a single logits output.")
    (out,) = tape.outputs
    if not isinstance(out, _Node):  # constant network
        return specs @ jnp.asarray(out).reshape(-1)
    out_shape = tape.boxes[out.id].lower.shape[1:]
    a0 = specs.reshape((*specs.shape[:2], *out_shape))
    ibp = _backward(tape, out.id, a0, "concretize")
    if not use_crown:
        return ibp
    crown = _backward(tape, out.id, a0, "relax")
    return (ibp, crown) if parts else beta * ibp + (1.0 - beta) * crown


def batched_margin_lower_bounds(
    logits_fn: Callable,
    x,
    y,
    eps,
    *,
    beta=1.0,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
):
    """Differentiable lower bounds of ``logit_y - logit_j`` used for certified training.

    ``beta * IBP(elided) + (1 - beta) * CROWN-IBP``; with a concrete ``beta == 1``
    no CROWN pass is traced. A traced ``beta`` (a schedule) always runs the
    CROWN-IBP pass and uses the IBP bounds alone where ``beta >= 1``; to skip the
    pass once a schedule has reached 1, continue with a concrete ``beta=1``
    objective (``experiments/crown_ibp_mnist.py`` does after the ramp).

    Args:
        logits_fn: Batched eval-mode model ``x[B, ...] -> logits[B, K]``.
        x: Inputs ``(B, ...)``.
        y: Integer labels ``(B,)``.
        eps: Scalar L-inf radius (may be traced).
        beta: Weight of the IBP bounds in ``[0, 1]`` (may be traced).
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        Array ``(B, K)``; the label's column is 0.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], -x[:, 0]], axis=1)
        >>> m = batched_margin_lower_bounds(f, jnp.array([[0.5]]), jnp.array([0]), 0.1)
        >>> [round(float(v), 4) for v in m[0]]
        [0.0, 0.8]
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    num_classes = jax.eval_shape(logits_fn, x[:1]).shape[-1]
    lo, hi = x - eps, x + eps
    if clip_min is not None:
        lo, hi = jnp.maximum(lo, clip_min), jnp.maximum(hi, clip_min)
    if clip_max is not None:
        lo, hi = jnp.minimum(lo, clip_max), jnp.minimum(hi, clip_max)
    # Only the rows j != y are bounded (the label's row of the specification is
    # zero, its bound is 0): one backward row fewer per example.
    others = jnp.arange(max(num_classes - 1, 0))[None] + (
        jnp.arange(max(num_classes - 1, 0))[None] >= y[:, None]
    )
    specs = jax.nn.one_hot(y, num_classes, dtype=x.dtype)[:, None] - jax.nn.one_hot(
        others, num_classes, dtype=x.dtype
    )

    def fn(xi):
        return logits_fn(xi[None])[0]

    def run(use_crown, b):
        return _batch_lower_bounds(fn, lo, hi, specs, b, use_crown)

    static_one = isinstance(beta, (int, float)) and float(beta) == 1.0
    if static_one:
        m = run(False, 1.0)
    else:
        # Not lax.cond: XLA:CPU keeps convolutions inside a conditional in a slow,
        # non-canonical form (a CROWN-IBP training step took 4x as long).
        beta = jnp.asarray(beta, x.dtype)
        ibp, crown = _batch_lower_bounds(fn, lo, hi, specs, beta, True, parts=True)
        # Select before mixing: 0 * an infinite CROWN bound would give NaN gradients.
        crown = jnp.where(beta < 1.0, crown, ibp)
        m = beta * ibp + (1.0 - beta) * crown
    rows = jnp.arange(x.shape[0])[:, None]
    return jnp.zeros((x.shape[0], num_classes), m.dtype).at[rows, others].set(m)


def _check_no_batch_stats(state) -> None:
    if getattr(state, "batch_stats", None):
        raise ValueError(
            "Certified training bounds the eval-mode model and does not support BatchNorm "
            "batch statistics; use a model without BatchNorm (e.g. ibp_small, ibp_medium)."
        )


def certified_training(
    epsilon: Schedule,
    *,
    kappa: Schedule = 0.5,
    beta: Schedule = 1.0,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> Callable:
    """Objective ``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)``.

    The worst-case logits are ``-m`` where ``m`` lower-bounds the margins
    ``logit_y - logit_j`` over the clipped L-inf ball of radius ``epsilon``, with
    ``m = beta * IBP + (1 - beta) * CROWN-IBP`` (IBP with specification elision).
    Bounds and loss use the eval-mode model; models with BatchNorm statistics are
    rejected. :func:`ibp_training` and :func:`crown_ibp_training` are the two
    recipes.

    Args:
        epsilon: Training radius: a number or an optax schedule of the step.
        kappa: Weight of the clean loss: a number or a schedule.
        beta: Weight of the IBP bounds (``1``: pure IBP): a number or a schedule.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        An objective ``(params, state, batch, key) -> (loss, (metrics,
        batch_stats))`` for ``advjax.train.make_step``. Metrics: ``loss``,
        ``clean_loss``, ``robust_loss``, ``clean_acc``, ``verified_acc`` (share of
        the batch certified at the current ``eps`` by the training bounds),
        ``eps``, ``kappa``, ``beta``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from advjax import models, train
        >>> model = models.get_model("ibp_small")
        >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
        >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
        ...                                 tx=optax.adam(1e-3))
        >>> objective = certified_training(0.1, kappa=0.5, beta=0.5)
        >>> batch = (jnp.zeros((2, 28, 28, 1)), jnp.array([0, 1]))
        >>> loss, (metrics, _) = objective(state.params, state, batch, jax.random.key(0))
        >>> bool(jnp.isfinite(loss)), float(metrics["beta"])
        (True, 0.5)
    """
    eps_at = _as_schedule(epsilon, "epsilon")
    kappa_at = _as_schedule(kappa, "kappa")
    static_ibp = not callable(beta) and float(beta) == 1.0
    beta_at = _as_schedule(beta, "beta")

    def objective(params, state, batch, key):
        del key  # deterministic
        _check_no_batch_stats(state)
        x, y = batch
        step = state.step
        eps = jnp.asarray(eps_at(step), jnp.float32)
        k = jnp.asarray(kappa_at(step), jnp.float32)
        b = 1.0 if static_ibp else jnp.asarray(beta_at(step), jnp.float32)
        variables = state.variables(params)

        def logits_fn(z):
            return state.apply_fn(variables, z, train=False)

        clean_logits = logits_fn(x)
        margins = batched_margin_lower_bounds(
            logits_fn, x, y, eps, beta=b, clip_min=clip_min, clip_max=clip_max
        )
        worst = -margins
        clean_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(clean_logits, y))
        robust_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(worst, y))
        loss = k * clean_loss + (1.0 - k) * robust_loss
        num_classes = margins.shape[-1]
        others = jnp.arange(num_classes)[None] != y[:, None]
        verified = jnp.all(jnp.where(others, margins > 0, True), axis=-1)
        metrics = {
            "loss": loss,
            "clean_loss": clean_loss,
            "robust_loss": robust_loss,
            "clean_acc": jnp.mean(jnp.argmax(clean_logits, -1) == y),
            "verified_acc": jnp.mean(verified),
            "eps": eps,
            "kappa": k,
            "beta": jnp.asarray(b, jnp.float32),
        }
        return loss, (metrics, state.batch_stats)

    return objective


def ibp_training(
    epsilon: Schedule,
    *,
    kappa: Schedule = 0.5,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> Callable:
    """IBP training (Gowal et al., 2018): ``kappa * CE(clean) + (1 - kappa) * CE(IBP)``.

    Use :func:`ibp_schedules` for the paper's schedules: warm-up with ``eps = 0``
    and ``kappa = 1``, then a (linear or smooth) ramp of ``eps`` to the training
    epsilon (``>= 1.1 x`` the test epsilon) and of ``kappa`` to 0.5.

    Args:
        epsilon: Training radius: a number or an optax schedule of the step.
        kappa: Weight of the clean loss: a number or a schedule.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        An objective for ``advjax.train.make_step`` (see :func:`certified_training`).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from advjax import models, train
        >>> model = models.get_model("ibp_small")
        >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
        >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
        ...                                 tx=optax.adam(1e-3))
        >>> eps, kappa = ibp_schedules(0.2, warmup_steps=100, ramp_steps=500)
        >>> step = train.make_step(ibp_training(eps, kappa=kappa))
        >>> batch = (jnp.zeros((2, 28, 28, 1)), jnp.array([0, 1]))
        >>> state, metrics = step(state, batch, jax.random.key(1))
        >>> float(metrics["kappa"]), float(metrics["eps"])
        (1.0, 0.0)
    """
    return certified_training(epsilon, kappa=kappa, beta=1.0, clip_min=clip_min, clip_max=clip_max)


def crown_ibp_training(
    epsilon: Schedule,
    *,
    kappa: Schedule = 0.0,
    beta: Schedule = 0.0,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> Callable:
    """CROWN-IBP training (Zhang et al., 2020).

    The margin bounds are ``beta * IBP + (1 - beta) * CROWN-IBP`` (``beta`` is the
    IBP weight; the paper's ``beta`` is the CROWN-IBP weight, i.e. ``1 - beta``
    here). The paper ramps the CROWN-IBP weight from 1 to 0 together with
    ``eps``, i.e. here ``beta`` from 0 to 1, e.g.
    ``ramp_schedule(0.0, 1.0, warmup_steps=w, ramp_steps=r)``. With a schedule
    the CROWN pass runs every step (weighted 0 once ``beta`` is 1); after the
    ramp, training on with ``ibp_training`` (same ``epsilon`` and ``kappa``
    schedules, same state) gives the same loss without that pass.

    Args:
        epsilon: Training radius: a number or an optax schedule of the step.
        kappa: Weight of the clean loss: a number or a schedule.
        beta: Weight of the IBP bounds: a number or a schedule.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        An objective for ``advjax.train.make_step`` (see :func:`certified_training`).

    Example:
        >>> objective = crown_ibp_training(
        ...     ramp_schedule(0.0, 0.4, warmup_steps=10, ramp_steps=100),
        ...     kappa=ramp_schedule(1.0, 0.0, warmup_steps=10, ramp_steps=100),
        ...     beta=ramp_schedule(0.0, 1.0, warmup_steps=10, ramp_steps=100))
    """
    return certified_training(epsilon, kappa=kappa, beta=beta, clip_min=clip_min, clip_max=clip_max)


def gaussian_noise_training(sigma: float) -> Callable:
    """Training on Gaussian-noise-augmented inputs for randomized smoothing (Cohen et al.).

    The loss is the cross-entropy of the train-mode model on ``x + N(0, sigma^2 I)``
    (BatchNorm is allowed; its statistics are updated on the noisy batch).

    Args:
        sigma: Noise standard deviation (> 0), the one later used by
            :func:`smooth_certify`.

    Returns:
        An objective for ``advjax.train.make_step``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from advjax import models, train
        >>> model = models.get_model("mlp")
        >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
        >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
        ...                                 tx=optax.sgd(0.1))
        >>> step = train.make_step(gaussian_noise_training(0.25))
        >>> state, metrics = step(state, (jnp.zeros((2, 28, 28, 1)), jnp.array([0, 1])),
        ...                       jax.random.key(1))
        >>> sorted(metrics)
        ['clean_acc', 'loss']
    """
    from advjax.certify._smoothing import gaussian_noise_augment
    from advjax.train import train_logits

    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma}")

    def objective(params, state, batch, key):
        x, y = batch
        noise_key, dropout_key = jax.random.split(key)
        noisy = gaussian_noise_augment(x, sigma, noise_key)
        logits, batch_stats = train_logits(state, params, noisy, dropout_key)
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        acc = jnp.mean(jnp.argmax(logits, -1) == y)
        return loss, ({"loss": loss, "clean_acc": acc}, batch_stats)

    return objective
