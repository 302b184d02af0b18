"""Any pytree's arrays as a nested dict keyed by attribute path, and back.

Flax linen keeps variables as nested dicts (``{"conv1": {"kernel": ...}}``);
optax, orbax, the integrity digests of :mod:`advjax.runs` and every printout
work on that form. NNX states and Equinox modules are other pytrees; these two
functions give their arrays the same form, so one code path serves all three.
"""

from __future__ import annotations

from typing import Any

import jax


def _entry_name(entry) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def _names(path, drop_last_value: bool) -> tuple[str, ...]:
    names = tuple(_entry_name(entry) for entry in path)
    if drop_last_value and len(names) > 1 and names[-1] == "value":
        names = names[:-1]
    return names


def nested_arrays(tree: Any, *, drop_last_value: bool = False) -> dict[str, Any]:
    """The leaves of ``tree`` as a nested dict keyed by their path's names.

    Args:
      tree: any pytree (an NNX ``State``, an Equinox module, a dict).
      drop_last_value: drop a final ``value`` entry of each path (NNX variables
        keep their array in ``.value``).

    Returns:
      ``{"layer": {"weight": leaf, ...}, ...}`` with string keys.

    Raises:
      ValueError: two leaves map to the same path of names.

    Example:
      >>> import jax.numpy as jnp
      >>> nested_arrays({"dense": [jnp.zeros(2), jnp.ones(3)]})["dense"]["1"].shape
      (3,)
    """
    nested: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = _names(path, drop_last_value)
        node = nested
        for name in names[:-1]:
            node = node.setdefault(name, {})
        if not isinstance(node, dict) or names[-1] in node:
            raise ValueError(f"two arrays share the path {'/'.join(names)}.")
        node[names[-1]] = leaf
    return nested


def fill_from_nested(
    template: Any, nested: Any, *, drop_last_value: bool = False, what: str = "variables"
) -> Any:
    """``template`` with every leaf replaced by the entry of ``nested`` at its path.

    The inverse of :func:`nested_arrays` for a template of the same structure.

    Args:
      template: the pytree whose structure the result takes.
      nested: a nested dict as :func:`nested_arrays` returns.
      drop_last_value: as in :func:`nested_arrays`.
      what: what ``nested`` holds, for the error message.

    Returns:
      A pytree with ``template``'s structure and ``nested``'s leaves.

    Raises:
      ValueError: ``nested`` lacks an entry that ``template`` has, or has one it lacks.

    Example:
      >>> import jax.numpy as jnp
      >>> template = {"dense": [jnp.zeros(2), jnp.zeros(3)]}
      >>> filled = fill_from_nested(template, {"dense": {"0": jnp.ones(2), "1": jnp.ones(3)}})
      >>> float(filled["dense"][1].sum())
      3.0
    """
    entries, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, _ in entries:
        names = _names(path, drop_last_value)
        node = nested
        for name in names:
            if not isinstance(node, dict) or name not in node:
                raise ValueError(
                    f"the {what} lack {'/'.join(names)}: they were made for another model "
                    "(build the variables with this model's init)."
                )
            node = node[name]
        leaves.append(node)
    expected = len(jax.tree.leaves(nested))
    if expected != len(leaves):
        raise ValueError(
            f"the {what} hold {expected} arrays, the model {len(leaves)}: they were made for "
            "another model (build the variables with this model's init)."
        )
    return jax.tree_util.tree_unflatten(treedef, leaves)
