"""Equinox modules behind the linen ``init`` / ``apply`` contract that training and runs use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from advjax.models._pytree_dict import fill_from_nested, nested_arrays
from advjax.models._wrapped import WrappedModel


def _equinox():
    try:
        import equinox
    except ImportError as error:  # equinox is an optional dependency
        raise ImportError(
            "EquinoxModel needs equinox: pip install 'advjax[equinox]' (or pip install equinox)."
        ) from error
    return equinox


class EquinoxModel(WrappedModel):
    """An Equinox module seen through Flax linen's ``init`` / ``apply`` contract.

    Equinox models act on one example; this wrapper maps them over the batch with
    ``jax.vmap`` and gives them the contract that training
    (:class:`advjax.train.TrainState`, every objective, :func:`advjax.train.fit`),
    :func:`eval_logits_fn` and runs use, so they take the same code path as linen
    and NNX models. The trainable parameters are the module's floating arrays
    (``eqx.partition(module, eqx.is_inexact_array)``); the rest stays as constructed.
    Variables are nested dicts keyed by attribute path: ``{"params": ...}``, plus
    ``"batch_stats"`` (the arrays of the ``eqx.nn.State``) for a stateful module.

    The module is called as ``module(x, *, key=None)``, or ``module(x, state, *,
    key=None) -> (out, state)`` when ``state`` is given (``eqx.nn.make_with_state``),
    with ``x`` one example. Eval mode applies ``eqx.nn.inference_mode`` (BatchNorm on
    its running averages, dropout off) and passes no key; train mode passes each
    example its own key split from ``rngs["dropout"]`` and runs the vmap with
    ``axis_name`` (give BatchNorm layers the same ``axis_name``).

    Args:
      module: the Equinox module.
      state: its ``eqx.nn.State`` for a stateful module (BatchNorm), else ``None``.
      axis_name: the vmapped batch axis's name that BatchNorm layers reduce over.

    Raises:
      ImportError: equinox is not installed.
      TypeError: ``module`` is not an ``eqx.Module``.

    Example:
      >>> import jax, jax.numpy as jnp, equinox as eqx
      >>> from advjax import models
      >>> class Net(eqx.Module):
      ...     dense: eqx.nn.Linear
      ...     def __init__(self, key):
      ...         self.dense = eqx.nn.Linear(4, 3, key=key)
      ...     def __call__(self, x, *, key=None):
      ...         return self.dense(x.reshape(-1))
      >>> model = models.EquinoxModel(Net(jax.random.key(0)))
      >>> variables = models.init_model(model, jax.random.key(0), (2, 2, 1))
      >>> variables["params"]["dense"]["weight"].shape
      (3, 4)
      >>> models.eval_logits_fn(model, variables)(jnp.ones((5, 2, 2, 1))).shape
      (5, 3)
    """

    def __init__(self, module, state=None, *, axis_name: str = "batch"):
        eqx = _equinox()
        if not isinstance(module, eqx.Module):
            raise TypeError(
                f"EquinoxModel wraps an equinox.Module, got {type(module).__name__}; wrap an "
                "NNX module in NNXModel and use a linen module directly."
            )
        if state is not None and not isinstance(state, eqx.nn.State):
            raise TypeError(
                f"state must be the eqx.nn.State of eqx.nn.make_with_state, got "
                f"{type(state).__name__}."
            )
        self._params, self._static = eqx.partition(module, eqx.is_inexact_array)
        self._state = state
        self.has_stats = state is not None
        self.axis_name = axis_name
        self.name = type(module).__name__

    def initial_variables(self) -> dict[str, Any]:
        """The wrapped module's ``params`` (and its state as ``batch_stats``) as nested dicts."""
        variables = {"params": nested_arrays(self._params)}
        if self.has_stats:
            variables["batch_stats"] = nested_arrays(self._state)
        return variables

    def module(self, variables: Mapping[str, Any]):
        """The Equinox module holding ``variables`` (with its state when stateful).

        Args:
          variables: as :meth:`init` returns.

        Returns:
          The module in inference mode, or ``(module, state)`` for a stateful one.
        """
        eqx = _equinox()
        module, state = self._combine(variables)
        module = eqx.nn.inference_mode(module, value=True)
        return module if state is None else (module, state)

    def _combine(self, variables: Mapping[str, Any]):
        eqx = _equinox()
        params = fill_from_nested(self._params, variables["params"], what="params")
        state = None
        if self.has_stats:
            state = fill_from_nested(self._state, self.stats_of(variables), what="batch_stats")
        return eqx.combine(params, self._static), state

    def apply(
        self,
        variables: Mapping[str, Any],
        x: jax.Array,
        train: bool = False,
        *,
        rngs: Mapping[str, jax.Array] | None = None,
        mutable: bool | str | Sequence[str] = False,
    ):
        """Runs the module on the batch ``x`` with ``variables``, linen-style.

        Args:
          variables: ``{"params": ...}`` (and ``"batch_stats"`` for a stateful module).
          x: the input batch ``[B, ...]``.
          train: train mode or eval (inference) mode.
          rngs: ``{"dropout": key}`` for dropout in train mode.
          mutable: ``["batch_stats"]`` (or ``True``) to also return the updated state.

        Returns:
          The outputs ``[B, ...]``, or ``(outputs, {"batch_stats": ...})`` when
          ``mutable`` names them.

        Raises:
          ValueError: variables made for another model.
        """
        eqx = _equinox()
        module, state = self._combine(variables)
        module = eqx.nn.inference_mode(module, value=not train)
        key = (rngs or {}).get("dropout") if train else None
        keys = None if key is None else jax.random.split(key, x.shape[0])
        key_axis = None if keys is None else 0
        if state is None:
            out = jax.vmap(lambda xi, ki: module(xi, key=ki), in_axes=(0, key_axis))(x, keys)
            new_state = None
        else:
            out, new_state = jax.vmap(
                lambda xi, st, ki: module(xi, st, key=ki),
                axis_name=self.axis_name,
                in_axes=(0, None, key_axis),
                out_axes=(0, None),
            )(x, state, keys)
        return self.linen_result(out, mutable, lambda: nested_arrays(new_state))
