"""The one-pixel attack (Su, Vargas & Sakurai 2019): differential evolution on few pixels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import guarded
from advjax.attacks._square import _as_nhwc
from advjax.losses import as_labels

DE_STRATEGIES = ("rand1", "best1")
OUT_OF_BOUNDS = ("clip", "resample")


def distinct_partners(key, batch: int, population: int):
    """Per parent ``i``, three indices ``r1, r2, r3`` distinct from each other and from ``i``.

    Each is uniform over the allowed indices: a draw from the ``P - m`` indices
    left is mapped past the ``m`` excluded ones in ascending order.

    Args:
      key: the draw's key.
      batch: examples ``B``.
      population: candidates ``P >= 4``.

    Returns:
      Three ``[B, P]`` int32 arrays.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._onepixel import distinct_partners
      >>> r1, r2, r3 = distinct_partners(jax.random.key(0), 2, 5)
      >>> i = jnp.arange(5)
      >>> bool(jnp.all((r1 != i) & (r2 != i) & (r3 != i) & (r1 != r2) & (r1 != r3) & (r2 != r3)))
      True
    """
    keys = jax.random.split(key, 3)
    excluded = jnp.broadcast_to(jnp.arange(population), (batch, population))[..., None]
    chosen = []
    for m, k in enumerate(keys):
        u = jax.random.randint(k, (batch, population), 0, population - 1 - m)
        for e in jnp.moveaxis(jnp.sort(excluded, -1), -1, 0):
            u = u + (u >= e)
        chosen.append(u)
        excluded = jnp.concatenate([excluded, u[..., None]], -1)
    return tuple(chosen)


def binomial_crossover(key, parents, mutants, rate: float):
    """DE's binomial crossover: each gene from the mutant with probability ``rate``, one always.

    Args:
      key: the draw's key.
      parents: ``[B, P, pixels, genes]``.
      mutants: same shape.
      rate: ``CR`` in ``[0, 1]`` (``1`` returns the mutants).

    Returns:
      The trials, same shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._onepixel import binomial_crossover
      >>> parents, mutants = jnp.zeros((1, 3, 1, 4)), jnp.ones((1, 3, 1, 4))
      >>> t = binomial_crossover(jax.random.key(0), parents, mutants, 0.0)
      >>> t.sum(axis=(2, 3)).tolist()  # exactly one gene from each mutant
      [[1.0, 1.0, 1.0]]
    """
    if rate >= 1.0:
        return mutants
    batch, population = parents.shape[:2]
    genes = parents[0, 0].size
    take_key, forced_key = jax.random.split(key)
    take = jax.random.uniform(take_key, (batch, population, genes)) < rate
    forced = jax.random.randint(forced_key, (batch, population, 1), 0, genes)
    take = take | (jnp.arange(genes) == forced)
    return jnp.where(take.reshape(parents.shape), mutants, parents)


def de_scale(key, mutation):
    """DE's scale ``F`` for one generation: ``mutation`` itself, or uniform in ``[low, high)``.

    A ``(low, high)`` pair is SciPy's dithering (``differential_evolution``'s default
    ``mutation=(0.5, 1)``): one draw per generation, shared by every mutant.

    Args:
      key: the draw's key (unused for a fixed scale).
      mutation: ``F`` in ``(0, 2]``, or a ``(low, high)`` pair inside it.

    Returns:
      A scalar.

    Example:
      >>> import jax
      >>> from advjax.attacks._onepixel import de_scale
      >>> de_scale(jax.random.key(0), 0.5)
      0.5
      >>> 0.5 <= float(de_scale(jax.random.key(0), (0.5, 1.0))) < 1.0
      True
    """
    if isinstance(mutation, tuple):
        return jax.random.uniform(key, (), minval=mutation[0], maxval=mutation[1])
    return mutation


def keep_in_bounds(key, trials, low, high, rule: str):
    """Brings every gene of ``trials`` into ``[low, high]``: clipped, or redrawn uniformly.

    ``"resample"`` is SciPy's ``differential_evolution`` rule (a gene outside its
    bounds is replaced by a uniform draw inside them), which keeps the population
    spread out instead of piling it on the range's ends (for a pixel's position,
    the image border).

    Args:
      key: the draws' key (``"resample"``).
      trials: ``[..., genes]``.
      low: ``[genes]`` lower bounds.
      high: ``[genes]`` upper bounds.
      rule: ``"clip"`` or ``"resample"``.

    Returns:
      ``trials`` with every gene in its bounds.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks._onepixel import keep_in_bounds
      >>> t = jnp.array([[-1.0, 0.5, 3.0]])
      >>> keep_in_bounds(None, t, jnp.zeros(3), jnp.ones(3), "clip").tolist()
      [[0.0, 0.5, 1.0]]
      >>> r = keep_in_bounds(jax.random.key(0), t, jnp.zeros(3), jnp.ones(3), "resample")
      >>> bool(jnp.all((r >= 0) & (r <= 1))), float(r[0, 1])
      (True, 0.5)
    """
    if rule == "clip":
        return jnp.clip(trials, low, high)
    outside = (trials < low) | (trials > high)
    redraw = jax.random.uniform(key, trials.shape) * (high - low) + low
    return jnp.where(outside, redraw, trials)


def _check_mutation(mutation):
    """``mutation`` as a float or a ``(low, high)`` tuple, each end in ``(0, 2]``."""
    ends = tuple(mutation) if isinstance(mutation, (tuple, list)) else (mutation,)
    bad = len(ends) not in (1, 2) or not all(0 < float(e) <= 2 for e in ends)
    if bad or (len(ends) == 2 and ends[0] > ends[1]):
        raise ValueError(
            f"mutation must be F in (0, 2] or a (low, high) pair with 0 < low <= high <= 2, "
            f"got {mutation!r}."
        )
    return tuple(float(e) for e in ends) if len(ends) == 2 else float(ends[0])


def one_pixel(
    pixels: int = 1,
    *,
    population: int = 400,
    generations: int = 100,
    mutation: float | tuple[float, float] = 0.5,
    crossover: float = 1.0,
    strategy: str = "rand1",
    out_of_bounds: str = "resample",
    targeted: bool = False,
    return_queries: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the one-pixel attack, a score-based L0 attack by differential evolution.

    Su, Vargas & Sakurai (2019), "One Pixel Attack for Fooling Deep Neural Networks",
    arXiv:1710.08864.

    A candidate sets ``pixels`` pixels (row, column, one value per channel).
    Differential evolution (Storn & Price 1997) evolves a population per
    example, minimising the true class's probability (maximising the
    target's): for each parent ``i`` a mutant ``v = x_r1 + F (x_r2 - x_r3)``
    with ``r1, r2, r3`` distinct and different from ``i`` (``"rand1"``, the
    paper's; ``"best1"`` uses the example's best candidate as ``x_r1``, as
    SciPy's default that torchattacks' ``OnePixel`` runs), then binomial
    crossover with the parent (each gene from the mutant with probability
    ``crossover``, at least one always; ``1.0``, the paper's setting, takes the
    whole mutant), and the trial replaces its parent when better. Stops once
    every example is fooled. Paper defaults: 400 candidates, 100 generations,
    ``F = 0.5``, no crossover. Query counts are the evaluated candidates.

    Args:
      pixels: how many pixels may change (the L0 budget in pixels).
      population: candidates per example.
      generations: DE generations.
      mutation: the DE scale ``F``, or a ``(low, high)`` pair: ``F`` drawn uniformly in it
        each generation (SciPy's dithering; its default, which torchattacks runs, is
        ``(0.5, 1)``).
      crossover: the binomial crossover probability ``CR`` in ``[0, 1]``.
      strategy: ``"rand1"`` or ``"best1"`` (the mutant's base vector).
      out_of_bounds: what happens to a trial's gene outside its range: ``"resample"``
        uniformly inside it (SciPy's rule, which the authors' code runs), or ``"clip"``
        to the range's end (which piles candidates on the image border).
      targeted: ``y`` holds targets.
      return_queries: also return the queries spent per example ``[B]``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (or ``(x_adv, queries)``).

    Raises:
      ValueError: ``population < 4``, a bad count, ``mutation`` outside ``(0, 2]``,
        ``crossover`` outside ``[0, 1]``, an unknown strategy, or an empty range.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (16, 3))
      >>> logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x = jnp.full((1, 4, 4, 1), 0.5)
      >>> x_adv = advjax.attacks.one_pixel(population=8, generations=3)(
      ...     logits_fn, x, jnp.array([0]), key=jax.random.key(0))
      >>> int((x_adv != x).sum()) <= 1
      True
    """
    pixels = check_positive_int(pixels, "pixels")
    population = check_positive_int(population, "population", minimum=4)
    generations = check_positive_int(generations, "generations", minimum=0)
    check_range(clip_min, clip_max)
    mutation = _check_mutation(mutation)
    if not 0 <= crossover <= 1:
        raise ValueError(f"crossover must be in [0, 1], got {crossover}.")
    if out_of_bounds not in OUT_OF_BOUNDS:
        raise ValueError(
            f"unknown out_of_bounds {out_of_bounds!r}; choose one of {sorted(OUT_OF_BOUNDS)}."
        )
    if strategy not in DE_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose 'rand1' or 'best1'.")

    def attack(logits_fn, x, y, *, key):
        labels = as_labels(y)
        xi = _as_nhwc(x)
        batch, height, width, channels = xi.shape
        genes = 2 + channels
        low = jnp.array([0.0, 0.0] + [clip_min] * channels)
        high = jnp.array([height - 1e-3, width - 1e-3] + [clip_max] * channels)

        def apply(candidates):
            """Candidates [B, P, pixels, genes] -> images [B, P, H, W, C]."""
            rows = jnp.floor(candidates[..., 0]).astype(jnp.int32)
            cols = jnp.floor(candidates[..., 1]).astype(jnp.int32)
            images = jnp.broadcast_to(xi[:, None], (batch, candidates.shape[1]) + xi.shape[1:])
            for k in range(pixels):
                hit = (jnp.arange(height)[:, None] == rows[..., k, None, None]) & (
                    jnp.arange(width)[None, :] == cols[..., k, None, None]
                )
                images = jnp.where(hit[..., None], candidates[..., k, None, None, 2:], images)
            return images

        def fitness(candidates):
            images = apply(candidates)
            flat = images.reshape((-1,) + x.shape[1:])
            probs = jax.nn.softmax(logits_fn(flat).astype(jnp.float32), -1)
            probs = probs.reshape(batch, candidates.shape[1], -1)
            own = jnp.take_along_axis(probs, labels[:, None, None], -1)[..., 0]
            pred = jnp.argmax(probs, -1)
            success = (pred == labels[:, None]) if targeted else (pred != labels[:, None])
            return (-own if targeted else own), success

        init_key, loop_key = jax.random.split(key)
        pop = jax.random.uniform(init_key, (batch, population, pixels, genes)) * (high - low) + low
        score, success = fitness(pop)
        clean_logits = logits_fn(x)
        clean_pred = jnp.argmax(clean_logits, -1)
        clean_success = (clean_pred == labels) if targeted else (clean_pred != labels)
        queries = jnp.where(clean_success, 1, 1 + population).astype(jnp.int32)
        done = clean_success | jnp.any(success, -1)

        def cond(state):
            g, _, _, _, done, _ = state
            return (g < generations) & ~jnp.all(done)

        def body(state):
            g, pop, score, success, done, queries = state
            k = jax.random.fold_in(loop_key, g)
            index_key, cross_key = jax.random.split(k)
            scale_key = jax.random.fold_in(k, 1)
            r1, r2, r3 = distinct_partners(index_key, batch, population)
            pick = lambda i: jnp.take_along_axis(pop, i[..., None, None], 1)  # noqa: E731
            base = pick(r1)
            if strategy == "best1":
                base = jnp.broadcast_to(
                    pop[jnp.arange(batch), jnp.argmin(score, -1)][:, None], pop.shape
                )
            mutant = base + de_scale(scale_key, mutation) * (pick(r2) - pick(r3))
            child = binomial_crossover(cross_key, pop, mutant, crossover)
            child = keep_in_bounds(jax.random.fold_in(k, 2), child, low, high, out_of_bounds)
            child_score, child_success = fitness(child)
            better = (child_score < score) & ~done[:, None]
            pop = jnp.where(better[..., None, None], child, pop)
            score = jnp.where(better, child_score, score)
            success = jnp.where(better, child_success, success)
            queries = queries + jnp.where(done, 0, population)
            return g + 1, pop, score, success, done | jnp.any(success, -1), queries

        state = (jnp.asarray(0), pop, score, success, done, queries)
        _, pop, score, success, _, queries = jax.lax.while_loop(cond, body, state)
        # Best candidate: a successful one first, then the lowest score.
        rank = jnp.where(success, score - 1e9, score)
        best = jnp.argmin(rank, -1)
        chosen = jnp.take_along_axis(pop, best[:, None, None, None], 1)
        x_adv = apply(chosen)[:, 0].reshape(x.shape)
        x_adv = _select(clean_success, x, x_adv)
        x_adv = jax.lax.stop_gradient(x_adv)
        return (x_adv, queries) if return_queries else x_adv

    return guarded(
        attack,
        name="one_pixel",
        eps=None,
        norm=None,
        clip_min=clip_min,
        clip_max=clip_max,
        tuple_output=return_queries,
    )
