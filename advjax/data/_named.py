"""Data sets by name, as the command line and run directories refer to them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from advjax.data._dataset import Dataset
from advjax.data._download import file_md5
from advjax.data._embedded import load_embedded_mnist
from advjax.data._errors import DataError
from advjax.data._idx import load_idx_pair
from advjax.data._image_folder import load_image_folder
from advjax.data._loaders import load_cifar10, load_mnist


@dataclasses.dataclass(frozen=True)
class NamedDataset:
    """A data set the command line can name: a loader per split and a one-line description.

    Attributes:
      name: the name used by ``--data`` and recorded in run configs.
      description: one line for ``advjax list``.
      load: ``(split, data_dir) -> Dataset``; ``data_dir`` may be ``None``.

    Example:
      >>> from advjax.data import NAMED_DATASETS
      >>> NAMED_DATASETS["mnist-embedded"].load("test", None).images.shape
      (2000, 28, 28, 1)
    """

    name: str
    description: str
    load: Callable[[str, str | None], Dataset]


def _mnist_5k(split: str, data_dir: str | None) -> Dataset:
    if data_dir is None:
        raise DataError(
            "--data mnist-5k needs --data-dir: the folder holding mnist/ with "
            "train-5k-*-idx*-ubyte.gz and the official t10k files."
        )
    if split == "test":
        return load_mnist("test", data_dir=data_dir, download=False)
    root = Path(data_dir) / "mnist"
    return load_idx_pair(
        root / "train-5k-images-idx3-ubyte.gz",
        root / "train-5k-labels-idx1-ubyte.gz",
        name="mnist-5k",
    )


CIFAR10_JPEG_ZIP = "cifar10-jpeg/cifar10-jpeg75.zip"
CIFAR10_JPEG_MD5 = "fbd10768cb74796a5601b4e64d0e6107"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _cifar10_jpeg(split: str, data_dir: str | None) -> Dataset:
    if data_dir is None:
        raise DataError(
            f"--data cifar10-jpeg needs --data-dir: the folder holding {CIFAR10_JPEG_ZIP}."
        )
    path = Path(data_dir) / CIFAR10_JPEG_ZIP
    if not path.is_file():
        raise DataError(f"{path} is missing; --data-dir must hold {CIFAR10_JPEG_ZIP}.")
    found = file_md5(path)
    if found != CIFAR10_JPEG_MD5:
        raise DataError(
            f"{path} has md5 {found}, not the published {CIFAR10_JPEG_MD5}: the file is "
            "damaged or another one; replace it."
        )
    return load_image_folder(path, split, classes=CIFAR10_CLASSES, name=f"cifar10-jpeg/{split}")


def _image_folder(split: str, data_dir: str | None) -> Dataset:
    if data_dir is None:
        raise DataError(
            "--data image-folder needs --data-dir: a folder or zip of split/<class>/<image>."
        )
    return load_image_folder(data_dir, split)


NAMED_DATASETS: dict[str, NamedDataset] = {
    entry.name: entry
    for entry in (
        NamedDataset(
            "mnist-embedded",
            "MNIST subset shipped in the package: 5,000 training, the first 2,000 official "
            "test images (no download)",
            lambda split, data_dir: load_embedded_mnist(split),
        ),
        NamedDataset(
            "mnist-5k",
            "the same 5,000 training images as IDX files, with all 10,000 official test "
            "images, read from --data-dir/mnist",
            _mnist_5k,
        ),
        NamedDataset(
            "mnist",
            "official MNIST (60,000 / 10,000), md5-checked, from --data-dir or downloaded",
            lambda split, data_dir: load_mnist(split, data_dir=data_dir),
        ),
        NamedDataset(
            "cifar10-jpeg",
            "all 60,000 CIFAR-10 images as JPEG quality 75 (not the canonical pixels: say so "
            "with every figure), from --data-dir/cifar10-jpeg/cifar10-jpeg75.zip, md5-checked",
            _cifar10_jpeg,
        ),
        NamedDataset(
            "image-folder",
            "your own images: --data-dir is a folder or zip of split/<class>/<image> "
            "(classes sorted by name)",
            _image_folder,
        ),
        NamedDataset(
            "cifar10",
            "official CIFAR-10 binary files (50,000 / 10,000), from --data-dir or downloaded",
            lambda split, data_dir: load_cifar10(split, data_dir=data_dir),
        ),
    )
}
"""The data sets the command line can name (``--data``), by name."""


def load_named(name: str, split: str, data_dir: str | None = None) -> Dataset:
    """Loads split ``split`` of the data set called ``name`` (see :data:`NAMED_DATASETS`).

    Args:
      name: a key of :data:`NAMED_DATASETS`, e.g. ``"mnist-embedded"``.
      split: ``"train"`` or ``"test"``.
      data_dir: where the files are, for the data sets that read files.

    Returns:
      The :class:`Dataset` (uint8 images, int32 labels).

    Raises:
      DataError: an unknown name or split, or missing files.

    Example:
      >>> from advjax.data import load_named
      >>> len(load_named("mnist-embedded", "train"))
      5000
      >>> load_named("imagenet", "train")
      Traceback (most recent call last):
        ...
      advjax.data._errors.DataError: unknown data set 'imagenet'; known: ['cifar10', ...
    """
    if name not in NAMED_DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {sorted(NAMED_DATASETS)}.")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'.")
    return NAMED_DATASETS[name].load(split, data_dir)
