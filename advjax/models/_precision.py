"""Mixed precision: bf16 compute with fp32 parameters and an fp32 loss."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _cast_floats(tree, dtype):
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree
    )


def mixed_precision(apply_fn: Callable, dtype=jnp.bfloat16) -> Callable:
    """Wraps a Flax ``apply`` to compute in ``dtype`` while parameters stay fp32.

    The parameters and the input are cast to ``dtype`` inside ``apply`` (the
    gradient flows back through the casts, so the optimizer sees fp32
    gradients of fp32 parameters); the logits are cast back to fp32, so losses
    (and attack objectives) are computed in fp32. BatchNorm statistics stay
    fp32: they are not cast on the way in, and updated statistics are cast
    back to fp32 on the way out. Attack inputs stay fp32, so perturbations are
    not quantised to bf16.

    Args:
      apply_fn: a Flax ``Module.apply``.
      dtype: the compute dtype (``jnp.bfloat16`` or ``jnp.float16``).

    Returns:
      An ``apply`` with the same signature, for ``TrainState.create(apply_fn=...)``
      (also exported as ``advjax.train.mixed_precision``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import models
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> apply = models.mixed_precision(model.apply)
      >>> apply(v, jnp.zeros((2, 28, 28, 1))).dtype
      dtype('float32')
    """
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype such as bfloat16, got {dtype}.")

    def apply(variables, x, *args, **kwargs):
        variables = dict(variables)
        variables["params"] = _cast_floats(variables["params"], dtype)
        out = apply_fn(variables, x.astype(dtype), *args, **kwargs)
        if isinstance(out, tuple):  # (logits, mutated collections)
            logits, updates = out
            return logits.astype(jnp.float32), _cast_floats(updates, jnp.float32)
        return out.astype(jnp.float32)

    return apply
