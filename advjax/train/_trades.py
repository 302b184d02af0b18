"""TRADES (Zhang et al. 2019): clean cross-entropy plus ``beta`` times a KL robustness term."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax.attacks import Attack, linf, pgd
from advjax.losses import ce, kl
from advjax.train._objectives import (
    AdversarialObjective,
    Objective,
    Schedule,
    accuracy,
    as_schedule,
)
from advjax.train._state import TrainState, eval_logits, train_logits


def gaussian_start_linf(std: float = 0.001):
    """The Linf threat model with TRADES/MART's start ``x + std * N(0, 1)`` instead of uniform.

    Args:
      std: Standard deviation of the Gaussian start (>= 0, input units).

    Returns:
      A :class:`advjax.attacks.ThreatModel` named ``"linf"``.

    Raises:
      ValueError: For a negative ``std``.

    Example:
      >>> from advjax import train
      >>> threat = train.gaussian_start_linf(0.001)
      >>> threat.name
      'linf'
    """
    if not std >= 0.0:
        raise ValueError(f"std must be >= 0, got {std}.")

    def random_init(key, shape, eps):
        del eps
        return std * jax.random.normal(key, shape)

    return dataclasses.replace(linf, random_init=random_init)


def _check_positive(value, name: str) -> None:
    if isinstance(value, int | float) and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}.")


def inner_maximisation(
    epsilon: Schedule,
    *,
    beta: float,
    steps: int,
    step_size: float | Callable,
    init_std: float,
    loss,
    make_attack: Callable[[jax.Array], Attack] | None,
):
    """Validates TRADES/MART hyper-parameters; returns ``(epsilon_at, eps -> attack)``.

    The default attack is PGD on ``loss`` from ``x + init_std * N(0, 1)``, last
    iterate, as in both papers' reference code (TRADES, arXiv:1901.08573; MART,
    ICLR 2020).

    Args:
      epsilon: Budget (L-inf, input units) or a schedule of the step.
      beta: Weight of the robustness term (>= 0).
      steps: PGD steps of the default attack.
      step_size: PGD step size, or ``eps -> step size``.
      init_std: Standard deviation of the Gaussian start.
      loss: The attack's loss, ``(logits, y) -> per-example loss``.
      make_attack: ``eps -> attack`` replacing the default PGD, or ``None``.

    Returns:
      ``(epsilon_at, make_attack)``: the budget schedule and ``eps -> attack``.

    Raises:
      ValueError: For a negative ``beta`` or a non-positive budget or step size.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.losses import ce
      >>> eps_at, make = inner_maximisation(0.3, beta=6.0, steps=10, step_size=0.01,
      ...                                   init_std=0.001, loss=ce, make_attack=None)
      >>> float(eps_at(0)), callable(make(0.3))
      (0.3, True)
    """
    if not beta >= 0.0:
        raise ValueError(f"beta must be >= 0, got {beta}.")
    _check_positive(epsilon, "epsilon")
    if not callable(step_size):
        _check_positive(step_size, "step_size")
    threat = gaussian_start_linf(init_std)

    def default_attack(eps):
        size = step_size(eps) if callable(step_size) else step_size
        return pgd(eps, steps=steps, step_size=size, norm=threat, loss=loss, keep_best=False)

    return as_schedule(epsilon), make_attack or default_attack


def trades(
    epsilon: Schedule = 0.3,
    *,
    beta: float = 6.0,
    steps: int = 40,
    step_size: float | Callable = 0.01,
    init_std: float = 0.001,
    make_attack: Callable[[jax.Array], Attack] | None = None,
) -> Objective:
    """TRADES: ``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))``.

    Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan (2019), "Theoretically Principled
    Trade-off between Robustness and Accuracy" (arXiv:1901.08573). The inner
    maximisation is PGD on the KL term, run on the eval-mode model with the
    clean prediction ``softmax(f(x))`` as soft target, starting from
    ``x + 0.001 * N(0, 1)`` (:func:`gaussian_start_linf`); the last iterate is
    used. The outer loss's KL is differentiated through both the clean and the
    adversarial logits (batch mean), as in the reference ``trades.py``.

    Reference defaults: MNIST ``eps=0.3, steps=40, step_size=0.01, beta=1``
    (the ``train_trades_mnist.py`` script; the paper's table uses ``1/lambda =
    beta`` up to 6); CIFAR-10 ``eps=8/255 (0.031), steps=10, step_size=0.007,
    beta=6``.

    Args:
      epsilon: Linf budget or an optax schedule of the step.
      beta: weight of the robustness (KL) term; ``0`` is plain training.
      steps: PGD steps of the inner maximisation.
      step_size: PGD step length, or ``eps -> step length`` (for ramped budgets).
      init_std: standard deviation of the Gaussian start.
      make_attack: optional ``eps -> attack`` replacing the default KL-PGD; it is
        called as ``attack(logits_fn, x, softmax(clean_logits), key=...)``.

    Returns:
      An objective for :func:`make_step`.

    Example:
      >>> from advjax import train
      >>> objective = train.trades(0.3, beta=1.0, steps=40, step_size=0.01)
    """
    epsilon_at, build_attack = inner_maximisation(
        epsilon,
        beta=beta,
        steps=steps,
        step_size=step_size,
        init_std=init_std,
        loss=kl,
        make_attack=make_attack,
    )

    def attack(state: TrainState, batch, key):
        x, _ = batch
        logits_fn = eval_logits(state)
        target = jax.lax.stop_gradient(jax.nn.softmax(logits_fn(x).astype(jnp.float32)))
        return build_attack(epsilon_at(state.step))(logits_fn, x, target, key=key)

    def loss_at(params, state: TrainState, batch, x_adv, dropout_key):
        x, y = batch
        eps = epsilon_at(state.step)
        both, batch_stats = train_logits(state, params, jnp.concatenate([x, x_adv]), dropout_key)
        clean_logits, adv_logits = jnp.split(both, 2)
        natural = jnp.mean(ce(clean_logits, y))
        robust = jnp.mean(kl(adv_logits, jax.nn.softmax(clean_logits.astype(jnp.float32))))
        loss = natural + beta * robust
        metrics = {
            "loss": loss,
            "clean_loss": natural,
            "kl": robust,
            "clean_acc": accuracy(clean_logits, y),
            "adv_acc": accuracy(adv_logits, y),
            "eps": jnp.asarray(eps, jnp.float32),
        }
        return loss, (metrics, batch_stats)

    return AdversarialObjective(attack, loss_at)
