"""Auto-PGD (Croce & Hein 2020): APGD-CE, APGD-DLR and the targeted APGD-T.

"Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020, arXiv:2003.01690). PGD with momentum ``alpha = 0.75`` whose
step size starts at ``2 * eps`` and is halved, per example, at checkpoints
``w_j = ceil(p_j * N)`` with ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j -
p_{j-1} - 0.03, 0.06)`` when the loss rose in fewer than ``rho = 0.75`` of the
steps since the last checkpoint, or when the step was not reduced there and the
best loss did not improve; a halving restarts from the best point so far.

For the L1 ball the loop is l1-APGD (Croce & Hein 2021, "Mind the box: l1-APGD
for sparse adversarial attacks on image classifiers", arXiv:2103.01208): a Gaussian start
projected onto the ball ∩ box, sparse sign steps on the top ``k`` coordinates
of the gradient (none on coordinates pinned at the box), no momentum, the exact
projection onto ball ∩ box, and at every checkpoint (each ``4%`` of the
iterations) an adaptive sparsity ``k = ||x_best - x||_0 / 1.5`` (starting at
``20%`` of the coordinates) with the step size reset to ``eps`` when the
sparsity of the best point fell by more than ``5%``, else divided by ``1.5``
(never below ``eps / 10``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select, is_successful, project_to_threat
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._threat import (
    ThreatModel,
    get_threat_model,
    l1,
    l2,
    per_example_value,
    sparse_l1_direction,
)
from advjax.attacks._transforms import restart_keys, with_restarts
from advjax.losses import Loss, as_labels, dlr_targeted, get_loss


def checkpoint_schedule(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per iteration: whether it ends a checkpoint window, and that window's length.

    Follows the reference implementation: first window ``max(int(0.22 N), 1)``,
    each next one ``0.03 N`` shorter, never below ``0.06 N``.

    Args:
      steps: the iterations ``N``.

    Returns:
      ``(is_check[N] bool, window[N] int32)``.

    Example:
      >>> import numpy as np
      >>> from advjax.attacks import checkpoint_schedule
      >>> is_check, window = checkpoint_schedule(100)
      >>> (np.flatnonzero(is_check) + 1).tolist(), window[is_check].tolist()
      ([22, 41, 57, 70, 80, 87, 93, 99], [22, 19, 16, 13, 10, 7, 6, 6])
    """
    is_check = np.zeros(max(steps, 1), bool)
    window = np.ones(max(steps, 1), np.int32)
    length = max(int(0.22 * steps), 1)
    decrease, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    i = length - 1
    while i < steps:
        is_check[i], window[i] = True, length
        length = max(length - decrease, minimum)
        i += length
    return is_check, window


def l1_checkpoint_schedule(steps: int) -> np.ndarray:
    """Per iteration: whether l1-APGD adapts its sparsity and step there (every ``4%``).

    Args:
      steps: the iterations ``N``.

    Returns:
      ``[N]`` bool.

    Example:
      >>> import numpy as np
      >>> from advjax.attacks._apgd import l1_checkpoint_schedule
      >>> (np.flatnonzero(l1_checkpoint_schedule(100)) + 1).tolist()[:5]
      [4, 8, 12, 16, 20]
    """
    is_check = np.zeros(max(steps, 1), bool)
    period = max(int(0.04 * steps), 1)
    is_check[period - 1 :: period] = True
    return is_check


def apgd_loop(
    logits_fn,
    x,
    key,
    *,
    eps,
    steps: int,
    threat: ThreatModel,
    objective,
    success,
    rho: float = 0.75,
    alpha: float = 0.75,
    initial_step: float | None = None,
    early_stop: bool = True,
    eps_schedule: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
):
    """The APGD iteration for any per-example ``objective(logits) -> [B]`` (maximised).

    With ``eps_schedule`` (AutoAttack's L1 setting, ``use_largereps``) the
    iterations are split ``30% / 30% / 40%`` over the budgets ``3 eps, 2 eps,
    eps``; each stage starts from the previous stage's highest-objective point
    projected onto its ball, only the last stage's successes count, and only the
    last stage stops early.

    Args:
      logits_fn: ``x[B, ...] -> logits[B, K]``.
      x: ``[B, ...]`` the clean inputs.
      key: the random start's key.
      eps: the budget in the threat model's norm.
      steps: iterations.
      threat: any :class:`ThreatModel` (L1 runs l1-APGD, see ``APGD_VARIANTS``).
      objective: ``logits -> [B]``, maximised.
      success: ``logits -> [B]`` bool.
      rho: the checkpoint threshold.
      alpha: the momentum weight.
      initial_step: the first step in units of ``eps`` (``None``: the variant's).
      early_stop: stop once every example succeeded.
      eps_schedule: the ``3 eps, 2 eps, eps`` stages.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``(x_adv [B, ...], found [B])``: per example the first successful iterate
      (clean input included) if any, otherwise the point of highest objective.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._apgd import apgd_loop
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 0.9, 0.9 - x.sum(-1)], axis=-1)
      >>> x_adv, found = apgd_loop(logits_fn, jnp.full((1, 2), 0.5), jax.random.key(0), eps=0.1,
      ...                          steps=5, threat=linf, objective=lambda z: z[:, 1] - z[:, 0],
      ...                          success=lambda z: jnp.argmax(z, -1) != 0)
      >>> found.tolist()
      [True]
    """
    options = dict(
        threat=threat,
        objective=objective,
        success=success,
        rho=rho,
        alpha=alpha,
        initial_step=initial_step,
        early_stop=early_stop,
        clip_min=clip_min,
        clip_max=clip_max,
    )
    if not eps_schedule:
        x_adv, found, _ = _apgd_run(logits_fn, x, key, eps=eps, steps=steps, **options)
        return x_adv, found
    first = math.ceil(0.3 * steps)
    # The last stage may get no iteration (steps = 1, 2, 4): it then still projects
    # the previous stage's point onto the eps-ball and checks it, as the reference does.
    stages = [(3.0, first), (2.0, first), (1.0, max(steps - 2 * first, 0))]
    x_start = None
    for index, (factor, stage_steps) in enumerate(stages):
        last = index == len(stages) - 1
        # Successes at a larger budget do not count: only the last stage stops early.
        x_adv, found, x_start = _apgd_run(
            logits_fn,
            x,
            jax.random.fold_in(key, index),
            eps=factor * jnp.asarray(eps),
            steps=stage_steps,
            x_start=x_start,
            **{**options, "early_stop": early_stop and last},
        )
    return x_adv, found


