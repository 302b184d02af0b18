"""The one-pixel attack (Su, Vargas & Sakurai 2019): differential evolution on few pixels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import guarded
from advjax.attacks._square import _as_nhwc
from advjax.losses import as_labels


def one_pixel(
    pixels: int = 1,
    *,
    population: int = 400,
    generations: int = 100,
    mutation: float = 0.5,
    targeted: bool = False,
    return_queries: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the one-pixel attack, a score-based L0 attack by differential evolution.

    Su, Vargas & Sakurai (2019), "One Pixel Attack for Fooling Deep Neural Networks",
    arXiv:1710.08864.

    A candidate sets ``pixels`` pixels (row, column, one value per channel).
    Differential evolution (DE/rand/1, ``F = mutation``, no crossover, as in the
    paper) evolves a population per example, minimising the true class's
    probability (maximising the target's); a child replaces its parent when
    better. Stops once every example is fooled. Paper defaults: 400 candidates,
    100 generations, ``F = 0.5``. Query counts are the evaluated candidates.

    Args:
      pixels: how many pixels may change (the L0 budget in pixels).
      population: candidates per example.
      generations: DE generations.
      mutation: the DE scale ``F``.
      targeted: ``y`` holds targets.
      return_queries: also return the queries spent per example ``[B]``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (or ``(x_adv, queries)``).

    Raises:
      ValueError: ``population < 4``, a bad count, ``mutation`` outside ``(0, 2]``, or
        an empty range.

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
    if not 0 < mutation <= 2:
        raise ValueError(f"mutation must be in (0, 2], got {mutation}.")

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
            idx = jax.random.randint(k, (3, batch, population), 0, population)
            pick = lambda i: jnp.take_along_axis(pop, idx[i][..., None, None], 1)  # noqa: E731
            child = jnp.clip(pick(0) + mutation * (pick(1) - pick(2)), low, high)
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
