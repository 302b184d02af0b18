"""Mixed-precision attacks: the model in bf16, parameters, inputs and the loss in fp32."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from advjax.attacks import LogitsFn
from advjax.models import mixed_precision


def bf16_logits(
    model: nn.Module | Callable, variables: Mapping[str, Any], *, dtype=jnp.bfloat16
) -> LogitsFn:
    """The eval-mode logits function of a Flax model, computed in ``dtype``.

    The attack side of :func:`advjax.models.mixed_precision` (which it reuses):
    parameters are stored in fp32 and cast to ``dtype`` inside the model, the
    input is cast on the way in (so the attack's perturbation itself is
    accumulated and projected in fp32) and the logits are cast back to fp32,
    so attack losses and their gradients' ranking of examples stay fp32.
    BatchNorm statistics are not cast.

    Args:
      model: a Flax module whose ``__call__`` takes ``train``, or its ``apply``.
      variables: fp32 variables (``params`` and optional ``batch_stats``).
      dtype: the compute dtype, ``jnp.bfloat16`` (default) or ``jnp.float16``.

    Returns:
      ``x -> logits`` (fp32), for any attack.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import models, parallel
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> logits_fn = parallel.bf16_logits(model, v)
      >>> logits_fn(jnp.zeros((2, 28, 28, 1))).dtype
      dtype('float32')
    """
    apply_fn = mixed_precision(model.apply if isinstance(model, nn.Module) else model, dtype)
    variables = dict(variables)

    def logits_fn(x):
        return apply_fn(variables, x, train=False)

    return logits_fn
