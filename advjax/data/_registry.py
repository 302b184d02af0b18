"""Canonical download locations and checksums of the supported data sets."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One downloadable file and its published md5 checksum.

    Attributes:
        name: The file name, appended to a mirror's base URL to download it.
        md5: Its published md5 digest, 32 lowercase hex characters.

    Example:
        >>> from advjax.data import REGISTRY
        >>> REGISTRY["mnist"].file("t10k-labels-idx1-ubyte.gz").md5
        'ec29112dd5afa0611ce80d1b7f02629c'
    """

    name: str
    md5: str


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Where a data set's files come from and which files each split needs.

    Attributes:
        name: Registry key, e.g. ``"mnist"``.
        subdir: Folder of the data set below the data root.
        mirrors: Base URLs tried in order; a file's URL is ``mirror + file name``.
        files: Every file of the data set.
        splits: For each split, the names of the files it needs.

    Raises:
        KeyError: From :meth:`file` and :meth:`split_files`, for an unknown file or split.

    Example:
        >>> from advjax.data import REGISTRY
        >>> REGISTRY["cifar10"].split_files("test")[0].name
        'cifar-10-binary.tar.gz'
        >>> REGISTRY["mnist"].split_files("validation")
        Traceback (most recent call last):
            ...
        KeyError: 'validation'
    """

    name: str
    subdir: str
    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    splits: dict[str, tuple[str, ...]]

    def file(self, name: str) -> RemoteFile:
        """Return the :class:`RemoteFile` called ``name``.

        Args:
            name: The file name, e.g. ``"t10k-images-idx3-ubyte.gz"``.

        Returns:
            The registry entry with that name.

        Raises:
            KeyError: The data set has no such file.

        Example:
            >>> from advjax.data import REGISTRY
            >>> REGISTRY["cifar100"].file("cifar-100-binary.tar.gz").md5
            '03b5dce01913d631647c71ecec9e9cb8'
        """
        for remote in self.files:
            if remote.name == name:
                return remote
        raise KeyError(f"{self.name} has no file named {name!r}")

    def split_files(self, split: str) -> tuple[RemoteFile, ...]:
        """Return the files needed by ``split`` (raises ``KeyError`` for an unknown split).

        Args:
            split: ``"train"`` or ``"test"``.

        Returns:
            The :class:`RemoteFile` entries of the split, in order.

        Raises:
            KeyError: ``split`` is not one of the data set's splits.

        Example:
            >>> from advjax.data import REGISTRY
            >>> [f.name for f in REGISTRY["mnist"].split_files("test")]
            ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
        """
        return tuple(self.file(n) for n in self.splits[split])


_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Checksums: the published md5 sums, as used by torchvision (MNIST, Fashion-MNIST) and listed
# on https://www.cs.toronto.edu/~kriz/cifar.html (the binary versions of CIFAR-10/100).
REGISTRY: dict[str, DatasetSource] = {
    "mnist": DatasetSource(
        name="mnist",
        subdir="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        splits=_IDX_SPLITS,
    ),
    "fashion_mnist": DatasetSource(
        name="fashion_mnist",
        subdir="fashion_mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        splits=_IDX_SPLITS,
    ),
    "cifar10": DatasetSource(
        name="cifar10",
        subdir="cifar10",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),),
        splits={"train": ("cifar-10-binary.tar.gz",), "test": ("cifar-10-binary.tar.gz",)},
    ),
    "cifar100": DatasetSource(
        name="cifar100",
        subdir="cifar100",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),),
        splits={"train": ("cifar-100-binary.tar.gz",), "test": ("cifar-100-binary.tar.gz",)},
    ),
}
"""The downloadable data sets by name: their files, mirrors and published MD5 checksums."""