class APGDState(NamedTuple):
    """The APGD loop's carry (all per example ``[B]`` or ``[B, ...]``, ``i`` a scalar).

    Attributes:
      i: the iteration.
      x_adv: the current iterate.
      x_prev: the previous iterate (for the momentum term).
      grad: the objective's gradient at ``x_adv``.
      loss: the objective at ``x_adv``.
      step: the step size, in the threat model's norm (``eps`` units times ``2`` at start).
      increases: iterations since the last checkpoint whose loss rose.
      loss_best: the highest objective so far.
      x_best: where it was reached.
      grad_best: the gradient there.
      loss_best_last: ``loss_best`` at the last checkpoint.
      reduced_last: whether the step was halved at the last checkpoint.
      best_adv: the first successful iterate (clean input included).
      found: whether an iterate succeeded.
      share: l1-APGD: the share of coordinates a sparse step moves.
      nonzero_last: l1-APGD: ``||x_best - x||_0`` at the last checkpoint.

    Example:
      >>> from advjax.attacks._apgd import APGDState
      >>> len(APGDState._fields), APGDState._fields[:3]
      (16, ('i', 'x_adv', 'x_prev'))
    """

    i: jax.Array
    x_adv: jax.Array
    x_prev: jax.Array
    grad: jax.Array
    loss: jax.Array
    step: jax.Array
    increases: jax.Array
    loss_best: jax.Array
    x_best: jax.Array
    grad_best: jax.Array
    loss_best_last: jax.Array
    reduced_last: jax.Array
    best_adv: jax.Array
    found: jax.Array
    share: jax.Array
    nonzero_last: jax.Array


class APGDContext(NamedTuple):
    """What the per-norm parts of APGD read besides the state.

    Attributes:
      x: ``[B, ...]`` the clean inputs.
      eps: the budget.
      threat: the threat model.
      project: ``[B, ...] -> [B, ...]`` onto the ball ∩ box around ``x``.
      alpha: the momentum weight.
      rho: the checkpoint threshold.
      max_step: the initial (and largest) step size.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf, project_to_threat
      >>> from advjax.attacks._apgd import APGDContext
      >>> x = jnp.zeros((1, 2))
      >>> ctx = APGDContext(x, 0.1, linf, lambda c: project_to_threat(linf, x, c, 0.1, 0, 1),
      ...                   0.75, 0.75, 0.2, 0.0, 1.0)
      >>> ctx.project(jnp.array([[0.5, -0.5]])).tolist()
      [[0.10000000149011612, 0.0]]
    """

    x: jax.Array
    eps: jax.Array
    threat: ThreatModel
    project: Callable[[jax.Array], jax.Array]
    alpha: float
    rho: float
    max_step: jax.Array
    clip_min: float
    clip_max: float


def checkpoint_reduce(check, increases, window, rho, reduced_last, loss_best_last, loss_best):
    """The APGD checkpoint rule: whether to halve the step (Croce & Hein 2020, Sec. 3.2).

    At a checkpoint the step is halved when the loss rose in at most ``rho`` of
    the ``window`` steps since the previous checkpoint (condition 1), or when
    the step was not halved at the previous checkpoint and the best loss has
    not improved since then (condition 2).

    Args:
      check: whether this iteration is a checkpoint (scalar bool).
      increases: ``[B]`` steps since the last checkpoint whose loss rose.
      window: the length of the window that ends here.
      rho: the threshold share.
      reduced_last: ``[B]`` whether the step was halved at the last checkpoint.
      loss_best_last: ``[B]`` the best loss at the last checkpoint.
      loss_best: ``[B]`` the best loss now.

    Returns:
      ``[B]`` bool.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import checkpoint_reduce
      >>> checkpoint_reduce(True, jnp.array([2, 9, 9]), 10, 0.75, jnp.array([False, False, True]),
      ...                   jnp.array([1.0, 1.0, 1.0]), jnp.array([2.0, 1.0, 1.0])).tolist()
      [True, True, False]
    """
    oscillating = increases <= window * rho
    no_progress = ~reduced_last & (loss_best_last >= loss_best)
    return check & (oscillating | no_progress)


