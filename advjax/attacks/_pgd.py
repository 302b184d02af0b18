"""Projected gradient descent (Madry et al. 2018) for the Linf and L2 threat models."""

from __future__ import annotations

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, projected_gradient_ascent
from advjax.attacks._guard import guarded
from advjax.attacks._threat import ThreatModel, get_threat_model
from advjax.attacks._transforms import with_restarts
from advjax.losses import Loss, get_loss


def pgd(
    eps,
    *,
    steps: int = 40,
    step_size=None,
    norm: str | ThreatModel = "linf",
    loss: str | Loss = "ce",
    restarts: int = 1,
    random_start: bool = True,
    targeted: bool = False,
    keep_best: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds a projected-gradient (PGD) attack.

    Madry et al. (2018), "Towards Deep Learning Models Resistant to Adversarial
    Attacks", arXiv:1706.06083. Each step moves along the threat model's
    steepest-ascent direction of the loss, projects back onto the eps-ball
    around the input and clips to the valid range.
    The step loop is one ``lax.fori_loop``; restarts run one after another in
    a ``lax.scan`` (see :func:`with_restarts`).

    Args:
      eps: the perturbation budget (may be a traced value, e.g. inside
        :func:`over_epsilons` or a training schedule).
      steps: number of gradient steps (Madry: 40 on MNIST, 7 on CIFAR-10).
      step_size: step length, in the threat model's norm (a step moves by
        ``step_size * threat.direction(grad)``, of that norm); ``None`` uses
        ``2.5 * eps / steps``.
      norm: ``"linf"``, ``"l2"``, ``"l1"``, ``"l0"`` or any :class:`ThreatModel`,
        user-defined ones included (only its generic operations are used).
      loss: ``"ce"``, ``"cw"``, ``"dlr"``, ``"kl"`` or a per-example loss callable.
      restarts: number of random restarts; each example keeps its strongest one.
      random_start: start from a uniform point in the ball (else from the input).
      targeted: when true, ``y`` holds target classes and the loss is minimised.
      keep_best: return, per example, the strongest iterate seen (a successful one
        first, then the highest loss) instead of the last one. Training uses the
        last iterate (``False``) as in the papers.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` for ``x`` of shape ``[B, ...]``
      and ``y`` ``[B]`` int labels (or ``[B, K]`` rows).

    Raises:
      ValueError: a negative or non-finite ``eps`` or ``step_size``, ``steps < 0``,
        ``restarts < 1``, an empty range, an unknown norm or loss.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jnp.ones((4, 3))
      >>> logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x, y = jnp.full((2, 4), 0.5), jnp.array([0, 1])
      >>> attack = advjax.pgd(eps=0.1, steps=5)
      >>> x_adv = jax.jit(attack, static_argnums=0)(logits_fn, x, y, key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - x).max() <= 0.1 + 1e-6)
      True
    """
    check_epsilon(eps)
    steps = check_positive_int(steps, "steps", minimum=0)
    restarts = check_positive_int(restarts, "restarts")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    loss_fn = get_loss(loss)
    if step_size is None:
        step_size = 2.5 * eps / max(steps, 1)
    check_epsilon(step_size, "step_size")

    def single_run(logits_fn, x, y, *, key):
        return projected_gradient_ascent(
            logits_fn,
            x,
            y,
            key,
            eps=eps,
            step_size=step_size,
            steps=steps,
            threat=threat,
            loss=loss_fn,
            targeted=targeted,
            random_start=random_start,
            keep_best=keep_best,
            clip_min=clip_min,
            clip_max=clip_max,
        )

    run = single_run
    if restarts > 1:
        run = with_restarts(single_run, restarts, loss=loss_fn, targeted=targeted)
    return guarded(run, name="pgd", eps=eps, norm=threat, clip_min=clip_min, clip_max=clip_max)
