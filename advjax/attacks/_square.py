"""The Square attack (Andriushchenko et al. 2020): score-based random search."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select, project_to_threat
from advjax.attacks._guard import guarded
from advjax.attacks._threat import get_threat_model
from advjax.losses import as_labels, ce, cw_margin


def square_schedule(iteration, total: int, p_init: float):
    """The paper's schedule of the square's share of pixels at ``iteration``.

    ``p_init`` halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
    8000, rescaled from 10,000 iterations to ``total``.
    """
    scaled = (iteration * 10000) // max(total, 1)
    bounds = jnp.asarray([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    halvings = jnp.sum(scaled > bounds)
    return p_init / (2.0**halvings)


def _inverse_square_sums(size: int) -> jax.Array:
    """``H[n] = sum_{j=1}^{n} 1 / j^2`` for ``n = 0 .. size + 1``."""
    return jnp.concatenate(
        [jnp.zeros(1), jnp.cumsum(1.0 / jnp.arange(1, size + 2, dtype=jnp.float32) ** 2)]
    )


def _meta_pattern(r, c, side, sums):
    """The paper's pseudo-Gaussian ``side x side`` pattern at local coordinates ``(r, c)``.

    The top ``side // 2`` rows hold a bump of concentric rectangles, each ring
    ``k`` adding ``1 / (k + 1)^2``; the bottom rows the same bump negated
    (Andriushchenko et al. 2020, the L2 update). Returns the unnormalised value
    and whether ``(r, c)`` is in the top half.
    """
    half = side // 2
    top = r < half
    rows = jnp.where(top, half, side - half)
    local_r = jnp.where(top, r, r - half)
    ring = jnp.maximum(jnp.abs(local_r - rows // 2), jnp.abs(c - half))
    rings = half + 1
    value = sums[rings] - sums[jnp.clip(ring, 0, rings)]
    return jnp.where(top, value, -value), top


def _unit_meta_pattern(r, c, side, largest: int, sums):
    """:func:`_meta_pattern` with each half of unit L2 norm and the whole of unit norm."""
    grid = jnp.arange(largest)
    grid_r, grid_c = grid[:, None], grid[None, :]
    inside = (grid_r < side) & (grid_c < side)
    values, top = _meta_pattern(grid_r, grid_c, side, sums)
    norm_top = jnp.sqrt(jnp.sum(jnp.where(inside & top, values**2, 0.0)))
    norm_bottom = jnp.sqrt(jnp.sum(jnp.where(inside & ~top, values**2, 0.0)))
    halves = (norm_top > 0).astype(jnp.float32) + (norm_bottom > 0).astype(jnp.float32)
    value, is_top = _meta_pattern(r, c, side, sums)
    norm = jnp.where(is_top, norm_top, norm_bottom)
    return value / jnp.maximum(norm, 1e-12) / jnp.sqrt(jnp.maximum(halves, 1.0))


def _as_nhwc(x):
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 2:
        return x[:, :, None, None]
    raise ValueError(
        f"square expects images [B, H, W(, C)] or vectors [B, D], got shape {x.shape}."
    )


def square(
    eps,
    *,
    norm: str = "linf",
    queries: int = 5000,
    p_init: float = 0.8,
    targeted: bool = False,
    loss: str = "margin",
    return_queries: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the Square attack (Andriushchenko, Croce, Flammarion & Hein 2020).

    "Square Attack: a query-efficient black-box adversarial attack via random
    search". Score-based: it only reads logits, never gradients. Linf: starts
    from vertical stripes of ``+-eps`` and each query re-draws one random
    square window (side ``sqrt(p * H * W)``, ``p`` halving on the paper's
    schedule) with one ``+-eps`` value per channel, keeping it if the margin
    loss drops. L2, as in the paper: starts from a grid of ``H // 5``-sized
    pseudo-Gaussian tiles of random signs scaled to norm ``eps``; each query
    picks two random windows of odd side ``>= 3``, moves the mass of the second
    into the first (the second is zeroed), adds to the first a pseudo-Gaussian
    pattern (two bumps of opposite sign) with random sign per channel, gives it
    the budget left outside plus that of both windows, and rescales the whole
    perturbation to norm ``eps``. The loop is a ``lax.while_loop`` that stops
    once every example is broken; broken examples stop querying.

    Defaults: 5,000 queries and ``p_init = 0.8`` (AutoAttack's Linf setting), the
    margin loss (cross-entropy for targeted runs, as in the paper).

    Args:
      eps: the perturbation budget.
      norm: ``"linf"`` or ``"l2"``.
      queries: the query budget per example (iterations).
      p_init: the initial share of pixels in the square.
      targeted: ``y`` holds targets.
      loss: ``"margin"`` or ``"ce"``.
      return_queries: also return the model queries spent per example ``[B]``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (or ``(x_adv, queries)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (16, 3))
      >>> logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x = jnp.full((2, 4, 4, 1), 0.5)
      >>> x_adv, q = advjax.attacks.square(0.1, queries=20, return_queries=True)(
      ...     logits_fn, x, jnp.array([0, 1]), key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - x).max() <= 0.1 + 1e-6), q.shape
      (True, (2,))
    """
    check_epsilon(eps)
    queries = check_positive_int(queries, "queries")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    if threat.name not in ("linf", "l2"):
        raise ValueError(f"square supports norm 'linf' or 'l2', got {norm!r}.")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}.")
    if loss not in ("margin", "ce"):
        raise ValueError(f"unknown loss {loss!r}; choose 'margin' or 'ce'.")

    def attack(logits_fn, x, y, *, key):
        shape = x.shape
        xi = _as_nhwc(x)
        batch, height, width, channels = xi.shape
        labels = as_labels(y)

        def evaluate(candidate):
            logits = logits_fn(candidate.reshape(shape))
            margin = -cw_margin(logits, labels)  # > 0 while the true class wins
            if targeted:
                margin = -margin
                value = ce(logits, labels) if loss == "ce" else margin
            else:
                value = margin if loss == "margin" else -ce(logits, labels)
            return value, margin <= 0

        def project(candidate):
            flat = project_to_threat(threat, x, candidate.reshape(shape), eps, clip_min, clip_max)
            return flat.reshape(xi.shape)

        rows = jnp.arange(height)[None, :, None, None]
        cols = jnp.arange(width)[None, None, :, None]
        largest = min(height, width)
        sums = _inverse_square_sums(largest)

        def sphere(delta):  # x + eps * delta / ||delta||, in the range
            norm = jnp.sqrt(jnp.sum(delta**2, axis=(1, 2, 3), keepdims=True))
            return jnp.clip(xi + eps * delta / jnp.maximum(norm, 1e-12), clip_min, clip_max)

        def l2_start(start_key):
            tile = max(largest // 5, 1)
            tiles_r, tiles_c = height // tile, width // tile
            offset_r, offset_c = (height - tiles_r * tile) // 2, (width - tiles_c * tile) // 2
            r, c = rows - offset_r, cols - offset_c
            inside = (r >= 0) & (r < tiles_r * tile) & (c >= 0) & (c < tiles_c * tile)
            tile_r = jnp.clip(r // tile, 0, tiles_r - 1)[..., 0]
            tile_c = jnp.clip(c // tile, 0, tiles_c - 1)[..., 0]
            flip_key, sign_key = jax.random.split(start_key)
            flips = jax.random.bernoulli(flip_key, 0.5, (batch, tiles_r, tiles_c))
            tile_signs = jax.random.choice(
                sign_key, jnp.array([-1.0, 1.0]), (batch, tiles_r, tiles_c, channels)
            )
            b = jnp.arange(batch)[:, None, None]
            flip = flips[b, tile_r, tile_c][..., None]  # [B, H, W, 1]
            local_r, local_c = r % tile, c % tile
            pattern = _unit_meta_pattern(
                jnp.where(flip, local_c, local_r),
                jnp.where(flip, local_r, local_c),
                tile,
                tile,
                sums,
            )
            delta = jnp.where(inside, pattern, 0.0) * tile_signs[b, tile_r, tile_c]
            return sphere(delta)

        def l2_update(step_key, i, delta):
            p = square_schedule(i, queries, p_init)
            side = jnp.maximum(jnp.round(jnp.sqrt(p * height * width)), 3).astype(jnp.int32)
            side = jnp.minimum(side + (side % 2 == 0), largest)
            keys = jax.random.split(step_key, 6)

            def window_at(k_r, k_c):
                top = jax.random.randint(k_r, (batch, 1, 1, 1), 0, height - side + 1)
                left = jax.random.randint(k_c, (batch, 1, 1, 1), 0, width - side + 1)
                r, c = rows - top, cols - left
                return r, c, (r >= 0) & (r < side) & (c >= 0) & (c < side)

            r, c, first = window_at(keys[0], keys[1])
            _, _, second = window_at(keys[2], keys[3])
            flip = jax.random.bernoulli(keys[4], 0.5, (batch, 1, 1, 1))
            signs = jax.random.choice(keys[5], jnp.array([-1.0, 1.0]), (batch, 1, 1, channels))
            pattern = _unit_meta_pattern(
                jnp.where(flip, c, r), jnp.where(flip, r, c), side, largest, sums
            )

            def norm(v, axes=(1, 2, 3)):
                return jnp.sqrt(jnp.sum(v**2, axis=axes, keepdims=True))

            old = jnp.where(first, delta, 0.0)
            new = jnp.where(first, pattern * signs, 0.0) + old / (norm(old, (1, 2)) + 1e-12)
            budget = jnp.maximum(eps**2 - norm(delta) ** 2, 0.0) / channels
            budget = budget + norm(jnp.where(first | second, delta, 0.0)) ** 2
            new = new / (norm(new, (1, 2)) + 1e-12) * jnp.sqrt(budget)
            delta = jnp.where(first, new, jnp.where(second, 0.0, delta))
            return sphere(delta)

        init_key, loop_key = jax.random.split(key)
        if threat.name == "linf":
            stripes = jax.random.choice(
                init_key, jnp.array([-1.0, 1.0]), (batch, 1, width, channels)
            )
            x0 = project(xi + eps * stripes)
        else:
            x0 = project(l2_start(init_key))
        value0, done0 = evaluate(x0)
        clean_value, clean_done = evaluate(xi)
        x0 = _select(clean_done, xi, x0)
        value0 = jnp.where(clean_done, clean_value, value0)
        done0 = clean_done | done0

        def cond(state):
            i, _, _, done, _ = state
            return (i < queries) & ~jnp.all(done)

        def body(state):
            i, x_best, best_value, done, used = state
            step_key = jax.random.fold_in(loop_key, i)
            pos_key, sign_key = jax.random.split(step_key)
            p = square_schedule(i, queries, p_init)
            side = jnp.clip(
                jnp.round(jnp.sqrt(p * height * width)), 1, max(min(height, width) - 1, 1)
            )
            side = side.astype(jnp.int32)
            top = jax.random.randint(pos_key, (batch, 1, 1, 1), 0, height - side + 1)
            left = jax.random.randint(
                jax.random.fold_in(pos_key, 1), (batch, 1, 1, 1), 0, width - side + 1
            )
            window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            signs = jax.random.choice(sign_key, jnp.array([-1.0, 1.0]), (batch, 1, 1, channels))
            delta = x_best - xi
            if threat.name == "linf":
                delta = jnp.where(window, eps * signs, delta)
                candidate = project(xi + delta)
            else:
                candidate = project(l2_update(step_key, i, delta))
            value, success = evaluate(candidate)
            active = ~done
            accept = active & (value < best_value)
            x_best = _select(accept, candidate, x_best)
            best_value = jnp.where(accept, value, best_value)
            done = done | (accept & success)
            return i + 1, x_best, best_value, done, used + active.astype(jnp.int32)

        used0 = jnp.where(clean_done, 1, 2).astype(jnp.int32)
        state = (jnp.asarray(0), x0, value0, done0, used0)
        _, x_best, _, _, used = jax.lax.while_loop(cond, body, state)
        x_adv = jax.lax.stop_gradient(x_best.reshape(shape))
        return (x_adv, used) if return_queries else x_adv

    return guarded(
        attack,
        name="square",
        eps=eps,
        norm=threat,
        clip_min=clip_min,
        clip_max=clip_max,
        tuple_output=return_queries,
    )
