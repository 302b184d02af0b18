"""The Square attack (Andriushchenko et al. 2020): score-based random search.

"Square Attack: a query-efficient black-box adversarial attack via random
search", arXiv:1912.00049. The per-norm parts (the start and the update of one
query) are module-level functions in the table ``SQUARE_SCHEMES``, keyed by the
threat model; the loop, its acceptance rule and the window sampling are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select, project_to_threat
from advjax.attacks._guard import guarded
from advjax.attacks._threat import ThreatModel, get_threat_model, l2, linf, per_norm
from advjax.losses import as_labels, ce, cw_margin


def square_schedule(iteration, total: int, p_init: float):
    """The paper's schedule of the square's share of pixels at ``iteration``.

    ``p_init`` halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and
    8000, rescaled from 10,000 iterations to ``total``.

    Args:
      iteration: the query index (may be traced).
      total: the query budget.
      p_init: the initial share.

    Returns:
      The share of pixels ``p`` (scalar).

    Example:
      >>> from advjax.attacks._square import square_schedule
      >>> [round(float(square_schedule(i, 1000, 0.8)), 4) for i in (0, 2, 6)]
      [0.8, 0.4, 0.2]
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


class SquareContext(NamedTuple):
    """What the per-norm start and update read: the inputs as ``[B, H, W, C]`` and the budget.

    Attributes:
      xi: ``[B, H, W, C]`` the clean inputs.
      eps: the budget (scalar).
      queries: the query budget (iterations), for :func:`square_schedule`.
      p_init: the initial share of pixels in a square.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.
      project: ``[B, H, W, C] -> [B, H, W, C]`` onto the ball ∩ box around ``xi``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._square import SquareContext
      >>> ctx = SquareContext(jnp.zeros((1, 3, 2, 1)), 0.1, 10, 0.8, 0.0, 1.0, lambda c: c)
      >>> ctx.rows.shape, ctx.cols.shape
      ((1, 3, 1, 1), (1, 1, 2, 1))
    """

    xi: jax.Array
    eps: jax.Array
    queries: int
    p_init: float
    clip_min: float
    clip_max: float
    project: Callable[[jax.Array], jax.Array]

    @property
    def rows(self) -> jax.Array:
        """``[1, H, 1, 1]`` row indices."""
        return jnp.arange(self.xi.shape[1])[None, :, None, None]

    @property
    def cols(self) -> jax.Array:
        """``[1, 1, W, 1]`` column indices."""
        return jnp.arange(self.xi.shape[2])[None, None, :, None]


class SquareState(NamedTuple):
    """The Square loop's carry.

    Attributes:
      i: the iteration (query) index.
      x_best: ``[B, H, W, C]`` the point of lowest loss so far.
      best_value: ``[B]`` its loss (margin; below 0 means broken).
      done: ``[B]`` broken examples, which stop querying.
      used: ``[B]`` int32 model queries spent.

    Example:
      >>> from advjax.attacks._square import SquareState
      >>> SquareState._fields
      ('i', 'x_best', 'best_value', 'done', 'used')
    """

    i: jax.Array
    x_best: jax.Array
    best_value: jax.Array
    done: jax.Array
    used: jax.Array


def square_side(iteration, total: int, p_init: float, height: int, width: int) -> jax.Array:
    """The side of the Linf square at ``iteration``: ``round(sqrt(p * H * W))`` in ``[1, min - 1]``.

    Args:
      iteration: the query index (may be traced).
      total: the query budget.
      p_init: the initial share of pixels.
      height: image height ``H``.
      width: image width ``W``.

    Returns:
      int32 scalar side in pixels.

    Example:
      >>> from advjax.attacks._square import square_side
      >>> int(square_side(0, 100, 0.8, 8, 8)), int(square_side(99, 100, 0.8, 8, 8))
      (7, 1)
    """
    p = square_schedule(iteration, total, p_init)
    side = jnp.clip(jnp.round(jnp.sqrt(p * height * width)), 1, max(min(height, width) - 1, 1))
    return side.astype(jnp.int32)