def momentum_step(x_adv, x_prev, z, momentum):
    """APGD's momentum combination ``x + m (z - x) + (1 - m)(x - x_prev)`` (before projecting).

    ``z`` is the projected gradient step from ``x_adv``; ``m = 1`` (the first
    iteration) is plain PGD, ``m = 0.75`` the paper's weight.

    Args:
      x_adv: ``[B, ...]`` the current iterate.
      x_prev: ``[B, ...]`` the previous one.
      z: ``[B, ...]`` the projected gradient step from ``x_adv``.
      momentum: the weight ``m`` (scalar).

    Returns:
      ``[B, ...]``, to be projected.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import momentum_step
      >>> momentum_step(jnp.array([1.0]), jnp.array([0.0]), jnp.array([3.0]), 0.75).tolist()
      [2.75]
    """
    return x_adv + momentum * (z - x_adv) + (1 - momentum) * (x_adv - x_prev)


def l1_checkpoint_step(step, nonzero, nonzero_last, max_step):
    """l1-APGD's step at a checkpoint (Croce & Hein 2021): reset if sparser, else ``/ 1.5``.

    The step returns to ``max_step`` when the best point's support shrank by more
    than ``5%`` since the last checkpoint, else it is divided by 1.5, never below
    ``max_step / 10``.

    Args:
      step: ``[B]`` the current step.
      nonzero: ``[B]`` ``||x_best - x||_0`` now.
      nonzero_last: ``[B]`` the same at the last checkpoint.
      max_step: the initial step (``eps`` for l1-APGD).

    Returns:
      ``(step [B], sparser [B])``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import l1_checkpoint_step
      >>> nonzero, nonzero_last = jnp.array([50.0, 99.0, 99.0]), jnp.full(3, 100.0)
      >>> step, sparser = l1_checkpoint_step(jnp.array([0.3, 0.3, 0.1]), nonzero, nonzero_last, 1.0)
      >>> [round(v, 4) for v in step.tolist()], sparser.tolist()
      ([1.0, 0.2, 0.1], [True, False, False])
    """
    sparser = nonzero < 0.95 * nonzero_last
    step = jnp.where(sparser, max_step, step / 1.5)
    return jnp.clip(step, max_step / 10.0, max_step), sparser


def track_best(state: APGDState, x_new, loss, success, grad) -> APGDState:
    """Moves to ``x_new`` and updates the records: first success, best loss, loss increases.

    Args:
      state: the carry before the step.
      x_new: ``[B, ...]`` the new iterate.
      loss: ``[B]`` its objective.
      success: ``[B]`` whether it succeeds.
      grad: ``[B, ...]`` the objective's gradient there.

    Returns:
      The carry with ``i + 1`` and the records updated (checkpoint rules not applied).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import APGDState, track_best
      >>> z, b = jnp.zeros((2, 1)), jnp.zeros(2)
      >>> s = APGDState(jnp.asarray(0), z, z, z, jnp.array([1.0, 1.0]), b, jnp.zeros(2, int),
      ...               jnp.array([1.0, 1.0]), z, z, b, b > 0, z, b > 0, b, b)
      >>> t = track_best(s, jnp.ones((2, 1)), jnp.array([2.0, 0.5]), jnp.array([False, True]), z)
      >>> t.increases.tolist(), t.x_best.ravel().tolist(), t.best_adv.ravel().tolist()
      ([1, 0], [1.0, 0.0], [0.0, 1.0])
    """
    improved = loss > state.loss_best
    return state._replace(
        i=state.i + 1,
        x_adv=x_new,
        x_prev=state.x_adv,
        grad=grad,
        loss=loss,
        increases=state.increases + (loss > state.loss).astype(jnp.int32),
        loss_best=jnp.where(improved, loss, state.loss_best),
        x_best=_select(improved, x_new, state.x_best),
        grad_best=_select(improved, grad, state.grad_best),
        best_adv=_select(success & ~state.found, x_new, state.best_adv),
        found=state.found | success,
    )


def _per_example_step(state: APGDState, ctx: APGDContext):
    return state.step.reshape((ctx.x.shape[0],) + (1,) * (ctx.x.ndim - 1)).astype(ctx.x.dtype)


def momentum_update(ctx: APGDContext, state: APGDState) -> jax.Array:
    """APGD's step for any threat model: a projected step along ``threat.direction``, momentum.

    Args:
      ctx: the inputs, threat model and projection.
      state: the carry (its ``step`` is in the threat model's norm).

    Returns:
      ``[B, ...]`` the next iterate, inside the ball ∩ box.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf, project_to_threat
      >>> from advjax.attacks._apgd import APGDContext, APGDState, momentum_update
      >>> x = jnp.full((1, 2), 0.5)
      >>> ctx = APGDContext(x, 0.1, linf, lambda c: project_to_threat(linf, x, c, 0.1, 0, 1),
      ...                   0.75, 0.75, 0.2, 0.0, 1.0)
      >>> z = jnp.zeros(1)
      >>> s = APGDState(jnp.asarray(0), x, x, jnp.array([[1.0, -1.0]]), z, jnp.array([0.2]),
      ...               z, z, x, x, z, z > 0, x, z > 0, z, z)
      >>> [round(v, 4) for v in momentum_update(ctx, s)[0].tolist()]
      [0.6, 0.4]
    """
    momentum = jnp.where(state.i == 0, 1.0, ctx.alpha)
    x_adv = state.x_adv
    z = ctx.project(x_adv + _per_example_step(state, ctx) * ctx.threat.direction(state.grad))
    return ctx.project(momentum_step(x_adv, state.x_prev, z, momentum))


