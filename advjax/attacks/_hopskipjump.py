"""HopSkipJump (Chen, Jordan & Wainwright 2020): a decision-based L2 attack.

"HopSkipJumpAttack: A Query-Efficient Decision-Based Attack" (IEEE S&P 2020,
arXiv:1904.02144). The pieces of one iteration are module-level functions:
the start search (:func:`initial_adversarial`), the bisection to the boundary
(:func:`boundary_search`), the boundary-normal estimate
(:func:`estimate_boundary_normal`) and the geometric step search
(:func:`geometric_step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import guarded
from advjax.attacks._minnorm import within_budget
from advjax.attacks._threat import l2
from advjax.losses import as_labels


def probe_counts(iterations: int, grad_samples: int, max_grad_samples: int) -> list[int]:
    """Probes per iteration ``t`` (0-based), as in the paper: ``int(grad_samples * sqrt(t + 1))``.

    Args:
      iterations: boundary iterations.
      grad_samples: the first iteration's probes.
      max_grad_samples: the cap.

    Returns:
      One count per iteration.

    Example:
      >>> from advjax.attacks._hopskipjump import probe_counts
      >>> probe_counts(4, 4, 7)
      [4, 5, 6, 7]
    """
    return [min(int(grad_samples * math.sqrt(t + 1)), max_grad_samples) for t in range(iterations)]


def _broadcast_rows(values, like):
    return values.reshape((like.shape[0],) + (1,) * (like.ndim - 1))


def boundary_search(is_adv: Callable, x, x_adv, steps: int):
    """Bisection on the segment ``[x, x_adv]`` keeping the adversarial end (``steps`` queries).

    Args:
      is_adv: ``[B, ...] -> [B]`` whether points are adversarial.
      x: ``[B, ...]`` the clean points (not adversarial).
      x_adv: ``[B, ...]`` adversarial points.
      steps: bisections.

    Returns:
      ``[B, ...]`` adversarial points within ``2^-steps`` of the boundary along the segment.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._hopskipjump import boundary_search
      >>> is_adv = lambda v: v.sum(-1) > 1.0
      >>> out = boundary_search(is_adv, jnp.zeros((1, 2)), jnp.ones((1, 2)), 10)
      >>> round(float(out.sum()), 3)
      1.002
    """
    batch = x.shape[0]

    def step(_, bounds):
        low, high = bounds  # blend weights of x_adv: low not adv, high adv
        mid = (low + high) / 2
        ok = is_adv(x + _broadcast_rows(mid, x) * (x_adv - x))
        return jnp.where(ok, low, mid), jnp.where(ok, mid, high)

    _, high = jax.lax.fori_loop(0, steps, step, (jnp.zeros(batch), jnp.ones(batch)))
    return x + _broadcast_rows(high, x) * (x_adv - x)


def initial_adversarial(many_adv: Callable, key, x, samples: int, clip_min, clip_max):
    """The first of ``samples`` uniform noise images that is adversarial, per example.

    Args:
      many_adv: ``[S, B, ...] -> [S, B]`` whether each candidate is adversarial.
      key: the noise key.
      x: ``[B, ...]`` the clean points (for shapes).
      samples: noise images tried.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``(start [B, ...], found [B])``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._hopskipjump import initial_adversarial
      >>> many_adv = lambda v: v.sum(-1) > 1.5
      >>> start, found = initial_adversarial(many_adv, jax.random.key(0), jnp.zeros((2, 2)), 50,
      ...                                    0.0, 1.0)
      >>> found.tolist(), bool(jnp.all(start.sum(-1) > 1.5))
      ([True, True], True)
    """
    batch = x.shape[0]
    noise = jax.random.uniform(key, (samples,) + x.shape, minval=clip_min, maxval=clip_max)
    ok = many_adv(noise)
    first = jnp.argmax(ok, 0)
    found = jnp.any(ok, 0)
    start = jnp.take_along_axis(noise, first.reshape((1, batch) + (1,) * (x.ndim - 1)), 0)[0]
    return start, found


def estimate_boundary_normal(
    many_adv: Callable, key, x_t, delta, count, chunk: int, clip_min, clip_max
):
    """Baseline-corrected Monte Carlo estimate of the boundary's normal at ``x_t``.

    Draws ``count`` unit-L2 probes ``u`` at radius ``delta``, evaluated in chunks
    of ``chunk`` (so memory stays that of one chunk), and averages
    ``(phi - mean(phi)) u`` with ``phi = +1`` for an adversarial probe, ``-1``
    otherwise (no correction when all agree).

    Args:
      many_adv: ``[S, B, ...] -> [S, B]``.
      key: the probes' key.
      x_t: ``[B, ...]`` points on the boundary.
      delta: ``[B]`` the probe radius.
      count: the number of probes (may be traced).
      chunk: probes per chunk (static).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``[B, ...]`` the unit-L2 estimate.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._hopskipjump import estimate_boundary_normal
      >>> many_adv = lambda v: v[..., 0] > 0.5  # the normal is the first axis
      >>> u = estimate_boundary_normal(many_adv, jax.random.key(0), jnp.full((1, 3), 0.5),
      ...                              jnp.array([0.01]), 64, 16, 0.0, 1.0)
      >>> bool(u[0, 0] > 0.9)
      True
    """
    batch = x_t.shape[0]
    wide = (chunk,) + (1,) * x_t.ndim

    def body(c, sums):
        phi_sum, weighted, probe_sum = sums
        probes = jax.vmap(l2.direction)(
            jax.random.normal(jax.random.fold_in(key, c), (chunk,) + x_t.shape)
        )
        valid = (c * chunk + jnp.arange(chunk)) < count
        signs = many_adv(jnp.clip(x_t + _broadcast_rows(delta, x_t) * probes, clip_min, clip_max))
        phi = jnp.where(valid[:, None], jnp.where(signs, 1.0, -1.0), 0.0)
        probes = jnp.where(valid.reshape(wide), probes, 0.0)
        return (
            phi_sum + jnp.sum(phi, 0),
            weighted + jnp.sum(phi.reshape(phi.shape + (1,) * (x_t.ndim - 1)) * probes, 0),
            probe_sum + jnp.sum(probes, 0),
        )

    zeros = (jnp.zeros(batch), jnp.zeros_like(x_t), jnp.zeros_like(x_t))
    chunks = (count + chunk - 1) // chunk
    phi_sum, weighted, probe_sum = jax.lax.fori_loop(0, chunks, body, zeros)
    mean = phi_sum / count
    # sum((phi - mean) u) = sum(phi u) - mean * sum(u); no correction when all agree.
    corrected = weighted - _broadcast_rows(jnp.where(jnp.abs(mean) == 1.0, 0.0, mean), x_t) * (
        probe_sum
    )
    return l2.direction(corrected / count)


def geometric_step(many_adv: Callable, x_t, direction, size, halvings: int, clip_min, clip_max):
    """The largest step of ``size, size / 2, ...`` along ``direction`` that stays adversarial.

    Tries ``halvings`` step lengths at once (one batched query each).

    Args:
      many_adv: ``[S, B, ...] -> [S, B]``.
      x_t: ``[B, ...]`` the current points.
      direction: ``[B, ...]`` the step direction (unit L2).
      size: ``[B]`` the first step length (L2).
      halvings: step sizes tried.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``(moved [B, ...], any_ok [B])``: the point of the first adversarial try, and
      whether there was one.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._hopskipjump import geometric_step
      >>> many_adv = lambda v: v[..., 0] > 0.5
      >>> moved, ok = geometric_step(many_adv, jnp.array([[0.6, 0.5]]), jnp.array([[-0.6, 0.8]]),
      ...                            jnp.array([0.5]), 4, 0.0, 1.0)
      >>> [round(v, 3) for v in moved[0].tolist()], ok.tolist()  # 0.5 and 0.25 fail, 0.125 fits
      ([0.525, 0.6], [True])
    """
    batch = x_t.shape[0]
    scales = 0.5 ** jnp.arange(halvings)
    tries = jnp.clip(
        x_t[None]
        + (scales[:, None] * size)[..., None, None, None].reshape(
            (halvings, batch) + (1,) * (x_t.ndim - 1)
        )
        * direction[None],
        clip_min,
        clip_max,
    )
    tries_ok = many_adv(tries)
    pick = jnp.argmax(tries_ok, 0)
    any_ok = jnp.any(tries_ok, 0)
    moved = jnp.take_along_axis(tries, pick.reshape((1, batch) + (1,) * (x_t.ndim - 1)), 0)[0]
    return moved, any_ok


def hopskipjump(
    eps=None,
    *,
    iterations: int = 40,
    grad_samples: int = 100,
    max_grad_samples: int = 10000,
    init_samples: int = 100,
    search_steps: int = 10,
    step_halvings: int = 10,
    gamma: float = 1.0,
    targeted: bool = False,
    return_queries: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds HopSkipJump, a decision-based L2 attack (only predicted labels are used).

    Chen, Jordan & Wainwright (2020), "HopSkipJumpAttack: A Query-Efficient
    Decision-Based Attack" (IEEE S&P 2020, arXiv:1904.02144).

    Starts from the first of ``init_samples`` uniform noise images that is
    adversarial, binary-searches to the boundary, then per iteration ``t``:
    estimates the boundary's normal from ``int(grad_samples * sqrt(t))`` random
    probes (at most ``max_grad_samples``) at radius ``sqrt(d) * theta * dist``
    (``theta = gamma / d^1.5``, baseline-corrected signs), steps ``dist /
    sqrt(t)`` along it (halving up to ``step_halvings`` times until adversarial),
    and binary-searches back to the boundary (``search_steps`` bisections). Each
    example keeps its smallest adversarial point. Defaults are the paper's: 40
    iterations, ``gamma = 1``, probes growing as ``100 sqrt(t)`` up to 10,000.
    The probes are evaluated in chunks of ``grad_samples`` inside a loop, so
    memory stays that of ``grad_samples`` probes.

    Args:
      eps: ``None`` for minimum norm; a budget projects the result into the L2 ball.
      iterations: boundary iterations.
      grad_samples: probes of the first gradient estimate (and per chunk).
      max_grad_samples: the most probes per estimate.
      init_samples: noise images tried for the start.
      search_steps: bisections per boundary search.
      step_halvings: step sizes tried per iteration.
      gamma: sets the probe radius ``theta = gamma / d^1.5``.
      targeted: ``y`` holds targets (the start is then searched among noise images
        classified as the target, which may fail).
      return_queries: also return the model queries per example ``[B]``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (or ``(x_adv, queries)``),
      ``x`` of any shape ``[B, ...]``; examples without an adversarial start are
      returned unchanged.

    Raises:
      ValueError: a bad budget, range or count (``grad_samples`` and
        ``max_grad_samples`` at least 2).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 1.0, -x.sum(-1) + 1.0], axis=-1)
      >>> x_adv = advjax.attacks.hopskipjump(iterations=3, grad_samples=8)(
      ...     logits_fn, jnp.full((1, 2), 0.9), jnp.array([0]), key=jax.random.key(0))
      >>> int(jnp.argmax(logits_fn(x_adv)))
      1
    """
    if eps is not None:
        check_epsilon(eps)
    iterations = check_positive_int(iterations, "iterations", minimum=0)
    grad_samples = check_positive_int(grad_samples, "grad_samples", minimum=2)
    max_grad_samples = check_positive_int(max_grad_samples, "max_grad_samples", minimum=2)
    counts = probe_counts(iterations, grad_samples, max_grad_samples)
    init_samples = check_positive_int(init_samples, "init_samples")
    search_steps = check_positive_int(search_steps, "search_steps")
    step_halvings = check_positive_int(step_halvings, "step_halvings")
    check_range(clip_min, clip_max)

    def attack(logits_fn, x, y, *, key):
        labels = as_labels(y)
        dims = math.prod(x.shape[1:])
        theta = gamma / (dims * math.sqrt(dims))

        def is_adv(candidate):
            pred = jnp.argmax(logits_fn(candidate), -1)
            return (pred == labels) if targeted else (pred != labels)

        def many_adv(candidates):  # [S, B, ...] -> [S, B]
            flat = candidates.reshape((-1,) + x.shape[1:])
            pred = jnp.argmax(logits_fn(flat), -1).reshape(candidates.shape[:2])
            return (pred == labels) if targeted else (pred != labels)

        def to_boundary(x_adv):
            return boundary_search(is_adv, x, x_adv, search_steps)

        init_key, loop_key = jax.random.split(key)
        start, found = initial_adversarial(many_adv, init_key, x, init_samples, clip_min, clip_max)
        clean_adv = is_adv(x)
        x_t = to_boundary(_select(found, start, x))
        x_t = _select(found & ~clean_adv, x_t, x)
        active = found & ~clean_adv
        loop_queries = sum(counts) + iterations * (step_halvings + search_steps)
        queries = 1 + init_samples + jnp.where(active, search_steps + loop_queries, 0)
        count_of = jnp.asarray(counts if counts else [0], jnp.int32)

        def body(t, x_t):
            k = jax.random.fold_in(loop_key, t)
            dist = l2.norm(x_t - x)
            delta = jnp.where(t == 0, 0.1 * (clip_max - clip_min), math.sqrt(dims) * theta * dist)
            grad = estimate_boundary_normal(
                many_adv, k, x_t, delta, count_of[t], grad_samples, clip_min, clip_max
            )
            size = dist / jnp.sqrt(t + 1.0)
            moved, any_ok = geometric_step(
                many_adv, x_t, grad, size, step_halvings, clip_min, clip_max
            )
            x_next = to_boundary(_select(any_ok, moved, x_t))
            better = active & is_adv(x_next) & (l2.norm(x_next - x) < dist)
            return _select(better, x_next, x_t)

        x_adv = jax.lax.fori_loop(0, iterations, body, x_t)
        x_adv = jax.lax.stop_gradient(within_budget(l2, x, x_adv, eps, clip_min, clip_max))
        return (x_adv, queries.astype(jnp.int32)) if return_queries else x_adv

    return guarded(
        attack,
        name="hopskipjump",
        eps=eps,
        norm="l2",
        clip_min=clip_min,
        clip_max=clip_max,
        tuple_output=return_queries,
    )
