"""Backend-specific workarounds, in one leaf package that imports nothing else of advjax.

XLA:CPU runs some programs far below the speed of the same computation on
other backends or outside a loop; the fixes live here so that models,
training, evaluation and scale-out can all use them without importing each
other:

* :func:`fast_conv_grads` rewrites the convolutions and max pooling of a
  function so that their input gradients stay in XLA:CPU's fast kernels inside
  attack loops; :func:`default_fast_conv_grads` applies it on the CPU backend
  only (what ``advjax.models.eval_logits_fn`` and ``advjax.train.eval_logits``
  do by default).

Example:
  >>> import jax.numpy as jnp
  >>> from advjax import backend
  >>> f = backend.fast_conv_grads(lambda x: 2 * x)
  >>> f(jnp.ones(2)).tolist()
  [2.0, 2.0]
"""

from advjax.backend._conv import conv_general_dilated, default_fast_conv_grads, fast_conv_grads

__all__ = [
    "conv_general_dilated",
    "default_fast_conv_grads",
    "fast_conv_grads",
]