def sparse_l1_update(ctx: APGDContext, state: APGDState) -> jax.Array:
    """l1-APGD's step: sparse sign steps (:func:`sparse_l1_direction`), no momentum.

    Coordinates pinned at the box with a gradient pointing outwards get no mass.

    Args:
      ctx: the inputs, threat model and projection.
      state: the carry (its ``share`` sets the sparsity).

    Returns:
      ``[B, ...]`` the next iterate, inside the L1 ball ∩ box.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import l1, project_to_threat
      >>> from advjax.attacks._apgd import APGDContext, APGDState, sparse_l1_update
      >>> x = jnp.array([[0.5, 1.0, 0.5, 0.5]])
      >>> ctx = APGDContext(x, 1.0, l1, lambda c: project_to_threat(l1, x, c, 1.0, 0, 1),
      ...                   0.75, 0.75, 1.0, 0.0, 1.0)
      >>> z = jnp.zeros(1)
      >>> s = APGDState(jnp.asarray(0), x, x, jnp.array([[0.1, 5.0, -2.0, 0.0]]), z,
      ...               jnp.array([0.2]), z, z, x, x, z, z > 0, x, z > 0, jnp.array([0.25]), z)
      >>> sparse_l1_update(ctx, s).tolist()  # the pinned coordinate 1 is skipped
      [[0.5, 1.0, 0.30000001192092896, 0.5]]
    """
    x_adv, grad = state.x_adv, state.grad
    pinned = ((x_adv <= ctx.clip_min) & (grad < 0)) | ((x_adv >= ctx.clip_max) & (grad > 0))
    direction = sparse_l1_direction(jnp.where(pinned, 0.0, grad), state.share)
    return ctx.project(x_adv + _per_example_step(state, ctx) * direction)


def halving_checkpoint(ctx: APGDContext, state: APGDState, check, window) -> APGDState:
    """APGD's checkpoint: halve the step where :func:`checkpoint_reduce` says so.

    A halving restarts from the best point (and its gradient); at a checkpoint
    the counters and records of the window restart.

    Args:
      ctx: its ``rho`` is the threshold.
      state: the carry after :func:`track_best`.
      check: whether this iteration ends a window.
      window: that window's length.

    Returns:
      The carry.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import APGDContext, APGDState, halving_checkpoint
      >>> o, x = jnp.ones(1), jnp.zeros((1, 1))
      >>> s = APGDState(jnp.asarray(5), x, x, x, o, o, jnp.array([1]), o, x + 1, x, o,
      ...               o < 0, x, o < 0, o, o)
      >>> ctx = APGDContext(x, 1.0, None, None, 0.75, 0.75, 1.0, 0.0, 1.0)
      >>> new = halving_checkpoint(ctx, s, True, 5)  # 1 increase in 5 <= 0.75 * 5: halve
      >>> new.step.tolist(), new.x_adv.tolist(), new.increases.tolist()
      ([0.5], [[1.0]], [0])
    """
    reduce = checkpoint_reduce(
        check,
        state.increases,
        window,
        ctx.rho,
        state.reduced_last,
        state.loss_best_last,
        state.loss_best,
    )
    return state._replace(
        x_adv=_select(reduce, state.x_best, state.x_adv),
        grad=_select(reduce, state.grad_best, state.grad),
        step=jnp.where(reduce, state.step / 2, state.step),
        increases=jnp.where(check, 0, state.increases),
        loss_best_last=jnp.where(check, state.loss_best, state.loss_best_last),
        reduced_last=jnp.where(check, reduce, state.reduced_last),
    )


def sparsity_checkpoint(ctx: APGDContext, state: APGDState, check, window) -> APGDState:
    """l1-APGD's checkpoint: adapt the sparsity and the step (:func:`l1_checkpoint_step`).

    The share of coordinates becomes ``||x_best - x||_0 / D / 1.5``; a reset of
    the step restarts from the best point.

    Args:
      ctx: its ``x`` and ``max_step`` are read.
      state: the carry after :func:`track_best`.
      check: whether this iteration is a checkpoint.
      window: unused (l1-APGD's checkpoints are periodic).

    Returns:
      The carry.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import APGDContext, APGDState, sparsity_checkpoint
      >>> o, x = jnp.ones(1), jnp.zeros((1, 3))
      >>> best = jnp.array([[0.5, 0.0, 0.0]])  # support 1 of 3, was 3: sparser
      >>> s = APGDState(jnp.asarray(4), x, x, x, o, 0.2 * o, o, o, best, x, o,
      ...               o < 0, x, o < 0, o, 3 * o)
      >>> ctx = APGDContext(x, 1.0, None, None, 0.75, 0.75, 1.0, 0.0, 1.0)
      >>> new = sparsity_checkpoint(ctx, s, True, 1)
      >>> new.step.tolist(), new.x_adv.tolist(), [round(v, 4) for v in new.share.tolist()]
      ([1.0], [[0.5, 0.0, 0.0]], [0.2222])
    """
    del window
    x, batch = ctx.x, ctx.x.shape[0]
    features = int(np.prod(x.shape[1:]))
    nonzero = jnp.sum((state.x_best != x).reshape(batch, -1), -1).astype(jnp.float32)
    step, sparser = l1_checkpoint_step(state.step, nonzero, state.nonzero_last, ctx.max_step)
    restart = check & sparser
    return state._replace(
        x_adv=_select(restart, state.x_best, state.x_adv),
        grad=_select(restart, state.grad_best, state.grad),
        step=jnp.where(check, step, state.step),
        share=jnp.where(check, nonzero / features / 1.5, state.share),
        nonzero_last=jnp.where(check, nonzero, state.nonzero_last),
    )


