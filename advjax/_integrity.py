"""SHA-256 digests of array trees, so that a saved model or checkpoint can be verified on load."""

from __future__ import annotations

import hashlib
import json

import jax
import numpy as np


def _leaf_digest(leaf) -> str:
    array = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def tree_digests(tree) -> dict[str, str]:
    """The SHA-256 of every array of ``tree``, keyed by its path (``"params/Dense_0/kernel"``).

    Each digest covers the array's dtype, shape and bytes, so a flipped bit, a
    truncated array or a changed dtype all change it.

    Args:
      tree: a pytree of arrays (numpy or jax; ``None`` leaves are skipped).

    Returns:
      ``{path: hex digest}`` in the order of ``jax.tree_util``'s flattening.

    Example:
      >>> import numpy as np
      >>> from advjax.runs import tree_digests
      >>> digests = tree_digests({"w": np.zeros(3, np.float32)})
      >>> list(digests), len(digests["w"])
      (['w'], 64)
      >>> digests == tree_digests({"w": np.zeros(3, np.float64)})
      False
    """
    return {path: _leaf_digest(leaf) for path, leaf in leaves_by_path(tree).items()}


def leaves_by_path(tree) -> dict[str, object]:
    """The leaves of ``tree`` keyed by their path names (``"params/Dense_0/kernel"``)."""
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _path_name(path) -> str:
    parts = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def mismatched(expected: dict[str, str], tree) -> list[str]:
    """The paths whose arrays differ from ``expected`` digests (missing or extra ones included).

    Args:
      expected: digests recorded by :func:`tree_digests` when the tree was saved.
      tree: the tree read back.

    Returns:
      The sorted paths that fail the check; ``[]`` means the tree is intact.

    Example:
      >>> import numpy as np
      >>> from advjax.runs import mismatched, tree_digests
      >>> saved = tree_digests({"a": np.ones(2), "b": np.zeros(2)})
      >>> mismatched(saved, {"a": np.ones(2), "b": np.array([0.0, 1e-30])})
      ['b']
    """
    found = tree_digests(tree)
    return sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))


def json_digest(value) -> str:
    """The SHA-256 of a JSON-ready value, written with sorted keys.

    Args:
      value: anything ``json.dumps`` accepts.

    Returns:
      The hex digest.

    Example:
      >>> from advjax.runs import json_digest
      >>> json_digest({"a": 1, "b": 2}) == json_digest({"b": 2, "a": 1})
      True
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