def sample_window(top_key, left_key, side, rows, cols, *, batch: int):
    """A randomly placed ``side x side`` window per example, always inside the image.

    The top-left corner is uniform over ``[0, H - side) x [0, W - side)`` (at
    least position 0), as in the authors' implementation (``random_int(0, h - s)``
    in ``square.py`` of fra31/auto-attack, and torchattacks): the last start row
    and column are never drawn, which keeps a window off the bottom and right
    edges. On MNIST that measured stronger than a start uniform over all
    ``H - side + 1`` positions (Square L2 at eps 2.0, 5,000 queries, PGD-AT model,
    500 test images, 3 seeds: 24.9% vs 26.4% robust accuracy; the reference 24.1%).

    Args:
      top_key: key of the windows' top edges.
      left_key: key of the windows' left edges.
      side: the window's side in pixels (int scalar, may be traced).
      rows: ``[1, H, 1, 1]`` row indices.
      cols: ``[1, 1, W, 1]`` column indices.
      batch: the number of windows ``B``.

    Returns:
      ``(r, c, inside)``: ``[B, H, 1, 1]`` and ``[B, 1, W, 1]`` coordinates relative
      to each window's top-left corner, and the ``[B, H, W, 1]`` mask of the window.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._square import sample_window
      >>> rows, cols = jnp.arange(6)[None, :, None, None], jnp.arange(5)[None, None, :, None]
      >>> keys = jax.random.split(jax.random.key(0), 2)
      >>> _, _, inside = sample_window(keys[0], keys[1], 3, rows, cols, batch=2)
      >>> inside.shape, inside.sum((1, 2, 3)).tolist()
      ((2, 6, 5, 1), [9, 9])
    """
    height, width = rows.shape[1], cols.shape[2]
    top = jax.random.randint(top_key, (batch, 1, 1, 1), 0, jnp.maximum(height - side, 1))
    left = jax.random.randint(left_key, (batch, 1, 1, 1), 0, jnp.maximum(width - side, 1))
    r, c = rows - top, cols - left
    return r, c, (r >= 0) & (r < side) & (c >= 0) & (c < side)


def _random_signs(key, shape):
    return jax.random.choice(key, jnp.array([-1.0, 1.0]), shape)


def linf_square_init(ctx: SquareContext, key) -> jax.Array:
    """The Linf start: vertical stripes of ``+-eps``, one sign per column and channel.

    Args:
      ctx: the inputs and budget.
      key: the stripes' key.

    Returns:
      ``[B, H, W, C]`` the start, projected onto the ball ∩ box.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._core import project_to_threat
      >>> from advjax.attacks._square import SquareContext, linf_square_init
      >>> xi = jnp.full((1, 2, 3, 1), 0.5)
      >>> project = lambda c: project_to_threat(linf, xi, c, 0.1, 0.0, 1.0)
      >>> x0 = linf_square_init(SquareContext(xi, 0.1, 10, 0.8, 0.0, 1.0, project),
      ...                       jax.random.key(0))
      >>> bool(jnp.all(x0[:, 0] == x0[:, 1])), bool(jnp.allclose(jnp.abs(x0 - 0.5), 0.1))
      (True, True)
    """
    batch, _, width, channels = ctx.xi.shape
    stripes = _random_signs(key, (batch, 1, width, channels))
    return ctx.project(ctx.xi + ctx.eps * stripes)


