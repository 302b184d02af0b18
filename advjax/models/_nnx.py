"""Flax NNX modules behind the linen ``init`` / ``apply`` contract that training and runs use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from advjax.models._pytree_dict import fill_from_nested, nested_arrays
from advjax.models._wrapped import WrappedModel


def _reseeded(rng_state, key: jax.Array):
    """``rng_state`` with stream ``i``'s key set to ``fold_in(key, i)`` and its count to 0."""
    leaves, treedef = jax.tree.flatten(rng_state)
    fresh = []
    for index, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            fresh.append(jax.random.fold_in(key, index))
        else:
            fresh.append(jnp.zeros_like(leaf))
    return jax.tree.unflatten(treedef, fresh)


class NNXModel(WrappedModel):
    """A Flax NNX module seen through Flax linen's ``init`` / ``apply`` contract.

    Training (:class:`advjax.train.TrainState`, every objective, :func:`advjax.train.fit`),
    :func:`eval_logits_fn`, :func:`train_apply` and runs
    (:func:`advjax.runs.save_run_model` / :func:`advjax.runs.load_run`) take a linen
    module; wrapped this way an NNX module goes through the same code path. Variables are
    plain nested dicts: ``{"params": ..., "batch_stats": ...}`` (the latter when the
    module has ``nnx.BatchStat`` variables), keyed by attribute path, like linen's.

    ``apply(variables, x, train=False)`` merges the module with the variables, puts it in
    eval mode (``module.eval()``: BatchNorm on its running averages, dropout off) or train
    mode (``module.train()``), and calls it on the batch. In train mode the module's RNG
    streams are reseeded from ``rngs["dropout"]`` on every call, so dropout masks depend
    only on the key the training step passes (a resumed run draws the same masks); state
    other than parameters, batch statistics and RNG streams stays as constructed.

    NNX modules are initialised when constructed, so :meth:`init` returns the wrapped
    module's own weights and ignores its key: build the module with the ``nnx.Rngs`` seed
    you want.

    Args:
      module: the NNX module, called as ``module(x)`` on a batch ``[B, ...]``.

    Raises:
      TypeError: ``module`` is not an ``nnx.Module``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from advjax import models
      >>> class Net(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.dense = nnx.Linear(4, 3, rngs=rngs)
      ...         self.drop = nnx.Dropout(0.5, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.dense(self.drop(x.reshape(x.shape[0], -1)))
      >>> model = models.NNXModel(Net(nnx.Rngs(0)))
      >>> variables = models.init_model(model, jax.random.key(0), (2, 2, 1))
      >>> variables["params"]["dense"]["kernel"].shape
      (4, 3)
      >>> models.eval_logits_fn(model, variables)(jnp.ones((5, 2, 2, 1))).shape
      (5, 3)
    """

    def __init__(self, module: nnx.Module):
        if not isinstance(module, nnx.Module):
            raise TypeError(
                f"NNXModel wraps a flax.nnx.Module, got {type(module).__name__}; wrap a linen "
                "module in nothing (use it directly) and an Equinox module in EquinoxModel."
            )
        self._graphdef, self._params, self._stats, self._rngs, self._rest = nnx.split(
            module, nnx.Param, nnx.BatchStat, nnx.RngState, ...
        )
        self.has_stats = bool(jax.tree.leaves(self._stats))
        self._has_rngs = bool(jax.tree.leaves(self._rngs))
        self.name = type(module).__name__

    def initial_variables(self) -> dict[str, Any]:
        """The wrapped module's ``params`` (and ``batch_stats``) as nested dicts."""
        variables = {"params": nested_arrays(self._params, drop_last_value=True)}
        if self.has_stats:
            variables["batch_stats"] = nested_arrays(self._stats, drop_last_value=True)
        return variables

    def module(self, variables: Mapping[str, Any]) -> nnx.Module:
        """A new NNX module holding ``variables`` (e.g. trained ones), in eval mode.

        Args:
          variables: ``{"params": ..., "batch_stats": ...}`` as :meth:`init` returns.

        Returns:
          The module; the wrapped one is not changed.
        """
        module = self._merge(variables, self._rngs)
        module.eval()
        return module

    def _merge(self, variables: Mapping[str, Any], rngs) -> nnx.Module:
        params = fill_from_nested(
            self._params, variables["params"], drop_last_value=True, what="params"
        )
        stats = self._stats
        if self.has_stats:
            stats = fill_from_nested(
                self._stats, self.stats_of(variables), drop_last_value=True, what="batch_stats"
            )
        return nnx.merge(self._graphdef, params, stats, rngs, self._rest)

    def apply(
        self,
        variables: Mapping[str, Any],
        x: jax.Array,
        train: bool = False,
        *,
        rngs: Mapping[str, jax.Array] | None = None,
        mutable: bool | str | Sequence[str] = False,
    ):
        """Runs the module on ``x`` with ``variables``, linen-style.

        Args:
          variables: ``{"params": ..., "batch_stats": ...}``.
          x: the input batch.
          train: train mode (batch statistics, dropout) or eval mode.
          rngs: ``{"dropout": key}``; required in train mode by a module holding RNG streams.
          mutable: ``["batch_stats"]`` (or ``True``) to also return the updated statistics.

        Returns:
          The output, or ``(output, {"batch_stats": ...})`` when ``mutable`` names them.

        Raises:
          ValueError: train mode without a dropout key for a module with RNG streams, or
            variables made for another model.
        """
        rng_state = self._rngs
        if train and self._has_rngs:
            key = (rngs or {}).get("dropout")
            if key is None:
                raise ValueError(
                    f"{self.name} holds RNG streams (dropout); in train mode pass "
                    "rngs={'dropout': key}."
                )
            rng_state = _reseeded(self._rngs, key)
        module = self._merge(variables, rng_state)
        if train:
            module.train()
        else:
            module.eval()
        out = module(x)
        return self.linen_result(
            out,
            mutable,
            lambda: nested_arrays(nnx.state(module, nnx.BatchStat), drop_last_value=True),
        )