def _uniform_start(threat: ThreatModel, key, x, eps):
    return x + threat.random_init(key, x.shape, eps)


def _sphere_start(threat: ThreatModel, key, x, eps):
    # The reference's L2 start: a Gaussian direction scaled to norm eps (on the sphere).
    gaussian = jax.random.normal(key, x.shape, x.dtype)
    unit = gaussian / per_example_value(threat.norm(gaussian), gaussian)
    return x + unit * per_example_value(eps, gaussian)


def _gaussian_start(threat: ThreatModel, key, x, eps):
    del threat, eps
    return x + jax.random.normal(key, x.shape, x.dtype)


def _l1_schedule(steps: int):
    return l1_checkpoint_schedule(steps), checkpoint_schedule(steps)[1]


class APGDVariant(NamedTuple):
    """The parts of APGD that differ per threat model.

    Attributes:
      initial_step: the first step size in units of ``eps``.
      start: ``(threat, key, x, eps) -> x0`` before projection.
      update: ``(ctx, state) -> x_new`` (projected).
      schedule: ``steps -> (is_check[steps], window[steps])``.
      checkpoint: ``(ctx, state, check, window) -> state``.
      eps_schedule: whether AutoAttack's ``3 eps, 2 eps, eps`` schedule applies
        (and is the default).

    Example:
      >>> from advjax.attacks import l1
      >>> from advjax.attacks._apgd import APGD_VARIANTS, GENERIC_APGD
      >>> APGD_VARIANTS[l1].eps_schedule, GENERIC_APGD.initial_step
      (True, 2.0)
    """

    initial_step: float
    start: Callable
    update: Callable
    schedule: Callable
    checkpoint: Callable
    eps_schedule: bool


#: APGD for any threat model: random start, momentum steps, step halving.
GENERIC_APGD = APGDVariant(
    2.0, _uniform_start, momentum_update, checkpoint_schedule, halving_checkpoint, False
)

#: The threat models with their own APGD (l1-APGD, Croce & Hein 2021; L2 with the
#: authors' start on the sphere of radius eps); every other threat model runs
#: :data:`GENERIC_APGD`.
APGD_VARIANTS: dict[ThreatModel, APGDVariant] = {
    l1: APGDVariant(
        1.0, _gaussian_start, sparse_l1_update, _l1_schedule, sparsity_checkpoint, True
    ),
    l2: GENERIC_APGD._replace(start=_sphere_start),
}


def apgd_variant(threat: ThreatModel) -> APGDVariant:
    """The APGD variant for ``threat``: its entry in ``APGD_VARIANTS``, else the generic one.

    Args:
      threat: any threat model.

    Returns:
      The :class:`APGDVariant`.

    Example:
      >>> from advjax.attacks import l1, l2
      >>> from advjax.attacks._apgd import apgd_variant
      >>> apgd_variant(l1).initial_step, apgd_variant(l2).initial_step
      (1.0, 2.0)
    """
    return APGD_VARIANTS.get(threat, GENERIC_APGD)


class APGDProblem(NamedTuple):
    """What one APGD run maximises, and where: everything but the carry.

    Attributes:
      logits_fn: ``x[B, ...] -> logits[B, K]``.
      x: ``[B, ...]`` the clean inputs.
      eps: the budget in the threat model's norm (a scalar).
      steps: the iterations of the whole run (its checkpoint schedule).
      threat: any :class:`ThreatModel`.
      objective: ``logits -> [B]``, maximised.
      success: ``logits -> [B]`` bool.
      rho: the checkpoint threshold.
      alpha: the momentum weight.
      initial_step: the first step in units of ``eps`` (``None``: the variant's).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._apgd import APGDProblem
      >>> problem = APGDProblem(lambda x: x, jnp.zeros((1, 2)), 0.1, 10, linf,
      ...                       lambda z: z[:, 1], lambda z: z[:, 1] > z[:, 0])
      >>> problem.rho, problem.clip_max
      (0.75, 1.0)
    """

    logits_fn: Callable
    x: jax.Array
    eps: jax.Array
    steps: int
    threat: ThreatModel
    objective: Callable
    success: Callable
    rho: float = 0.75
    alpha: float = 0.75
    initial_step: float | None = None
    clip_min: float = 0.0
    clip_max: float = 1.0


def _apgd_parts(problem: APGDProblem):
    """``(context, value_and_grad, variant)`` of ``problem``."""
    x = problem.x
    eps = jnp.asarray(problem.eps, x.dtype)
    variant = apgd_variant(problem.threat)
    initial_step = variant.initial_step if problem.initial_step is None else problem.initial_step

    def value_and_grad(x_adv):
        def total(xa):
            logits = problem.logits_fn(xa)
            values = problem.objective(logits).astype(jnp.float32)
            return jnp.sum(values), (values, logits)

        (_, (values, logits)), grad = jax.value_and_grad(total, has_aux=True)(x_adv)
        return (
            jnp.nan_to_num(values, nan=-jnp.inf),
            problem.success(logits),
            finite_gradient(grad),
        )

    def project(candidate):
        return project_to_threat(
            problem.threat, x, candidate, eps, problem.clip_min, problem.clip_max
        )

    max_step = (initial_step * eps).astype(jnp.float32)
    ctx = APGDContext(
        x,
        eps,
        problem.threat,
        project,
        problem.alpha,
        problem.rho,
        max_step,
        problem.clip_min,
        problem.clip_max,
    )
    return ctx, value_and_grad, variant