def linf_square_update(ctx: SquareContext, step_key, i, x_best) -> jax.Array:
    """One Linf query: re-draw one random square window with a ``+-eps`` value per channel.

    Args:
      ctx: the inputs and budget.
      step_key: this query's key.
      i: the query index (sets the window's side, :func:`square_side`).
      x_best: ``[B, H, W, C]`` the current point.

    Returns:
      ``[B, H, W, C]`` the candidate, projected onto the ball ∩ box.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import linf
      >>> from advjax.attacks._core import project_to_threat
      >>> from advjax.attacks._square import SquareContext, linf_square_update
      >>> xi = jnp.full((1, 4, 4, 1), 0.5)
      >>> project = lambda c: project_to_threat(linf, xi, c, 0.1, 0.0, 1.0)
      >>> ctx = SquareContext(xi, 0.1, 100, 0.3, 0.0, 1.0, project)
      >>> out = linf_square_update(ctx, jax.random.key(0), 0, xi)
      >>> int((out != xi).sum())  # one 2 x 2 window changed
      4
    """
    xi = ctx.xi
    batch, height, width, channels = xi.shape
    pos_key, sign_key = jax.random.split(step_key)
    side = square_side(i, ctx.queries, ctx.p_init, height, width)
    _, _, window = sample_window(
        pos_key, jax.random.fold_in(pos_key, 1), side, ctx.rows, ctx.cols, batch=batch
    )
    signs = _random_signs(sign_key, (batch, 1, 1, channels))
    delta = jnp.where(window, ctx.eps * signs, x_best - xi)
    return ctx.project(xi + delta)


def _on_sphere(ctx: SquareContext, delta):
    """``x + eps * delta / ||delta||_2``, clipped to the range."""
    norm = jnp.sqrt(jnp.sum(delta**2, axis=(1, 2, 3), keepdims=True))
    return jnp.clip(ctx.xi + ctx.eps * delta / jnp.maximum(norm, 1e-12), ctx.clip_min, ctx.clip_max)


