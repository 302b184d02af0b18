"""Public loaders of the canonical data sets (verified local files, downloaded if missing)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from advjax.data._cifar import CIFAR100_LABEL_MODES, read_cifar10_archive, read_cifar100_archive
from advjax.data._dataset import Dataset
from advjax.data._download import DEFAULT_TIMEOUT, fetch_files, get_source
from advjax.data._errors import DataError
from advjax.data._idx import images_labels_to_dataset, read_idx_images, read_idx_labels

PathLike = str | os.PathLike


def _check_split(dataset: str, split: str) -> None:
    source = get_source(dataset)
    if not isinstance(split, str) or split not in source.splits:
        raise DataError(
            f"Unknown split {split!r} for {dataset}; choose one of {sorted(source.splits)}."
        )


def _load_idx(
    dataset: str,
    split: str,
    data_dir: PathLike | None,
    download: bool,
    mirrors: str | Sequence[str] | None,
    timeout: float,
) -> Dataset:
    _check_split(dataset, split)
    paths = fetch_files(
        dataset, split, data_dir=data_dir, download=download, mirrors=mirrors, timeout=timeout
    )
    images_name, labels_name = get_source(dataset).splits[split]
    images = read_idx_images(paths[images_name])
    labels = read_idx_labels(paths[labels_name])
    return images_labels_to_dataset(
        images,
        labels,
        name=f"{dataset}/{split}",
        num_classes=10,
        source=f"{paths[images_name]} + {paths[labels_name]}",
    )


def load_mnist(
    split: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Dataset:
    """Load a split of MNIST from the canonical, md5-verified IDX files.

    The files are looked up in ``<data root>/mnist/`` (see :func:`resolve_data_root`) and
    downloaded there if missing. The ``"test"`` split needs only the two ``t10k`` files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: Data root; defaults to ``$ADVJAX_DATA`` or the per-user cache.
        download: Download missing files; if false, a missing file raises.
        mirrors: Base URLs to use instead of the canonical mirrors.
        timeout: Socket timeout in seconds per request.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 28, 28, 1)``, ``int32`` labels, 10 classes.

    Raises:
        DataError: Unknown split; :class:`ChecksumError` for a corrupt local file;
            :class:`MissingDataError` when a file is missing and cannot be downloaded.

    Example:
        >>> from advjax.data import load_mnist
        >>> ds = load_mnist("test", data_dir="/data")  # reads /data/mnist/  # doctest: +SKIP
        >>> ds.images.shape  # doctest: +SKIP
        (10000, 28, 28, 1)
    """
    return _load_idx("mnist", split, data_dir, download, mirrors, timeout)


def load_fashion_mnist(
    split: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Dataset:
    """Load a split of Fashion-MNIST from the canonical, md5-verified IDX files.

    The files are looked up in ``<data root>/fashion_mnist/`` and downloaded there if missing.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: Data root; defaults to ``$ADVJAX_DATA`` or the per-user cache.
        download: Download missing files; if false, a missing file raises.
        mirrors: Base URLs to use instead of the canonical mirror.
        timeout: Socket timeout in seconds per request.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 28, 28, 1)``, ``int32`` labels, 10 classes.

    Raises:
        DataError: Unknown split, corrupt or missing files (see :func:`load_mnist`).

    Example:
        >>> from advjax.data import load_fashion_mnist
        >>> load_fashion_mnist("test").labels.shape  # doctest: +SKIP
        (10000,)
    """
    return _load_idx("fashion_mnist", split, data_dir, download, mirrors, timeout)


def load_cifar10(
    split: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Dataset:
    """Load a split of CIFAR-10 from the md5-verified official binary archive.

    The archive ``cifar-10-binary.tar.gz`` is looked up in ``<data root>/cifar10/`` and
    downloaded there if missing; its members are read in memory (never unpickled or extracted).

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        data_dir: Data root; defaults to ``$ADVJAX_DATA`` or the per-user cache.
        download: Download a missing archive; if false, a missing archive raises.
        mirrors: Base URLs to use instead of the canonical one.
        timeout: Socket timeout in seconds per request.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 32, 32, 3)``, ``int32`` labels, 10 classes.

    Raises:
        DataError: Unknown split, corrupt or missing archive.

    Example:
        >>> from advjax.data import load_cifar10
        >>> load_cifar10("test").images.shape  # doctest: +SKIP
        (10000, 32, 32, 3)
    """
    _check_split("cifar10", split)
    paths = fetch_files(
        "cifar10", split, data_dir=data_dir, download=download, mirrors=mirrors, timeout=timeout
    )
    return read_cifar10_archive(paths["cifar-10-binary.tar.gz"], split)


def load_cifar100(
    split: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    label_mode: str = "fine",
    mirrors: str | Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Dataset:
    """Load a split of CIFAR-100 from the md5-verified official binary archive.

    The archive ``cifar-100-binary.tar.gz`` is looked up in ``<data root>/cifar100/`` and
    downloaded there if missing.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000 images).
        data_dir: Data root; defaults to ``$ADVJAX_DATA`` or the per-user cache.
        download: Download a missing archive; if false, a missing archive raises.
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        mirrors: Base URLs to use instead of the canonical one.
        timeout: Socket timeout in seconds per request.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 32, 32, 3)`` and ``int32`` labels.

    Raises:
        DataError: Unknown split or label mode, corrupt or missing archive.

    Example:
        >>> from advjax.data import load_cifar100
        >>> load_cifar100("test", label_mode="coarse").num_classes  # doctest: +SKIP
        20
    """
    _check_split("cifar100", split)
    if label_mode not in CIFAR100_LABEL_MODES:
        raise DataError(
            f"Unknown label_mode {label_mode!r} for cifar100; choose 'fine' (100 classes) "
            "or 'coarse' (20 superclasses)."
        )
    paths = fetch_files(
        "cifar100", split, data_dir=data_dir, download=download, mirrors=mirrors, timeout=timeout
    )
    return read_cifar100_archive(paths["cifar-100-binary.tar.gz"], split, label_mode=label_mode)