def apgd_init(problem: APGDProblem, x_start, *, warm: bool = False) -> APGDState:
    """The carry before APGD's first iteration, starting from ``x_start`` (projected).

    Args:
      problem: the run's :class:`APGDProblem`.
      x_start: ``[B, ...]`` the start (a random start drawn by the caller, or a
        warm start).
      warm: ``x_start`` is a warm start: l1-APGD then sets its sparsity from the
        start's support, as the reference does.

    Returns:
      The :class:`APGDState` at iteration 0 (clean successes count as found).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._apgd import APGDProblem, apgd_init
      >>> problem = APGDProblem(lambda x: x, jnp.zeros((1, 2)), 0.1, 10, linf,
      ...                       lambda z: z[:, 1], lambda z: z[:, 1] > z[:, 0])
      >>> state = apgd_init(problem, jnp.array([[0.0, 0.5]]))
      >>> state.x_adv.tolist(), state.found.tolist()
      ([[0.0, 0.10000000149011612]], [True])
    """
    ctx, value_and_grad, _ = _apgd_parts(problem)
    x = problem.x
    batch, features = x.shape[0], int(np.prod(x.shape[1:]))
    clean_success = problem.success(problem.logits_fn(x))
    x0 = ctx.project(x_start)
    loss0, success0, grad0 = value_and_grad(x0)
    nonzero0 = jnp.full(batch, float(features), jnp.float32)
    share0 = jnp.full(batch, 0.2, jnp.float32)
    if warm:
        nonzero0 = jnp.sum((x0 != x).reshape(batch, -1), -1).astype(jnp.float32)
        share0 = nonzero0 / features / 1.5
    return APGDState(
        i=jnp.asarray(0),
        x_adv=x0,
        x_prev=x0,
        grad=grad0,
        loss=loss0,
        step=jnp.broadcast_to(ctx.max_step, (batch,)),
        increases=jnp.zeros(batch, jnp.int32),
        loss_best=loss0,
        x_best=x0,
        grad_best=grad0,
        loss_best_last=loss0,
        reduced_last=jnp.zeros(batch, bool),
        best_adv=_select(clean_success, x, x0),
        found=clean_success | success0,
        share=share0,
        nonzero_last=nonzero0,
    )


def apgd_iterate(
    problem: APGDProblem, state: APGDState, *, stop=None, early_stop: bool = True
) -> APGDState:
    """Runs APGD's iterations from ``state.i`` up to ``stop`` (``None``: ``problem.steps``).

    A run may be cut into segments at any iterations (the checkpoint schedule
    is indexed by ``state.i``), so a caller can drop finished examples between
    segments and carry on with the rest: the result per example is the same.

    Args:
      problem: the run's :class:`APGDProblem`.
      state: the carry (from :func:`apgd_init` or an earlier segment).
      stop: the iteration to stop at (an int or a traced scalar, ``<= problem.steps``).
      early_stop: also stop once every example has succeeded.

    Returns:
      The carry at ``stop`` (or earlier, with ``early_stop``).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._apgd import APGDProblem, apgd_init, apgd_iterate
      >>> problem = APGDProblem(lambda x: jnp.stack([1.1 - x.sum(-1), x.sum(-1) - 1.1], -1),
      ...                       jnp.full((1, 2), 0.5), 0.1, 10, linf,
      ...                       lambda z: z[:, 1], lambda z: z[:, 1] > z[:, 0])
      >>> state = apgd_iterate(problem, apgd_init(problem, problem.x), stop=4)
      >>> int(state.i), state.found.tolist()
      (1, [True])
    """
    ctx, value_and_grad, variant = _apgd_parts(problem)
    is_check, window = (jnp.asarray(a) for a in variant.schedule(problem.steps))
    stop = problem.steps if stop is None else stop

    def cond(s: APGDState):
        more = s.i < stop
        return more & ~jnp.all(s.found) if early_stop else more

    def body(s: APGDState):
        x_new = variant.update(ctx, s)
        loss, succ, grad = value_and_grad(x_new)
        tracked = track_best(s, x_new, loss, succ, grad)
        return variant.checkpoint(ctx, tracked, is_check[s.i], window[s.i])

    return jax.lax.while_loop(cond, body, state)


def apgd_result(state: APGDState):
    """``(x_adv, found, x_best)``: per example the first success, else the best point.

    Args:
      state: the final carry.

    Returns:
      ``x_adv [B, ...]``, ``found [B]`` and ``x_best [B, ...]`` (gradients stopped).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._apgd import APGDProblem, apgd_init, apgd_result
      >>> problem = APGDProblem(lambda x: x, jnp.zeros((1, 2)), 0.1, 10, linf,
      ...                       lambda z: z[:, 1], lambda z: z[:, 1] > z[:, 0])
      >>> x_adv, found, _ = apgd_result(apgd_init(problem, jnp.array([[0.0, 0.5]])))
      >>> x_adv.tolist(), found.tolist()
      ([[0.0, 0.10000000149011612]], [True])
    """
    x_adv = _select(state.found, state.best_adv, state.x_best)
    return (
        jax.lax.stop_gradient(x_adv),
        state.found,
        jax.lax.stop_gradient(state.x_best),
    )


