"""Defensive distillation (Papernot et al. 2016, arXiv:1511.04508)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax.losses import ce
from advjax.train._objectives import Objective, accuracy
from advjax.train._state import TrainState, train_logits


def distillation(
    temperature: float = 100.0,
    teacher: Callable[[jax.Array], jax.Array] | None = None,
) -> Objective:
    """Defensive distillation: train the softmax at temperature ``T``, deploy at ``T = 1``.

    Papernot, McDaniel, Wu, Jha & Swami (2016), "Distillation as a Defense to
    Adversarial Perturbations against Deep Neural Networks" (IEEE S&P). Step
    one trains a teacher on hard labels with ``softmax(logits / T)``
    (``teacher=None``); step two trains a student of the same architecture on
    the teacher's soft labels ``softmax(teacher(x) / T)`` at the same ``T``.
    The student is *deployed* at ``T = 1``, i.e. on its raw logits (the eval
    model, :func:`eval_logits`): its softmax then saturates, which hides the
    gradient from cross-entropy attacks without making the model robust.
    Carlini & Wagner (2017) break it with a margin loss on the logits
    (``advjax.pgd(..., loss="cw")``). Paper defaults on MNIST: ``T=100``, 50
    epochs, SGD (lr 0.1, momentum 0.5), batch 128.

    Args:
      temperature: the training temperature ``T > 0``.
      teacher: the teacher's eval-mode logits function (``x -> logits``, at
        ``T = 1``; it is divided by ``T`` here), or ``None`` to train a teacher.

    Returns:
      An objective for :func:`make_step`.

    Example:
      >>> from advjax import train
      >>> teacher_objective = train.distillation(100.0)
    """
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")

    def objective(params, state: TrainState, batch, key):
        x, y = batch
        logits, batch_stats = train_logits(state, params, x, key)
        if teacher is None:
            target = y
        else:
            soft = teacher(x).astype(jnp.float32) / temperature
            target = jax.lax.stop_gradient(jax.nn.softmax(soft))
        loss = jnp.mean(ce(logits.astype(jnp.float32) / temperature, target))
        metrics = {"loss": loss, "clean_acc": accuracy(logits, y)}
        return loss, (metrics, batch_stats)

    return objective
