"""Certified training objectives: IBP, CROWN-IBP and Gaussian noise for randomized smoothing.

The objectives have the signature of every :mod:`advjax.train` objective,
``(params, state, batch, key) -> (loss, (metrics, batch_stats))``, and plug into
:func:`advjax.train.make_step`. The bounds come from :mod:`advjax.certify`
(:func:`advjax.certify.batched_margin_lower_bounds`); certify never imports
train. The certified loss is

``kappa * CE(clean logits) + (1 - kappa) * CE(worst-case logits)``

where the worst-case logits are minus the lower bounds of the margins
``logit_y - logit_j`` over the clipped L-inf ball of radius ``eps`` (the label's
own entry is 0), and the margin bounds are

``beta * CROWN-IBP + (1 - beta) * IBP``

(``beta`` is the CROWN-IBP weight, as in Zhang et al., arXiv:1906.06316). ``eps``,
``kappa`` and ``beta`` are optax schedules of the step (constants are accepted);
:func:`advjax.train.epsilon_ramp` builds the warm-up-then-ramp schedules of the
papers and :func:`ibp_schedules` the ``(eps, kappa)`` pair of IBP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from advjax.certify import batched_margin_lower_bounds, gaussian_noise_augment
from advjax.train._objectives import Objective, Schedule, as_schedule
from advjax.train._schedules import epsilon_ramp
from advjax.train._state import train_logits

__all__ = [
    "certified_training",
    "crown_ibp_training",
    "gaussian_noise_training",
    "ibp_schedules",
    "ibp_training",
]


def ibp_schedules(
    train_eps: float,
    *,
    warmup_steps: int,
    ramp_steps: int,
    kappa_start: float = 1.0,
    kappa_end: float = 0.5,
    shape: str = "linear",
) -> tuple[optax.Schedule, optax.Schedule]:
    """The ``(eps, kappa)`` schedules of IBP training (Gowal et al., arXiv:1810.12715).

    During warm-up ``eps = 0`` and ``kappa = kappa_start`` (clean training); then
    ``eps`` ramps to ``train_eps`` while ``kappa`` ramps to ``kappa_end``, both with
    :func:`advjax.train.epsilon_ramp`. The paper trains with ``train_eps = 1.1 x``
    (or more) the test epsilon; on MNIST it uses 0.2 for a test epsilon of 0.1 and
    0.4 for 0.3.

    Args:
        train_eps: Final training epsilon (L-inf, input units; >= 0).
        warmup_steps: Clean steps before the ramp (>= 0).
        ramp_steps: Length of the ramp in steps (>= 0).
        kappa_start: Weight of the clean loss during warm-up.
        kappa_end: Weight of the clean loss after the ramp.
        shape: ``"linear"`` or ``"smooth"`` (see :func:`advjax.train.epsilon_ramp`).

    Returns:
        ``(eps_schedule, kappa_schedule)``, optax schedules of the step.

    Raises:
        ValueError: For a negative ``train_eps`` or step count, or an unknown shape.

    Example:
        >>> eps, kappa = ibp_schedules(0.4, warmup_steps=2, ramp_steps=10)
        >>> float(eps(0)), float(kappa(0)), round(float(eps(7)), 2), float(kappa(12))
        (0.0, 1.0, 0.2, 0.5)
    """
    if train_eps < 0:
        raise ValueError(f"train_eps must be non-negative; got {train_eps}")
    if warmup_steps < 0 or ramp_steps < 0:
        raise ValueError(
            f"warmup_steps and ramp_steps must be >= 0; got {warmup_steps}, {ramp_steps}"
        )
    if shape not in ("linear", "smooth"):
        raise ValueError(f"Unknown shape {shape!r}; valid shapes: ['linear', 'smooth']")
    kw = dict(start_step=warmup_steps, kind=shape)
    return (
        epsilon_ramp(train_eps, ramp_steps, **kw),
        epsilon_ramp(kappa_end, ramp_steps, initial=kappa_start, **kw),
    )


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
    beta: Schedule = 0.0,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> Objective:
    """Objective ``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)``.

    The worst-case logits are ``-m`` where ``m`` lower-bounds the margins
    ``logit_y - logit_j`` over the clipped L-inf ball of radius ``epsilon``, with
    ``m = beta * CROWN-IBP + (1 - beta) * IBP`` (IBP with specification elision;
    :func:`advjax.certify.batched_margin_lower_bounds`). Bounds and loss use the
    eval-mode model; models with BatchNorm statistics are rejected.
    :func:`ibp_training` (Gowal et al., arXiv:1810.12715) and
    :func:`crown_ibp_training` (Zhang et al., arXiv:1906.06316) are the two recipes.

    Args:
        epsilon: Training radius (L-inf, input units): a number or an optax
            schedule of the step.
        kappa: Weight of the clean loss in ``[0, 1]``: a number or a schedule.
        beta: Weight of the CROWN-IBP bounds in ``[0, 1]`` (the paper's beta;
            ``0``, the default: pure IBP, no CROWN pass): a number or a schedule.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        An objective ``(params, state, batch, key) -> (loss, (metrics,
        batch_stats))`` for :func:`advjax.train.make_step`. Metrics (scalars):
        ``loss``, ``clean_loss``, ``robust_loss``, ``clean_acc``,
        ``verified_acc`` (share of the batch certified at the current ``eps`` by
        the training bounds), ``eps``, ``kappa``, ``beta``.

    Raises:
        TypeError: If a schedule argument is neither a number nor callable.
        ValueError: (when called) for a state with BatchNorm statistics.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from advjax import models, train
        >>> model = models.get_model("mlp")
        >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
        >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
        ...                                 tx=optax.adam(1e-3))
        >>> objective = jax.jit(certified_training(0.1, kappa=0.5, beta=0.5))
        >>> batch = (jnp.zeros((2, 28, 28, 1)), jnp.array([0, 1]))
        >>> loss, (metrics, _) = objective(state.params, state, batch, jax.random.key(0))
        >>> bool(jnp.isfinite(loss)), float(metrics["beta"])
        (True, 0.5)
    """
    eps_at = as_schedule(epsilon, "epsilon")
    kappa_at = as_schedule(kappa, "kappa")
    beta_at = as_schedule(beta, "beta")
    static_ibp = not callable(beta) and float(beta) == 0.0

    def objective(params, state, batch, key):
        del key  # deterministic
        _check_no_batch_stats(state)
        x, y = batch
        step = state.step
        eps = jnp.asarray(eps_at(step), jnp.float32)
        k = jnp.asarray(kappa_at(step), jnp.float32)
        b = 0.0 if static_ibp else jnp.asarray(beta_at(step), jnp.float32)
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
) -> Objective:
    """IBP training (Gowal et al., arXiv:1810.12715): ``kappa CE(clean) + (1 - kappa) CE(IBP)``.

    Use :func:`ibp_schedules` for the paper's schedules: warm-up with ``eps = 0``
    and ``kappa = 1``, then a (linear or smooth) ramp of ``eps`` to the training
    epsilon (``>= 1.1 x`` the test epsilon) and of ``kappa`` to 0.5. The same as
    :func:`certified_training` with ``beta=0``.

    Args:
        epsilon: Training radius (L-inf, input units): a number or an optax
            schedule of the step.
        kappa: Weight of the clean loss: a number or a schedule.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        An objective for :func:`advjax.train.make_step` (metrics as in
        :func:`certified_training`).

    Raises:
        TypeError: If a schedule argument is neither a number nor callable.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from advjax import models, train
        >>> model = models.get_model("mlp")
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
    return certified_training(epsilon, kappa=kappa, beta=0.0, clip_min=clip_min, clip_max=clip_max)