def _apgd_run(
    logits_fn,
    x,
    key,
    *,
    eps,
    steps: int,
    threat: ThreatModel,
    objective,
    success,
    rho: float,
    alpha: float,
    initial_step: float | None,
    early_stop: bool,
    clip_min: float,
    clip_max: float,
    x_start=None,
):
    """One APGD run from a random start (or ``x_start``): ``(x_adv, found, x_best)``."""
    eps = jnp.asarray(eps, x.dtype)
    problem = APGDProblem(
        logits_fn,
        x,
        eps,
        steps,
        threat,
        objective,
        success,
        rho,
        alpha,
        initial_step,
        clip_min,
        clip_max,
    )
    warm = x_start is not None
    if not warm:
        x_start = apgd_variant(threat).start(threat, key, x, eps)
    state = apgd_init(problem, x_start, warm=warm)
    return apgd_result(apgd_iterate(problem, state, early_stop=early_stop))


def _validate(eps, steps, restarts, clip_min, clip_max, rho, alpha):
    check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    check_range(clip_min, clip_max)
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}.")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}.")
    return steps, restarts


def _eps_schedule(eps_schedule: bool | None, threat: ThreatModel) -> bool:
    supported = apgd_variant(threat).eps_schedule
    if eps_schedule is None:
        return supported
    if eps_schedule and not supported:
        raise ValueError(f"eps_schedule is for the L1 threat model only, got {threat.name!r}.")
    return bool(eps_schedule)


