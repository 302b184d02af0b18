"""Free adversarial training (Shafahi et al. 2019): the perturbation rides along."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax.losses import ce
from advjax.train._objectives import Objective, Schedule, accuracy, as_schedule
from advjax.train._state import TrainState, train_logits
from advjax.train._trades import _check_positive


def free_at_carry(batch_shape) -> dict:
    """The initial carry of :func:`free_at`: a zero perturbation of one batch's shape.

    Args:
      batch_shape: Shape of one input batch, e.g. ``(B, H, W, C)``.

    Returns:
      ``{"delta": zeros(batch_shape, float32)}``, for ``TrainState.create(carry=...)``.

    Example:
      >>> from advjax import train
      >>> train.free_at_carry((100, 28, 28, 1))["delta"].shape
      (100, 28, 28, 1)
    """
    return {"delta": jnp.zeros(tuple(batch_shape), jnp.float32)}


def free_at(
    epsilon: Schedule = 8 / 255,
    *,
    step_size: float | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Objective:
    """Free adversarial training: one backward pass updates both the model and the attack.

    Shafahi, Najibi, Ghiasi, Xu, Dickerson, Studer, Davis, Taylor & Goldstein
    (2019), "Adversarial Training for Free!" (arXiv:1904.12843). Every
    minibatch is *replayed* ``m`` times; each replay trains on ``clip(x +
    delta)`` and, from the input gradient of that same training pass, moves
    ``delta <- clip(delta + step_size * sign(grad), -eps, eps)``. ``delta`` is
    carried to the next replay *and to the next minibatch* (it is not reset).

    How it fits the generic step: ``delta`` lives in ``state.carry`` (create it
    with ``state.replace(carry=free_at_carry(batch_shape))``; it is saved in
    checkpoints, so resume stays exact), the objective returns the new one as
    the third element of its auxiliary output, and the ``m`` replays are
    ``make_step(objective, replays=m)``: one compiled ``lax.scan`` of ``m``
    updates per batch. Train for ``epochs / m`` epochs to match the cost of
    ``epochs`` of natural training, as the paper does. The input gradient is
    taken in train mode, from the very pass that trains the model (that is the
    "free" part). Reference defaults: CIFAR-10 ``eps=8/255, step=eps, m=8``;
    ImageNet ``eps=4/255, m=4``.

    Args:
      epsilon: Linf budget or an optax schedule of the step.
      step_size: the FGSM step on ``delta``; ``None`` means ``eps``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      An objective for :func:`make_step` that needs ``state.carry``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...     tx=optax.sgd(0.1), carry=train.free_at_carry((4, 28, 28, 1)))
      >>> step = train.make_step(train.free_at(0.3), replays=2)
      >>> batch = (jnp.full((4, 28, 28, 1), 0.5), jnp.arange(4))
      >>> state, metrics = step(state, batch, jax.random.key(1))
      >>> int(state.step), round(float(jnp.abs(state.carry["delta"]).max()), 4)
      (2, 0.3)
    """
    _check_positive(epsilon, "epsilon")
    if step_size is not None:
        _check_positive(step_size, "step_size")
    epsilon_at = as_schedule(epsilon)

    def objective(params, state: TrainState, batch, key):
        x, y = batch
        if not isinstance(state.carry, dict) or "delta" not in state.carry:
            raise ValueError(
                "free_at carries its perturbation in state.carry: create the state with "
                "carry=train.free_at_carry(batch_shape) (got carry="
                f"{type(state.carry).__name__})."
            )
        delta = state.carry["delta"]
        if delta.shape != x.shape:
            raise ValueError(
                f"state.carry['delta'] has shape {delta.shape} but the batch has shape "
                f"{x.shape}; build it with free_at_carry(x.shape) and drop incomplete batches."
            )
        eps = jnp.asarray(epsilon_at(state.step), x.dtype)
        step = eps if step_size is None else jnp.asarray(step_size, x.dtype)

        def loss_of(d):
            logits, batch_stats = train_logits(
                state, params, jnp.clip(x + d, clip_min, clip_max), key
            )
            return jnp.mean(ce(logits, y)), (logits, batch_stats)

        loss, input_vjp, (logits, batch_stats) = jax.vjp(loss_of, delta, has_aux=True)
        (grad,) = input_vjp(jnp.ones_like(loss))
        new_delta = jnp.clip(delta + step * jnp.sign(jax.lax.stop_gradient(grad)), -eps, eps)
        metrics = {"loss": loss, "adv_acc": accuracy(logits, y), "eps": eps.astype(jnp.float32)}
        return loss, (metrics, batch_stats, {"delta": jax.lax.stop_gradient(new_delta)})

    return objective