def crown_ibp_training(
    epsilon: Schedule,
    *,
    kappa: Schedule = 0.0,
    beta: Schedule = 1.0,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
) -> Objective:
    """CROWN-IBP training (Zhang et al., ICLR 2020, arXiv:1906.06316).

    The margin bounds are ``beta * CROWN-IBP + (1 - beta) * IBP``: ``beta`` is the
    CROWN-IBP weight, the paper's beta (its reference code mixes
    ``clb * beta + ilb * (1 - beta)``). The paper ramps beta from 1 to its final
    value (0) together with ``eps``; with the schedules of :func:`ibp_schedules`
    that is ``epsilon_ramp(0.0, ramp_steps, start_step=warmup_steps,
    initial=1.0)``. The default, a constant 1, uses the CROWN-IBP bounds alone;
    the paper's MNIST setting also uses ``kappa = 0`` (the default). With a
    schedule the CROWN pass runs every step (weighted 0 once ``beta`` is 0); after
    the ramp, training on with :func:`ibp_training` (same ``epsilon`` and
    ``kappa`` schedules, same state) gives the same loss without that pass.

    Args:
        epsilon: Training radius (L-inf, input units): a number or an optax
            schedule of the step.
        kappa: Weight of the clean loss: a number or a schedule.
        beta: Weight of the CROWN-IBP bounds in ``[0, 1]``: a number or a schedule.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        An objective for :func:`advjax.train.make_step` (metrics as in
        :func:`certified_training`).

    Raises:
        TypeError: If a schedule argument is neither a number nor callable.

    Example:
        >>> from advjax import train
        >>> ramp = dict(start_step=10, kind="linear")
        >>> beta = train.epsilon_ramp(0.0, 100, initial=1.0, **ramp)
        >>> float(beta(0)), float(beta(60)), float(beta(110))
        (1.0, 0.5, 0.0)
        >>> objective = crown_ibp_training(train.epsilon_ramp(0.4, 100, **ramp), beta=beta)
    """
    return certified_training(epsilon, kappa=kappa, beta=beta, clip_min=clip_min, clip_max=clip_max)


def gaussian_noise_training(sigma: float) -> Objective:
    """Training on Gaussian-noise-augmented inputs for randomized smoothing.

    Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized
    Smoothing" (ICML 2019, arXiv:1902.02918). The loss is the cross-entropy of the
    train-mode model on ``x + N(0, sigma^2 I)`` (BatchNorm is allowed; its
    statistics are updated on the noisy batch).

    Args:
        sigma: Noise standard deviation (> 0, input units), the one later used by
            :func:`advjax.certify.smooth_certify`.

    Returns:
        An objective for :func:`advjax.train.make_step`; metrics ``loss`` and
        ``clean_acc`` (accuracy on the noisy batch).

    Raises:
        ValueError: If ``sigma`` is not positive.

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