def apgd(
    eps,
    *,
    norm: str | ThreatModel = "linf",
    loss: str | Loss = "ce",
    steps: int = 100,
    restarts: int = 1,
    targeted: bool = False,
    rho: float = 0.75,
    alpha: float = 0.75,
    early_stop: bool = True,
    eps_schedule: bool | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds APGD (Croce & Hein 2020): APGD-CE (``loss="ce"``) or APGD-DLR (``loss="dlr"``).

    "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", arXiv:2003.01690; l1-APGD: arXiv:2103.01208.

    Defaults are the paper's: 100 iterations, momentum ``alpha = 0.75``,
    ``rho = 0.75``, initial step ``2 * eps``, a random start (uniform in the
    Linf ball; for L2 on the sphere of radius ``eps``, as the authors' code), and
    per-example step-size halving at the checkpoints described in the module
    docstring. For ``norm="l1"`` it is l1-APGD (Croce & Hein 2021; see the
    module docstring) with AutoAttack's L1 budget schedule ``3 eps, 2 eps, eps``
    (``eps_schedule``); AutoAttack's standard L1 evaluation adds
    ``restarts=5``. The loop is a
    ``lax.while_loop`` that stops once every example is broken
    (``early_stop``); broken examples keep their first successful iterate.

    Args:
      eps: the perturbation budget.
      norm: ``"linf"``, ``"l2"``, ``"l1"`` or any :class:`ThreatModel` (a
        user-defined one runs the generic APGD; L1 runs l1-APGD); ``eps`` and
        the step size (``2 eps`` at start) are in its norm.
      loss: ``"ce"``, ``"dlr"`` or a per-example loss ``(logits, y) -> [B]``.
      steps: iterations per run.
      restarts: random restarts (vmapped, see :func:`with_restarts`).
      targeted: ``y`` holds targets; the loss is minimised (use ``"ce"``; for
        targeted DLR over the top classes use :func:`apgd_t`).
      rho: the checkpoint threshold on the share of loss increases.
      alpha: the momentum weight.
      early_stop: stop the loop once all examples are successful.
      eps_schedule: L1 only: spend ``30% / 30% / 40%`` of the iterations at the
        budgets ``3 eps, 2 eps, eps``, each stage starting where the previous
        one reached its highest loss (only the last stage's successes count).
        ``None``: on for L1 (AutoAttack's ``use_largereps``).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv``.

    Raises:
      ValueError: a bad budget, ``steps`` or ``restarts`` below 1, ``rho`` or
        ``alpha`` outside ``(0, 1]``, an unknown norm or loss, targeted ``"dlr"``,
        or ``eps_schedule=True`` for a threat model other than L1.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.apgd(0.1, steps=10)(
      ...     logits_fn, jnp.full((2, 3), 0.5), jnp.array([0, 1]), key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - 0.5).max() <= 0.1 + 1e-6)
      True
    """
    steps, restarts = _validate(eps, steps, restarts, clip_min, clip_max, rho, alpha)
    threat = get_threat_model(norm)
    eps_schedule = _eps_schedule(eps_schedule, threat)
    if targeted and loss == "dlr":
        raise ValueError("targeted APGD with the untargeted 'dlr' loss is meaningless; use apgd_t.")
    loss_fn = get_loss(loss)
    sign = -1.0 if targeted else 1.0

    def single(logits_fn, x, y, *, key):
        x_adv, _ = apgd_loop(
            logits_fn,
            x,
            key,
            eps=eps,
            steps=steps,
            threat=threat,
            objective=lambda logits: sign * loss_fn(logits, y),
            success=lambda logits: is_successful(logits, y, targeted),
            rho=rho,
            alpha=alpha,
            early_stop=early_stop,
            eps_schedule=eps_schedule,
            clip_min=clip_min,
            clip_max=clip_max,
        )
        return x_adv

    run = single
    if restarts > 1:
        run = with_restarts(single, restarts, loss=loss_fn, targeted=targeted)
    return guarded(run, name="apgd", eps=eps, norm=threat, clip_min=clip_min, clip_max=clip_max)


def top_classes(logits: jax.Array, y: jax.Array, count: int) -> jax.Array:
    """``[count, B]``: per example the ``count`` most likely classes other than ``y``, in order.

    Args:
      logits: ``[B, K]``.
      y: ``[B]`` labels.
      count: how many classes (``< K``).

    Returns:
      ``[count, B]`` int.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._apgd import top_classes
      >>> top_classes(jnp.array([[0.0, 3.0, 2.0, 1.0]]), jnp.array([1]), 2).tolist()
      [[2], [3]]
    """
    masked = jnp.where(jax.nn.one_hot(as_labels(y), logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jax.lax.top_k(masked, count)[1].T


def apgd_t(
    eps,
    *,
    norm: str | ThreatModel = "linf",
    steps: int = 100,
    num_targets: int = 9,
    restarts: int = 1,
    rho: float = 0.75,
    alpha: float = 0.75,
    early_stop: bool = True,
    eps_schedule: bool | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds APGD-T (Croce & Hein 2020): targeted DLR runs towards the top classes.

    "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", arXiv:2003.01690.

    For each of the ``num_targets`` classes ranked highest by the clean logits
    (after the true one), runs :func:`apgd` maximising the targeted DLR loss
    ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (:func:`advjax.losses.dlr_targeted`).
    Success means misclassification, as in AutoAttack. Targets run one after the
    other in a ``lax.scan``; examples broken by an earlier target are frozen, and
    a target whose batch is already all broken is skipped with ``lax.cond``.
    AutoAttack's standard version uses 9 targets, 100 iterations, 1 restart.

    Args:
      eps: the perturbation budget.
      norm: ``"linf"``, ``"l2"``, ``"l1"`` or any :class:`ThreatModel` (a
        user-defined one runs the generic APGD; L1 runs l1-APGD); ``eps`` and
        the step size (``2 eps`` at start) are in its norm.
      steps: iterations per target.
      num_targets: how many of the top classes to target (``< num_classes``).
      restarts: random restarts per target.
      rho: the checkpoint threshold, as in :func:`apgd`.
      alpha: the momentum weight.
      early_stop: stop a target's loop once all examples are broken.
      eps_schedule: as in :func:`apgd` (``None``: on for L1).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` with ``y`` the true labels.

    Raises:
      ValueError: a bad budget or count, ``rho`` or ``alpha`` outside ``(0, 1]``,
        an unknown norm, ``eps_schedule`` off L1, or (when called) a model with
        fewer than ``max(4, num_targets + 1)`` classes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (3, 5))
      >>> logits_fn = lambda x: x @ w
      >>> x = jnp.full((2, 3), 0.5)
      >>> x_adv = advjax.attacks.apgd_t(0.1, steps=5, num_targets=2)(
      ...     logits_fn, x, jnp.array([0, 1]), key=jax.random.key(0))
      >>> x_adv.shape
      (2, 3)
    """
    steps, restarts = _validate(eps, steps, restarts, clip_min, clip_max, rho, alpha)
    num_targets = check_positive_int(num_targets, "num_targets")
    threat = get_threat_model(norm)
    eps_schedule = _eps_schedule(eps_schedule, threat)

    def attack(logits_fn, x, y, *, key):
        clean_logits = logits_fn(x)
        targets = top_classes(clean_logits, y, num_targets)
        keys = restart_keys(key, num_targets * restarts).reshape(num_targets, restarts)
        broken0 = is_successful(clean_logits, y, False)

        def run_target(carry, inputs):
            x_best, broken = carry
            target, target_keys = inputs

            def attack_once(run_key):
                # Broken examples start at their adversarial point: they count as done.
                x_in = _select(broken, x_best, x)
                return apgd_loop(
                    logits_fn,
                    x_in,
                    run_key,
                    eps=eps,
                    steps=steps,
                    threat=threat,
                    objective=lambda logits: dlr_targeted(logits, y, target),
                    success=lambda logits: is_successful(logits, y, False),
                    rho=rho,
                    alpha=alpha,
                    early_stop=early_stop,
                    eps_schedule=eps_schedule,
                    clip_min=clip_min,
                    clip_max=clip_max,
                )

            def attack_all(_):
                candidate, found = x_best, broken
                for r in range(restarts):
                    x_r, found_r = attack_once(target_keys[r])
                    take = found_r & ~found
                    candidate, found = _select(take, x_r, candidate), found | found_r
                return candidate, found

            candidate, found = jax.lax.cond(
                jnp.all(broken), lambda _: (x_best, broken), attack_all, None
            )
            take = found & ~broken
            return (_select(take, candidate, x_best), broken | found), None

        (x_adv, _), _ = jax.lax.scan(run_target, (x, broken0), (targets, keys))
        return jax.lax.stop_gradient(x_adv)

    return guarded(
        attack,
        name=f"apgd_t (targeted DLR loss, num_targets={num_targets})",
        eps=eps,
        norm=threat,
        clip_min=clip_min,
        clip_max=clip_max,
        min_classes=max(4, num_targets + 1),
    )