def l2_square_init(ctx: SquareContext, key) -> jax.Array:
    """The L2 start: a grid of ``H // 5`` pseudo-Gaussian tiles of random signs, norm ``eps``.

    Args:
      ctx: the inputs and budget.
      key: the tiles' key.

    Returns:
      ``[B, H, W, C]`` the start, projected onto the ball ∩ box.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import l2
      >>> from advjax.attacks._core import project_to_threat
      >>> from advjax.attacks._square import SquareContext, l2_square_init
      >>> xi = jnp.full((1, 5, 5, 1), 0.5)
      >>> project = lambda c: project_to_threat(l2, xi, c, 0.3, 0.0, 1.0)
      >>> x0 = l2_square_init(SquareContext(xi, 0.3, 10, 0.8, 0.0, 1.0, project),
      ...                     jax.random.key(0))
      >>> round(float(l2.norm(x0 - xi)[0]), 4)
      0.3
    """
    xi = ctx.xi
    batch, height, width, channels = xi.shape
    rows, cols = ctx.rows, ctx.cols
    largest = min(height, width)
    sums = _inverse_square_sums(largest)
    tile = max(largest // 5, 1)
    tiles_r, tiles_c = height // tile, width // tile
    offset_r, offset_c = (height - tiles_r * tile) // 2, (width - tiles_c * tile) // 2
    r, c = rows - offset_r, cols - offset_c
    inside = (r >= 0) & (r < tiles_r * tile) & (c >= 0) & (c < tiles_c * tile)
    tile_r = jnp.clip(r // tile, 0, tiles_r - 1)[..., 0]
    tile_c = jnp.clip(c // tile, 0, tiles_c - 1)[..., 0]
    flip_key, sign_key = jax.random.split(key)
    flips = jax.random.bernoulli(flip_key, 0.5, (batch, tiles_r, tiles_c))
    tile_signs = _random_signs(sign_key, (batch, tiles_r, tiles_c, channels))
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
    return ctx.project(_on_sphere(ctx, delta))


def l2_square_side(iteration, total: int, p_init: float, height: int, width: int) -> jax.Array:
    """The side of the L2 windows: ``round(sqrt(p * H * W))``, odd, at least 3, at most ``min``.

    Args:
      iteration: the query index (may be traced).
      total: the query budget.
      p_init: the initial share of pixels.
      height: image height ``H``.
      width: image width ``W``.

    Returns:
      int32 scalar side in pixels.

    Example:
      >>> from advjax.attacks._square import l2_square_side
      >>> int(l2_square_side(0, 100, 0.8, 8, 8)), int(l2_square_side(99, 100, 0.8, 8, 8))
      (7, 3)
    """
    p = square_schedule(iteration, total, p_init)
    side = jnp.maximum(jnp.round(jnp.sqrt(p * height * width)), 3).astype(jnp.int32)
    return jnp.minimum(side + (side % 2 == 0), min(height, width))


def l2_square_update(ctx: SquareContext, step_key, i, x_best) -> jax.Array:
    """One L2 query (the paper's update), on the sphere of radius ``eps``.

    Picks two random windows of odd side ``>= 3``, moves the mass of the second
    into the first (the second is zeroed), adds to the first a pseudo-Gaussian
    pattern with a random sign per channel, gives it the budget left outside
    plus that of both windows, and rescales the perturbation to norm ``eps``.

    Args:
      ctx: the inputs and budget.
      step_key: this query's key.
      i: the query index (sets the windows' side, :func:`l2_square_side`).
      x_best: ``[B, H, W, C]`` the current point.

    Returns:
      ``[B, H, W, C]`` the candidate, projected onto the ball ∩ box.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import l2
      >>> from advjax.attacks._core import project_to_threat
      >>> from advjax.attacks._square import SquareContext, l2_square_init, l2_square_update
      >>> xi = jnp.full((1, 6, 6, 1), 0.5)
      >>> project = lambda c: project_to_threat(l2, xi, c, 0.5, 0.0, 1.0)
      >>> ctx = SquareContext(xi, 0.5, 100, 0.3, 0.0, 1.0, project)
      >>> out = l2_square_update(ctx, jax.random.key(1), 0, l2_square_init(ctx, jax.random.key(0)))
      >>> round(float(l2.norm(out - xi)[0]), 4)
      0.5
    """
    xi = ctx.xi
    batch, height, width, channels = xi.shape
    rows, cols = ctx.rows, ctx.cols
    largest = min(height, width)
    sums = _inverse_square_sums(largest)
    delta = x_best - xi
    side = l2_square_side(i, ctx.queries, ctx.p_init, height, width)
    keys = jax.random.split(step_key, 6)
    r, c, first = sample_window(keys[0], keys[1], side, rows, cols, batch=batch)
    _, _, second = sample_window(keys[2], keys[3], side, rows, cols, batch=batch)
    flip = jax.random.bernoulli(keys[4], 0.5, (batch, 1, 1, 1))
    signs = _random_signs(keys[5], (batch, 1, 1, channels))
    pattern = _unit_meta_pattern(jnp.where(flip, c, r), jnp.where(flip, r, c), side, largest, sums)

    def norm(v, axes=(1, 2, 3)):
        return jnp.sqrt(jnp.sum(v**2, axis=axes, keepdims=True))

    old = jnp.where(first, delta, 0.0)
    new = jnp.where(first, pattern * signs, 0.0) + old / (norm(old, (1, 2)) + 1e-12)
    budget = jnp.maximum(ctx.eps**2 - norm(delta) ** 2, 0.0) / channels
    budget = budget + norm(jnp.where(first | second, delta, 0.0)) ** 2
    new = new / (norm(new, (1, 2)) + 1e-12) * jnp.sqrt(budget)
    delta = jnp.where(first, new, jnp.where(second, 0.0, delta))
    return ctx.project(_on_sphere(ctx, delta))


class SquareScheme(NamedTuple):
    """A norm's Square start ``init(ctx, key)`` and query ``update(ctx, key, i, x_best)``.

    Example:
      >>> from advjax.attacks import l2
      >>> from advjax.attacks._square import SQUARE_SCHEMES
      >>> SQUARE_SCHEMES[l2].update.__name__
      'l2_square_update'
    """

    init: Callable
    update: Callable


#: Square's per-norm schemes, keyed by threat model (see :func:`~advjax.attacks._threat.per_norm`).
SQUARE_SCHEMES: dict[ThreatModel, SquareScheme] = {
    linf: SquareScheme(linf_square_init, linf_square_update),
    l2: SquareScheme(l2_square_init, l2_square_update),
}


def square_objective(logits, labels, *, targeted: bool, loss: str):
    """Square's loss (lower is better for the attacker) and per-example success.

    Untargeted: the margin ``z_y - max_{k != y} z_k`` (or ``-CE``); targeted: the
    CE towards the target (or the negated margin). Success: margin ``<= 0``.

    Args:
      logits: ``[B, K]``.
      labels: ``[B]`` int labels (targets when ``targeted``).
      targeted: whether ``labels`` are targets.
      loss: ``"margin"`` or ``"ce"``.

    Returns:
      ``(value [B], success [B])``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._square import square_objective
      >>> value, success = square_objective(jnp.array([[2.0, 0.5], [0.0, 1.0]]),
      ...                                   jnp.array([0, 0]), targeted=False, loss="margin")
      >>> value.tolist(), success.tolist()
      ([1.5, -1.0], [False, True])
    """
    margin = -cw_margin(logits, labels)  # > 0 while the true class wins
    if targeted:
        margin = -margin
        value = ce(logits, labels) if loss == "ce" else margin
    else:
        value = margin if loss == "margin" else -ce(logits, labels)
    return value, margin <= 0


def square_accept(state: SquareState, candidate, value, success) -> SquareState:
    """Keeps ``candidate`` where it lowers the loss of a still-active example.

    Examples already done neither move nor spend a query; an accepted
    successful candidate marks its example done.

    Args:
      state: the carry.
      candidate: ``[B, H, W, C]`` the queried points.
      value: ``[B]`` their loss.
      success: ``[B]`` whether they are adversarial.

    Returns:
      The next carry (``i + 1``).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._square import SquareState, square_accept
      >>> state = SquareState(jnp.asarray(0), jnp.zeros((3, 1, 1, 1)), jnp.array([1.0, 1.0, 1.0]),
      ...                     jnp.array([False, False, True]), jnp.array([2, 2, 1]))
      >>> new = square_accept(state, jnp.ones((3, 1, 1, 1)), jnp.array([0.5, 2.0, -1.0]),
      ...                     jnp.array([False, False, True]))
      >>> new.x_best.ravel().tolist(), new.done.tolist(), new.used.tolist()
      ([1.0, 0.0, 0.0], [False, False, True], [3, 3, 1])
    """
    active = ~state.done
    accept = active & (value < state.best_value)
    return SquareState(
        i=state.i + 1,
        x_best=_select(accept, candidate, state.x_best),
        best_value=jnp.where(accept, value, state.best_value),
        done=state.done | (accept & success),
        used=state.used + active.astype(jnp.int32),
    )


def square(
    eps,
    *,
    norm: str | ThreatModel = "linf",
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
    search" (ECCV 2020, arXiv:1912.00049). Score-based: it only reads logits,
    never gradients. Linf: starts from vertical stripes of ``+-eps`` and each
    query re-draws one random square window (side ``sqrt(p * H * W)``, ``p``
    halving on the paper's schedule) with one ``+-eps`` value per channel,
    keeping it if the margin loss drops. L2, as in the paper: starts from a grid
    of ``H // 5``-sized pseudo-Gaussian tiles of random signs scaled to norm
    ``eps``; each query is :func:`l2_square_update`. The loop is a
    ``lax.while_loop`` that stops once every example is broken; broken examples
    stop querying. Inputs ``[B, D]`` are treated as ``D x 1`` images.

    Defaults: 5,000 queries and ``p_init = 0.8`` (AutoAttack's Linf setting), the
    margin loss (cross-entropy for targeted runs, as in the paper).

    Args:
      eps: the perturbation budget, in the norm of ``norm``.
      norm: ``"linf"``, ``"l2"`` or one of those threat models (the ones in
        ``SQUARE_SCHEMES``).
      queries: the query budget per example (iterations).
      p_init: the initial share of pixels in the square.
      targeted: ``y`` holds targets.
      loss: ``"margin"`` or ``"ce"``.
      return_queries: also return the model queries spent per example ``[B]``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (or ``(x_adv, queries)``), with
      ``x`` of shape ``[B, H, W, C]``, ``[B, H, W]`` or ``[B, D]``.

    Raises:
      ValueError: a threat model with no Square scheme, ``p_init`` outside
        ``(0, 1]``, an unknown loss, or a bad budget, range or query count.

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
    scheme, settings = _checked_settings(
        eps, norm, queries, p_init, targeted, loss, clip_min, clip_max
    )
    threat = settings.threat

    def attack(logits_fn, x, y, *, key):
        x_adv, used = _search(logits_fn, x, y, key, scheme, settings)
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


class _SearchSettings(NamedTuple):
    threat: ThreatModel
    eps: float
    queries: int
    p_init: float
    targeted: bool
    loss: str
    clip_min: float
    clip_max: float


def _checked_settings(eps, norm, queries, p_init, targeted, loss, clip_min, clip_max):
    """The builders' argument checks; ``(scheme, settings)``."""
    check_epsilon(eps)
    queries = check_positive_int(queries, "queries")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    scheme = per_norm(SQUARE_SCHEMES, threat, "square")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}.")
    if loss not in ("margin", "ce"):
        raise ValueError(f"unknown loss {loss!r}; choose 'margin' or 'ce'.")
    return scheme, _SearchSettings(threat, eps, queries, p_init, targeted, loss, clip_min, clip_max)


def _search(logits_fn, x, y, key, scheme: SquareScheme, settings: _SearchSettings, start=None):
    """Square's random search: ``(x_best, queries used)``, from ``start`` where given.

    ``start``: optional ``(points [B, ...], use [B] bool)``; an example with
    ``use`` set starts from its point (projected onto the ball ∩ box) instead of
    the scheme's own start. Without ``start`` the draws are those of
    :func:`square`.
    """
    shape = x.shape
    xi = _as_nhwc(x)
    labels = as_labels(y)
    eps, queries = settings.eps, settings.queries

    def evaluate(candidate):
        logits = logits_fn(candidate.reshape(shape))
        return square_objective(logits, labels, targeted=settings.targeted, loss=settings.loss)

    def project(candidate):
        flat = project_to_threat(
            settings.threat, x, candidate.reshape(shape), eps, settings.clip_min, settings.clip_max
        )
        return flat.reshape(xi.shape)

    ctx = SquareContext(
        xi, eps, queries, settings.p_init, settings.clip_min, settings.clip_max, project
    )
    init_key, loop_key = jax.random.split(key)
    x0 = scheme.init(ctx, init_key)
    if start is not None:
        points, use = start
        x0 = _select(use, project(points.reshape(xi.shape).astype(xi.dtype)), x0)
    value0, done0 = evaluate(x0)
    clean_value, clean_done = evaluate(xi)
    x0 = _select(clean_done, xi, x0)
    value0 = jnp.where(clean_done, clean_value, value0)
    done0 = clean_done | done0

    def cond(state: SquareState):
        return (state.i < queries) & ~jnp.all(state.done)

    def body(state: SquareState):
        step_key = jax.random.fold_in(loop_key, state.i)
        candidate = scheme.update(ctx, step_key, state.i, state.x_best)
        value, success = evaluate(candidate)
        return square_accept(state, candidate, value, success)

    used0 = jnp.where(clean_done, 1, 2).astype(jnp.int32)
    state = SquareState(jnp.asarray(0), x0, value0, done0, used0)
    state = jax.lax.while_loop(cond, body, state)
    return jax.lax.stop_gradient(state.x_best.reshape(shape)), state.used


def square_from(
    eps,
    *,
    norm: str | ThreatModel = "linf",
    queries: int = 5000,
    p_init: float = 0.8,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Callable:
    """Untargeted Square (margin loss) that may start from given points instead of its own start.

    A white-box attack's closest point to the boundary is a far better start
    for Square's random search than its stripes: on the MNIST models of
    ``docs/attacks.md`` Square from APGD's closest point broke about twice as
    many of the points nearest the boundary as Square from its own start (on
    FGSM-RS), but not always the same ones (on PGD-AT it never broke two points
    every own-start run broke). Used by
    :func:`advjax.evaluation.fast_autoattack`; the same loop, schedule and
    acceptance rule as :func:`square` (Andriushchenko et al. 2020,
    arXiv:1912.00049), and its very draws where no start is used.

    Args:
      eps: the budget, in the norm of ``norm``.
      norm: ``"linf"`` or ``"l2"`` (or those threat models).
      queries: the query budget per example.
      p_init: the initial share of pixels in the square.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, start, use, *, key) -> x_adv`` with every
      attack's validation layer (:func:`~advjax.attacks._guard.guarded`): ``x``
      ``[B, ...]`` inputs in the range, ``y`` ``[B]`` labels (or probability
      rows), ``start`` ``[B, ...]`` start points (projected onto the ball ∩ box;
      an example whose start is not finite uses Square's own start), ``use``
      ``[B]`` bool (``False``: Square's own start). ``x_adv`` is in the ball and
      the box, in ``x``'s dtype. :func:`~advjax.attacks.per_example_keys` gives
      it one key per example.

    Raises:
      ValueError, InvalidInputError: when built: a threat model with no Square
        scheme, or a bad budget, range, query count or ``p_init``; when run:
        ``start`` not of ``x``'s shape, ``use`` not a ``[B]`` bool array, or the
        input checks of every attack (shapes, labels, range, NaNs), eagerly
        and under ``jax.jit``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import square_from
      >>> w = jnp.array([[1.0, -1.0], [1.0, -1.0]])
      >>> logits_fn = lambda x: x @ w + jnp.array([0.0, 1.0])  # class 1 wins below 0.25
      >>> x = jnp.array([[0.5, 0.5]])
      >>> run = square_from(0.3, queries=10)
      >>> near = jnp.array([[0.2, 0.2]])  # the start: on the boundary's near side
      >>> out = run(logits_fn, x, jnp.array([0]), near, jnp.array([True]), key=jax.random.key(0))
      >>> bool(jnp.argmax(logits_fn(out), -1)[0] == 1), bool(jnp.abs(out - x).max() <= 0.3 + 1e-6)
      (True, True)
    """
    scheme, settings = _checked_settings(
        eps, norm, queries, p_init, False, "margin", clip_min, clip_max
    )

    def run(logits_fn, x, y, start, use, *, key):
        use = use & jnp.all(jnp.isfinite(start.reshape(start.shape[0], -1)), -1)
        start = jnp.where(jnp.isfinite(start), start, x)
        return _search(logits_fn, x, y, key, scheme, settings, (start, use))[0]

    def check_starts(x, start, use):
        if start.shape != x.shape:
            raise ValueError(f"start must have x's shape {x.shape}, got {start.shape}.")
        if use.shape != x.shape[:1] or use.dtype != jnp.bool_:
            raise ValueError(
                f"use must be a bool array of shape {x.shape[:1]} (one flag per example), "
                f"got {use.dtype} {use.shape}."
            )

    return guarded(
        run,
        name="square_from",
        eps=eps,
        norm=settings.threat,
        clip_min=clip_min,
        clip_max=clip_max,
        check_extras=check_starts,
    )
