"""What NNXModel and EquinoxModel share: a module built elsewhere behind linen's contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax


def mutable_names(mutable: bool | str | Sequence[str]) -> tuple[str, ...]:
    """The collections a linen-style ``apply(..., mutable=...)`` asks back, as a tuple.

    Example:
      >>> mutable_names(True), mutable_names(False), mutable_names(["batch_stats"])
      (('batch_stats',), (), ('batch_stats',))
    """
    if mutable is True:
        return ("batch_stats",)
    if not mutable:
        return ()
    return (mutable,) if isinstance(mutable, str) else tuple(mutable)


class WrappedModel:
    """Base of the wrappers: ``init``, the ``batch_stats`` check and linen's ``mutable`` return.

    A subclass sets ``name`` and ``has_stats`` and defines ``initial_variables()``.

    Example:
      >>> from advjax.models import NNXModel
      >>> issubclass(NNXModel, WrappedModel)
      True
    """

    name: str = ""
    has_stats: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def initial_variables(self) -> dict[str, Any]:
        """The wrapped module's own variables, as nested dicts (defined by each wrapper)."""
        raise NotImplementedError

    def init(self, key: jax.Array, x: jax.Array, train: bool = False) -> dict[str, Any]:
        """The wrapped module's variables (``key``, ``x`` and ``train`` are not used).

        NNX and Equinox modules are initialised when constructed: build the module
        with the seed you want.

        Args:
          key: unused.
          x: unused example input.
          train: unused.

        Returns:
          ``{"params": ...}`` plus ``"batch_stats"`` for a module with statistics, as
          nested dicts of arrays keyed by attribute path.
        """
        del key, x, train
        return self.initial_variables()

    def stats_of(self, variables: Mapping[str, Any]):
        """``variables["batch_stats"]``, required when the module has statistics, else ``None``.

        Raises:
          ValueError: the module has statistics and ``variables`` lacks them.
        """
        if not self.has_stats:
            return None
        if "batch_stats" not in variables:
            raise ValueError(
                f"{self.name} has BatchNorm statistics (state); pass variables with "
                "'batch_stats' (as init returns them)."
            )
        return variables["batch_stats"]

    def linen_result(self, out, mutable, new_stats):
        """``out``, or ``(out, {"batch_stats": new_stats()})`` when ``mutable`` asks for them.

        ``new_stats`` is called only then (it reads the updated statistics).
        """
        names = mutable_names(mutable)
        if not names:
            return out
        wanted = "batch_stats" in names and self.has_stats
        return out, ({"batch_stats": new_stats()} if wanted else {})
