"""Attack transforms: functions from attacks to attacks, composed like optax chains."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import (
    check_batch,
    check_classes,
    check_epsilon,
    check_positive_int,
    raise_if,
)
from advjax.attacks._core import Attack, attack_objective, is_better, is_successful
from advjax.attacks._guard import admissible, checked_then_compiled
from advjax.data import map_batches
from advjax.losses import Loss, get_loss


def restart_keys(key: jax.Array, restarts: int) -> jax.Array:
    """The per-restart keys: restart ``i`` uses ``fold_in(key, i)``.

    Args:
      key: a PRNG key (``jax.random.key``), the caller's key for the whole run.
      restarts: the number of keys ``R`` to make (a Python int; ``0`` gives none).

    Returns:
      ``R`` keys stacked on a leading axis (``key[R]``); key ``i`` is
      ``jax.random.fold_in(key, i)``.

    Example:
      >>> import jax
      >>> from advjax.attacks import restart_keys
      >>> key = jax.random.key(0)
      >>> keys = restart_keys(key, 3)
      >>> keys.shape
      (3,)
      >>> same = jax.random.key_data(keys[2]) == jax.random.key_data(jax.random.fold_in(key, 2))
      >>> bool(same.all())
      True
    """
    return jax.vmap(lambda index: jax.random.fold_in(key, index))(jnp.arange(restarts))


def with_restarts(
    attack: Attack,
    restarts: int,
    *,
    loss: str | Loss = "ce",
    targeted: bool = False,
    batched: bool = False,
) -> Attack:
    """Runs ``attack`` from ``restarts`` keys and keeps, per example, the strongest result.

    The strongest is a successful adversarial example if any restart found one,
    otherwise the one with the highest ``loss`` (lowest for targeted attacks).
    Restart ``0`` runs with the caller's key itself, so restarts are never weaker
    than one run of ``attack`` with the same key.

    Args:
      attack: ``attack(logits_fn, x, y, *, key) -> x_adv``.
      restarts: the number of runs (>= 1).
      loss: the loss that ranks unsuccessful candidates.
      targeted: whether ``y`` holds target classes.
      batched: ``False`` (default) runs the restarts one after another in a
        ``lax.scan``: one set of the attack's buffers whatever ``restarts``,
        and the batch stays the leading axis of every array, so a program
        whose batch is split over devices stays split (vmapped restarts are
        merged into the batch axis in front of it, which the partitioner can
        only serve by gathering the whole batch on every device). On CPU it is
        also the faster layout (PGD-20 x 5 restarts x 3 budgets, batch 500,
        fast-AT MNIST net: 8.5 s against 14.6 s vmapped). ``True`` vmaps
        over restarts: more parallel work per step for a small batch on one
        accelerator, memory growing with ``restarts``.

    Returns:
      An attack with the same signature.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> attack = advjax.with_restarts(advjax.pgd(eps=0.1, steps=3), 4)
      >>> x_adv = attack(logits_fn, jnp.full((2, 3), 0.5), jnp.array([0, 1]),
      ...                key=jax.random.key(0))
      >>> x_adv.shape
      (2, 3)
    """
    restarts = check_positive_int(restarts, "restarts")
    loss_fn = get_loss(loss)
    if getattr(attack, "rewrap", None) is not None and getattr(attack, "inner", None) is not None:
        # An advjax attack: restart its loop and validate inputs / enforce outputs once.
        inner = with_restarts(attack.inner, restarts, loss=loss, targeted=targeted, batched=batched)
        return _restarts_of(attack.rewrap(inner), attack, restarts, targeted)

    def score(logits_fn, x, x_adv, y):
        _, (per_example, logits) = attack_objective(logits_fn, loss_fn, y, targeted)(x_adv)
        # A point outside the attack's ball or box, or not finite, never wins.
        valid = admissible(attack, x, x_adv)
        success = is_successful(logits, y, targeted) & valid
        per_example = jnp.nan_to_num(per_example.astype(jnp.float32), nan=-jnp.inf)
        return success, jnp.where(valid, per_example, -jnp.inf)

    def keep_stronger(best, candidate):
        best_x, best_success, best_loss = best
        cand_x, cand_success, cand_loss = candidate
        better = is_better(cand_success, cand_loss, best_success, best_loss)
        mask = better.reshape(better.shape + (1,) * (cand_x.ndim - 1))
        return (
            jnp.where(mask, cand_x, best_x),
            jnp.where(better, cand_success, best_success),
            jnp.where(better, cand_loss, best_loss),
        )

    def run_one(logits_fn, x, y, key):
        x_adv = attack(logits_fn, x, y, key=key)
        return (x_adv, *score(logits_fn, x, x_adv, y))

    def restarted(logits_fn, x, y, *, key):
        keys = restart_keys(key, restarts).at[0].set(key)
        if restarts == 1 or not batched:
            # Every run inside one scan: one set of the attack's buffers, whatever ``restarts``.
            batch = jnp.shape(x)[0]
            start = (x, jnp.zeros(batch, bool), jnp.full(batch, -jnp.inf, jnp.float32))

            def body(best, k):
                return keep_stronger(best, run_one(logits_fn, x, y, k)), None

            best, _ = jax.lax.scan(body, start, keys)
        else:
            first = run_one(logits_fn, x, y, keys[0])
            others = jax.vmap(lambda k: run_one(logits_fn, x, y, k))(keys[1:])
            best, _ = jax.lax.scan(lambda b, c: (keep_stronger(b, c), None), first, others)
        return jax.lax.stop_gradient(_input_where_invalid(best[0], x, attack))

    restarted.constraints = getattr(attack, "constraints", None)
    restarted.enforced = getattr(attack, "enforced", False)
    return _restarts_of(restarted, attack, restarts, targeted)


def _restarts_of(restarted, single, restarts: int, targeted: bool):
    """Records on ``restarted`` what it repeats, for evaluations that run restarts themselves.

    An evaluation that only needs to know whether some restart breaks a point
    can run restart ``r`` (key ``fold_in(key, r)``, restart 0 the key itself)
    on the points no earlier restart broke: ``restarted.restarts``,
    ``restarted.single`` and ``restarted.restart_targeted`` say how.
    """
    restarted.restarts, restarted.single, restarted.restart_targeted = restarts, single, targeted
    return restarted


def per_example_keys(attack: Attack) -> Attack:
    """``attack`` with one PRNG key per example: its ``key`` argument becomes ``[B]`` keys.

    Each example is attacked as if alone, with its own key (vmapped), so its
    result does not depend on the other examples of the batch: an evaluation
    can drop finished examples, change the batch size or split the batch over
    devices and get the same points. An advjax attack keeps one validation
    layer around the whole batch (its loop is vmapped, not its checks), so this
    costs no more than the batched attack. The attack must treat examples
    independently (every per-example attack does; a universal perturbation
    does not).

    Args:
      attack: ``attack(logits_fn, x, y, *, key) -> x_adv`` (or a tuple whose
        leaves all have a leading batch axis).

    Returns:
      ``attack(logits_fn, x, y, *, key)`` with ``key`` a key array ``[B]`` (an
      attack taking further per-example arrays after ``y`` gets them split too).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> from advjax.attacks import per_example_keys
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], -1)
      >>> attack = per_example_keys(advjax.pgd(0.1, steps=3))
      >>> x, y = jnp.full((3, 2), 0.5), jnp.array([0, 0, 0])
      >>> keys = jax.random.split(jax.random.key(0), 3)
      >>> both = attack(logits_fn, x, y, key=keys)
      >>> alone = attack(logits_fn, x[1:2], y[1:2], key=keys[1:2])
      >>> bool(jnp.array_equal(both[1:2], alone))
      True
    """

    def vmapped(run):
        def per_example(logits_fn, x, y, *extras, key):
            def one(xi, yi, ki, *ei):
                out = run(logits_fn, xi[None], yi[None], *(e[None] for e in ei), key=ki)
                return jax.tree.map(lambda leaf: leaf[0], out)

            return jax.vmap(one)(x, y, key, *extras)

        return per_example

    inner, rewrap = getattr(attack, "inner", None), getattr(attack, "rewrap", None)
    if inner is not None and rewrap is not None:
        return rewrap(vmapped(inner))
    wrapped = functools.wraps(attack)(vmapped(attack))
    for name in ("constraints", "min_classes", "attack_name", "enforced"):
        if hasattr(attack, name):
            setattr(wrapped, name, getattr(attack, name))
    return wrapped


def _input_where_invalid(x_adv, x, attack):
    """``x_adv``, with the input itself wherever the point is not admissible for ``attack``."""
    valid = admissible(attack, x, x_adv)
    return jnp.where(_mask_like(valid, x), x_adv, x.astype(x_adv.dtype))


def over_epsilons(
    make_attack: Callable[[jax.Array], Attack], epsilons, *, batched: bool = False
) -> Attack:
    """Maps an attack factory over a vector of budgets: one compiled sweep.

    Args:
      make_attack: ``eps -> attack``, e.g. ``lambda e: advjax.pgd(eps=e, steps=20)``;
        it is called with a traced ``eps``.
      epsilons: 1-D array of budgets ``[E]`` (non-negative).
      batched: ``False`` (default) runs the budgets one after another
        (``lax.map``), keeping the batch the leading axis so a batch split
        over devices stays split (see :func:`with_restarts`); ``True`` vmaps
        over them.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv[E, B, ...]``; every budget uses
      the same key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> sweep = advjax.over_epsilons(lambda e: advjax.fgsm(eps=e), jnp.array([0.0, 0.1]))
      >>> sweep(logits_fn, jnp.full((1, 2), 0.5), jnp.array([0]), key=jax.random.key(0)).shape
      (2, 1, 2)
    """
    epsilons = jnp.asarray(epsilons, jnp.float32)
    if epsilons.ndim != 1:
        raise ValueError(f"epsilons must be a 1-D array, got shape {epsilons.shape}.")
    check_epsilon(epsilons, "epsilons")

    def sweep(logits_fn, x, y, *, key):
        def one(eps):
            return make_attack(eps)(logits_fn, x, y, key=key)

        return jax.vmap(one)(epsilons) if batched else jax.lax.map(one, epsilons)

    return sweep


def _mask_like(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def _success_of(logits_fn, x_adv, y, targeted):
    return is_successful(logits_fn(x_adv), y, targeted)


def choose_targets(logits: jax.Array, y: jax.Array, targets, key: jax.Array) -> jax.Array:
    """Target classes ``[B]`` for :func:`targeted`.

    ``targets`` is ``"random"`` (uniform over the other classes), ``"next"``
    (``(y + 1) % K``), ``"second"`` (the most likely wrong class by the clean
    logits), ``"least_likely"``, an int array ``[B]``, or a callable
    ``(logits, y, key) -> [B]``.

    Args:
      logits: the clean logits ``[B, K]`` (``K >= 2`` classes).
      y: the true labels, integer ``[B]`` or one-hot/probability rows ``[B, K]``
        (their argmax).
      targets: one of the rules above.
      key: PRNG key, used by ``"random"`` and passed on to a callable.

    Returns:
      ``int32[B]`` target classes in ``[0, K)``; the named rules never pick the
      true class.

    Raises:
      ValueError: ``K < 2``, an unknown rule name, or a target array that is not
        integer with shape ``[B]``.
      InvalidInputError: a target array with a class outside ``[0, K)`` (a
        ``ValueError``; under ``jax.jit`` wrapped in ``jax.errors.JaxRuntimeError``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import choose_targets
      >>> logits = jnp.array([[3.0, 2.0, 1.0], [0.0, 1.0, 5.0]])
      >>> y, key = jnp.array([0, 2]), jax.random.key(0)
      >>> choose_targets(logits, y, "next", key).tolist()
      [1, 0]
      >>> choose_targets(logits, y, "second", key).tolist()
      [1, 1]
      >>> choose_targets(logits, y, "least_likely", key).tolist()
      [2, 0]
      >>> bool((choose_targets(logits, y, "random", key) != y).all())
      True
      >>> choose_targets(logits, y, "nearest", key)
      Traceback (most recent call last):
        ...
      ValueError: unknown targets 'nearest'; choose 'random', 'next', ...
    """
    num_classes = logits.shape[-1]
    check_classes(num_classes, 2, "choose_targets (a target other than the true class)")
    labels = y if y.ndim == 1 else jnp.argmax(y, -1)
    if callable(targets):
        return jnp.asarray(targets(logits, labels, key)).astype(jnp.int32)
    if isinstance(targets, str):
        own = jax.nn.one_hot(labels, num_classes, dtype=bool)
        if targets == "random":
            offset = jax.random.randint(key, labels.shape, 1, num_classes)
            return ((labels + offset) % num_classes).astype(jnp.int32)
        if targets == "next":
            return ((labels + 1) % num_classes).astype(jnp.int32)
        if targets == "second":
            return jnp.argmax(jnp.where(own, -jnp.inf, logits), -1).astype(jnp.int32)
        if targets == "least_likely":
            return jnp.argmin(jnp.where(own, jnp.inf, logits), -1).astype(jnp.int32)
        raise ValueError(
            f"unknown targets {targets!r}; choose 'random', 'next', 'second', 'least_likely', "
            "an int array [B] or a callable (logits, y, key) -> targets."
        )
    targets = jnp.asarray(targets)
    if targets.shape != labels.shape or not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(
            f"targets must be int [B]={labels.shape}, got {targets.dtype} {targets.shape}."
        )
    raise_if(
        (jnp.min(targets) < 0) | (jnp.max(targets) >= num_classes),
        "targets lie in [{}, {}], outside the model's classes [0, " + str(num_classes) + ").",
        jnp.min(targets),
        jnp.max(targets),
    )
    return targets.astype(jnp.int32)


def targeted(targeted_attack: Attack, targets="random") -> Attack:
    """Turns a targeted attack into one called with true labels, choosing the targets.

    ``targeted_attack`` must be built with ``targeted=True`` (it receives the
    targets as ``y``). The returned attack takes the true labels ``y`` and picks
    targets with :func:`choose_targets` from the clean logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (3, 4))
      >>> logits_fn = lambda x: x @ w
      >>> attack = advjax.attacks.targeted(advjax.pgd(0.5, steps=5, targeted=True), "next")
      >>> attack(logits_fn, jnp.full((2, 3), 0.5), jnp.array([0, 1]), key=jax.random.key(0)).shape
      (2, 3)
    """

    def core(logits_fn, x, y, *, key):
        target_key, attack_key = jax.random.split(key)
        goals = choose_targets(logits_fn(x), y, targets, target_key)
        return targeted_attack(logits_fn, x, goals, key=attack_key)

    attack = checked_then_compiled(functools.partial(_check_composite, [targeted_attack]), core)
    attack.constraints = getattr(targeted_attack, "constraints", None)
    attack.enforced = getattr(targeted_attack, "enforced", False)
    return attack


def early_stop(attack: Attack, *, targeted: bool = False) -> Attack:
    """Per-example early stopping around any attack.

    Examples that already succeed (misclassified, or at their target) are returned
    unchanged and given to ``attack`` as already-done points; if every example
    succeeds the attack is skipped altogether (``lax.cond``, no host sync). Attacks
    written with a ``lax.while_loop`` and done masks (APGD, FAB, Square,
    DeepFool, ...) also stop their own loop once all examples succeed.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x = jnp.full((1, 3), 0.5)
      >>> out = advjax.attacks.early_stop(advjax.pgd(0.1))(logits_fn, x, jnp.array([1]),
      ...                                                 key=jax.random.key(0))
      >>> bool(jnp.all(out == x))   # already misclassified: untouched
      True
    """

    def core(logits_fn, x, y, *, key):
        done = _success_of(logits_fn, x, y, targeted)

        def run(_):
            x_adv = attack(logits_fn, x, y, key=key)
            return jnp.where(_mask_like(done, x), x, x_adv)

        return jax.lax.stop_gradient(jax.lax.cond(jnp.all(done), lambda _: x, run, None))

    stopped = checked_then_compiled(functools.partial(_check_composite, [attack]), core)
    stopped.constraints = getattr(attack, "constraints", None)
    stopped.enforced = getattr(attack, "enforced", False)
    return stopped


def worst_case(attacks, *, targeted: bool = False, compact: bool = False) -> Attack:
    """Runs attacks in order; each example keeps the first successful adversarial example.

    Only still-robust examples are attacked further. Two ways:

    - ``compact=False`` (default, jittable): one compiled program. An attack
      whose batch is already all broken is skipped with ``lax.cond``, and broken
      examples enter the next attack at their adversarial point, so loops with
      done masks stop as soon as the robust ones are broken. Every attack that
      runs still computes on the whole batch.
    - ``compact=True`` (host loop, as AutoAttack does): between attacks the
      still-robust examples are gathered into a smaller batch (padded to a
      power of two, so each attack compiles for at most ``log2(B) + 1``
      shapes), so an attack costs in proportion to the points left. Each
      attack is jitted inside; the returned function itself must be called
      outside ``jax.jit``. Random draws depend on the compacted batch, so its
      adversarial examples differ from the masked version's (both are
      deterministic for a key).

    Attack ``i`` gets ``fold_in(key, i)``.

    Args:
      attacks: a sequence of attacks ``(logits_fn, x, y, *, key) -> x_adv``.
      targeted: whether success means reaching ``y`` (else misclassification).
      compact: run the host loop with compaction described above.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv``; unbroken examples get the
      last attack's output.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> attack = advjax.attacks.worst_case([advjax.fgsm(0.1), advjax.pgd(0.1, steps=5)])
      >>> attack(logits_fn, jnp.full((2, 3), 0.5), jnp.array([0, 1]),
      ...        key=jax.random.key(0)).shape
      (2, 3)
      >>> compact = advjax.attacks.worst_case([advjax.fgsm(0.1)], compact=True)
      >>> compact(logits_fn, jnp.full((2, 3), 0.5), jnp.array([0, 1]),
      ...         key=jax.random.key(0)).shape
      (2, 3)
    """
    attacks = list(attacks)
    if not attacks or not all(callable(a) for a in attacks):
        raise ValueError("worst_case needs a non-empty sequence of attacks (callables).")
    if compact:
        return _compacted_worst_case(attacks, targeted)

    def core(logits_fn, x, y, *, key):
        broken = _success_of(logits_fn, x, y, targeted)
        x_best = x
        for index, attack in enumerate(attacks):
            attack_key = jax.random.fold_in(key, index)

            def run(carry, attack=attack, attack_key=attack_key, index=index):
                x_best, broken = carry
                x_in = jnp.where(_mask_like(broken, x), x_best, x)
                x_adv = attack(logits_fn, x_in, y, key=attack_key)
                # Success counts only for an admissible point; an inadmissible one is not kept.
                valid = admissible(attack, x, x_adv)
                success = _success_of(logits_fn, x_adv, y, targeted) & valid & ~broken
                keep_old = broken | ~valid | (~success & (index < len(attacks) - 1))
                x_new = jnp.where(_mask_like(keep_old, x), x_best, x_adv)
                return x_new, broken | success

            x_best, broken = jax.lax.cond(
                jnp.all(broken), lambda carry: carry, run, (x_best, broken)
            )
        return jax.lax.stop_gradient(x_best)

    return checked_then_compiled(functools.partial(_check_composite, attacks), core)


def _check_composite(attacks, logits_fn, x, y) -> None:
    """The validation layer for a transform over ``attacks``: the first one's box, if it has one.

    Runs before anything is counted, so bad labels cannot make clean points look broken.
    """
    constraints = next(
        (c for c in (getattr(a, "constraints", None) for a in attacks) if c is not None), None
    )
    if constraints is None:
        check_batch(logits_fn, x, y)
    else:
        check_batch(logits_fn, x, y, constraints.clip_min, constraints.clip_max)


def _compacted_worst_case(attacks, targeted: bool) -> Attack:
    runs = [jax.jit(attack, static_argnums=0) for attack in attacks]
    success_of = jax.jit(_success_of, static_argnums=(0, 3))

    def combined(logits_fn, x, y, *, key):
        if any(isinstance(a, jax.core.Tracer) for a in (x, y)):
            raise ValueError(
                "worst_case(..., compact=True) gathers examples on the host between attacks and "
                "cannot be traced by jax.jit; call it directly (each attack is jitted inside) "
                "or use compact=False."
            )
        x, y = jnp.asarray(x), jnp.asarray(y)
        _check_composite(attacks, logits_fn, x, y)
        batch = x.shape[0]
        broken = np.array(success_of(logits_fn, x, y, targeted))
        x_best = x
        for index, (run, attack) in enumerate(zip(runs, attacks, strict=True)):
            todo = np.flatnonzero(~broken)
            if todo.size == 0:
                break

            def attempt(xb, yb, run=run, attack=attack, index=index):
                x_adv = run(logits_fn, xb, yb, key=jax.random.fold_in(key, index))
                valid = admissible(attack, xb, x_adv)
                return x_adv, valid, success_of(logits_fn, x_adv, yb, targeted) & valid

            found, valid, success = map_batches(
                attempt, [x, y], batch_size=batch, rows=todo, bucket=True
            )
            write = success | ((index == len(runs) - 1) & valid)
            if write.any():
                x_best = x_best.at[todo[write]].set(found[write])
            broken[todo[success]] = True
        return jax.lax.stop_gradient(x_best)

    return combined
