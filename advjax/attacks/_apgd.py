"""Auto-PGD (Croce & Hein 2020): APGD-CE, APGD-DLR and the targeted APGD-T.

"Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020). PGD with momentum ``alpha = 0.75`` whose
step size starts at ``2 * eps`` and is halved, per example, at checkpoints
``w_j = ceil(p_j * N)`` with ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j -
p_{j-1} - 0.03, 0.06)`` when the loss rose in fewer than ``rho = 0.75`` of the
steps since the last checkpoint, or when the step was not reduced there and the
best loss did not improve; a halving restarts from the best point so far.

For the L1 ball the loop is l1-APGD (Croce & Hein 2021, "Mind the box: l1-APGD
for sparse adversarial attacks on image classifiers"): a Gaussian start
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

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select, is_successful, project_to_threat
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._threat import ThreatModel, get_threat_model, sparse_l1_direction
from advjax.attacks._transforms import restart_keys, with_restarts
from advjax.losses import Loss, as_labels, dlr_targeted, get_loss


def checkpoint_schedule(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per iteration: whether it ends a checkpoint window, and that window's length.

    Follows the reference implementation: first window ``max(int(0.22 N), 1)``,
    each next one ``0.03 N`` shorter, never below ``0.06 N``.
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
    """Per iteration: whether l1-APGD adapts its sparsity and step there (every ``4%``)."""
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

    Returns ``(x_adv, found)``: per example the first successful iterate (clean
    input included) if any, otherwise the point of highest objective.
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
    batch = x.shape[0]
    sparse = threat.name == "l1"
    features = int(np.prod(x.shape[1:]))
    if initial_step is None:
        initial_step = 1.0 if sparse else 2.0

    def value_and_grad(x_adv):
        def total(xa):
            logits = logits_fn(xa)
            values = objective(logits).astype(jnp.float32)
            return jnp.sum(values), (values, logits)

        (_, (values, logits)), grad = jax.value_and_grad(total, has_aux=True)(x_adv)
        return jnp.nan_to_num(values, nan=-jnp.inf), success(logits), finite_gradient(grad)

    def project(candidate):
        return project_to_threat(threat, x, candidate, eps, clip_min, clip_max)

    def sparse_direction(x_adv, grad, share):
        # No mass on coordinates pinned at the box (Croce & Hein 2021).
        pinned = ((x_adv <= clip_min) & (grad < 0)) | ((x_adv >= clip_max) & (grad > 0))
        return sparse_l1_direction(jnp.where(pinned, 0.0, grad), share)

    clean_success = success(logits_fn(x))
    if x_start is not None:
        x0 = project(x_start)
    elif sparse:  # l1-APGD: a Gaussian projected onto the ball ∩ box
        x0 = project(x + jax.random.normal(key, x.shape, x.dtype))
    else:
        x0 = project(x + threat.random_init(key, x.shape, eps))
    loss0, success0, grad0 = value_and_grad(x0)
    found = clean_success | success0
    best_adv = _select(clean_success, x, x0)
    is_check, window = (jnp.asarray(a) for a in checkpoint_schedule(steps))
    if sparse:
        is_check = jnp.asarray(l1_checkpoint_schedule(steps))
    max_step = (initial_step * eps).astype(jnp.float32)
    step0 = jnp.broadcast_to(max_step, (batch,))
    nonzero0 = jnp.full(batch, float(features), jnp.float32)
    share0 = jnp.full(batch, 0.2, jnp.float32)
    if x_start is not None:  # a warm start sets the sparsity from its support, as l1-APGD does
        nonzero0 = jnp.sum((x0 != x).reshape(batch, -1), -1).astype(jnp.float32)
        share0 = nonzero0 / features / 1.5
    state = dict(
        i=jnp.asarray(0),
        x_adv=x0,
        x_prev=x0,
        grad=grad0,
        loss=loss0,
        step=step0,
        increases=jnp.zeros(batch, jnp.int32),
        loss_best=loss0,
        x_best=x0,
        grad_best=grad0,
        loss_best_last=loss0,
        reduced_last=jnp.zeros(batch, bool),
        best_adv=best_adv,
        found=found,
        share=share0,
        nonzero_last=nonzero0,
    )

    def cond(s):
        more = s["i"] < steps
        return more & ~jnp.all(s["found"]) if early_stop else more

    def body(s):
        i = s["i"]
        momentum = jnp.where(i == 0, 1.0, alpha)
        step = s["step"].reshape((batch,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        if sparse:  # l1-APGD takes no momentum
            x_new = project(s["x_adv"] + step * sparse_direction(s["x_adv"], s["grad"], s["share"]))
        else:
            z = project(s["x_adv"] + step * threat.direction(s["grad"]))
            x_new = project(
                s["x_adv"]
                + momentum * (z - s["x_adv"])
                + (1 - momentum) * (s["x_adv"] - s["x_prev"])
            )
        loss, succ, grad = value_and_grad(x_new)
        new_found = succ & ~s["found"]
        best_adv = _select(new_found, x_new, s["best_adv"])
        found = s["found"] | succ
        increases = s["increases"] + (loss > s["loss"]).astype(jnp.int32)
        improved = loss > s["loss_best"]
        x_best = _select(improved, x_new, s["x_best"])
        grad_best = _select(improved, grad, s["grad_best"])
        loss_best = jnp.where(improved, loss, s["loss_best"])
        check = is_check[i]
        if sparse:
            return sparse_checkpoint(
                s,
                check,
                x_new,
                loss,
                grad,
                best_adv,
                found,
                increases,
                loss_best,
                x_best,
                grad_best,
            )
        oscillating = increases <= window[i] * rho
        no_progress = ~s["reduced_last"] & (s["loss_best_last"] >= loss_best)
        reduce = check & (oscillating | no_progress)
        return dict(
            i=i + 1,
            x_adv=_select(reduce, x_best, x_new),
            x_prev=s["x_adv"],
            grad=_select(reduce, grad_best, grad),
            loss=loss,
            step=jnp.where(reduce, s["step"] / 2, s["step"]),
            increases=jnp.where(check, 0, increases),
            loss_best=loss_best,
            x_best=x_best,
            grad_best=grad_best,
            loss_best_last=jnp.where(check, loss_best, s["loss_best_last"]),
            reduced_last=jnp.where(check, reduce, s["reduced_last"]),
            best_adv=best_adv,
            found=found,
            share=s["share"],
            nonzero_last=s["nonzero_last"],
        )

    def sparse_checkpoint(
        s, check, x_new, loss, grad, best_adv, found, increases, loss_best, x_best, grad_best
    ):
        nonzero = jnp.sum((x_best != x).reshape(batch, -1), -1).astype(jnp.float32)
        sparser = nonzero < 0.95 * s["nonzero_last"]
        step = jnp.where(sparser, max_step, s["step"] / 1.5)
        step = jnp.clip(step, max_step / 10.0, max_step)
        restart = check & sparser
        return dict(
            i=s["i"] + 1,
            x_adv=_select(restart, x_best, x_new),
            x_prev=s["x_adv"],
            grad=_select(restart, grad_best, grad),
            loss=loss,
            step=jnp.where(check, step, s["step"]),
            increases=increases,
            loss_best=loss_best,
            x_best=x_best,
            grad_best=grad_best,
            loss_best_last=s["loss_best_last"],
            reduced_last=s["reduced_last"],
            best_adv=best_adv,
            found=found,
            share=jnp.where(check, nonzero / features / 1.5, s["share"]),
            nonzero_last=jnp.where(check, nonzero, s["nonzero_last"]),
        )

    state = jax.lax.while_loop(cond, body, state)
    x_adv = _select(state["found"], state["best_adv"], state["x_best"])
    return (
        jax.lax.stop_gradient(x_adv),
        state["found"],
        jax.lax.stop_gradient(state["x_best"]),
    )


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
    if eps_schedule is None:
        return threat.name == "l1"
    if eps_schedule and threat.name != "l1":
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

    Defaults are the paper's: 100 iterations, momentum ``alpha = 0.75``,
    ``rho = 0.75``, initial step ``2 * eps``, a uniform random start, and
    per-example step-size halving at the checkpoints described in the module
    docstring. For ``norm="l1"`` it is l1-APGD (Croce & Hein 2021; see the
    module docstring) with AutoAttack's L1 budget schedule ``3 eps, 2 eps, eps``
    (``eps_schedule``); AutoAttack's standard L1 evaluation adds
    ``restarts=5``. The loop is a
    ``lax.while_loop`` that stops once every example is broken
    (``early_stop``); broken examples keep their first successful iterate.

    Args:
      eps: the perturbation budget.
      norm: ``"linf"``, ``"l2"``, ``"l1"`` or a :class:`ThreatModel`.
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
    """``[count, B]``: per example the ``count`` most likely classes other than ``y``, in order."""
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

    For each of the ``num_targets`` classes ranked highest by the clean logits
    (after the true one), runs :func:`apgd` maximising the targeted DLR loss
    ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (:func:`advjax.losses.dlr_targeted`).
    Success means misclassification, as in AutoAttack. Targets run one after the
    other in a ``lax.scan``; examples broken by an earlier target are frozen, and
    a target whose batch is already all broken is skipped with ``lax.cond``.
    AutoAttack's standard version uses 9 targets, 100 iterations, 1 restart.

    Args:
      eps: the perturbation budget.
      norm: ``"linf"``, ``"l2"``, ``"l1"`` or a :class:`ThreatModel`.
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
