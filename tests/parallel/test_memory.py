"""An attack needs the memory of one forward and backward pass, whatever its step count.

Read from XLA's own accounting of the compiled programs
(``compile().memory_analysis().temp_size_in_bytes``): nothing is run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import advjax
from advjax import losses, models

BATCH = 32


def _temp_bytes(fn, *args) -> int:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_pgd_temp_memory_does_not_grow_with_steps_and_matches_one_gradient():
    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    x = jax.ShapeDtypeStruct((BATCH, 28, 28, 1), jnp.float32)
    y = jax.ShapeDtypeStruct((BATCH,), jnp.int32)
    key = jax.eval_shape(lambda: jax.random.key(0))
    input_bytes = BATCH * 28 * 28 * 4

    def gradient(params, x, y):
        logits_fn = models.eval_logits_fn(model, params)
        return jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y)))(x)

    def attack_of(attack):
        return lambda params, x, y, key: attack(models.eval_logits_fn(model, params), x, y, key=key)

    one_gradient = _temp_bytes(gradient, variables, x, y)
    pgd5 = _temp_bytes(attack_of(advjax.pgd(0.3, steps=5)), variables, x, y, key)
    pgd50 = _temp_bytes(attack_of(advjax.pgd(0.3, steps=50)), variables, x, y, key)
    # Sequential restarts reuse the same buffers; only vmapped restarts multiply them.
    restarts = advjax.with_restarts(advjax.pgd(0.3, steps=50), 4, batched=False)
    pgd50_r4 = _temp_bytes(attack_of(restarts), variables, x, y, key)

    print(f"temp bytes: gradient {one_gradient}, PGD-5 {pgd5}, PGD-50 {pgd50}, ", end="")
    print(f"4 sequential restarts of PGD-50 {pgd50_r4}")
    assert pgd5 == pgd50
    # The loop's extra state (iterate, best iterate, per-example flags) is a few
    # input-sized buffers on top of one input gradient.
    assert one_gradient <= pgd50 <= one_gradient + 2 * input_bytes
    assert pgd50_r4 <= one_gradient + 6 * input_bytes
