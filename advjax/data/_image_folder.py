"""Image folders: ``split/<class>/<file>`` images in a directory or a zip, decoded once, cached."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from advjax.data._dataset import Dataset
from advjax.data._download import resolve_data_root
from advjax.data._errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
CACHE_VERSION = 1
"""Bumped whenever the decoding changes, so that older caches are not reused."""


class _Source:
    """The files of an image folder, read the same way from a directory or a zip."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self.zip = None
            names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        elif path.is_file() and zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            names = [i.filename for i in self.zip.infolist() if not i.is_dir()]
        else:
            raise DataError(
                f"{path} is neither a folder nor a zip file; give a folder or zip holding "
                "split/<class>/<image> files."
            )
        self.names = sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES))

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(name)
        return (self.path / name).read_bytes()

    def digest(self) -> str:
        """SHA-256 of the source's contents (the zip's bytes, or every image file's)."""
        digest = hashlib.sha256()
        if self.zip is not None:
            with open(self.path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
        for name in self.names:
            digest.update(name.encode() + b"\0")
            digest.update(hashlib.sha256(self.read(name)).digest())
        return digest.hexdigest()


def _split_files(source: _Source, split: str) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {}
    for name in source.names:
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == split:
            by_class.setdefault(parts[1], []).append(name)
    return by_class


def _decode(data: bytes, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode), dtype=np.uint8)


def _decode_all(source: _Source, files: list[tuple[str, int]], mode: str):
    images, bad, shape = [], [], None
    for name, _ in files:
        try:
            array = _decode(source.read(name), mode)
        except Exception as error:  # Pillow raises several types for broken files
            bad.append(f"{name} ({type(error).__name__}: {error})")
            continue
        if array.ndim == 2:
            array = array[..., None]
        if shape is None:
            shape = array.shape
        if array.shape != shape:
            bad.append(f"{name} (size {array.shape[:2]}, the others {shape[:2]})")
            continue
        images.append(array)
    if bad:
        listed = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(
            f"{len(bad)} image(s) in {source.path} cannot be used: {listed}. "
            "Remove or replace them."
        )
    return np.stack(images)


def load_image_folder(
    source: str | os.PathLike,
    split: str,
    *,
    classes: Sequence[str] | None = None,
    mode: str = "RGB",
    name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    order: str = "shuffled",
) -> Dataset:
    """Loads ``split/<class>/<file>`` images (JPEG, PNG, ...) from a folder or a zip.

    Images are decoded once with Pillow into a uint8 :class:`Dataset` and
    cached as a NumPy file (read back with ``allow_pickle=False``) whose name
    holds the SHA-256 of the source's contents, so a changed source is never
    served from an old cache.

    Folders group images by class, so in file order the first ``N`` examples
    would all be of the first classes, and "the first 1,000 test images" a
    biased sample. By default the examples are therefore put in one fixed
    pseudo-random order (a permutation drawn with seed 0 from the class-then-
    file-name order), the same on every machine, so any prefix is a uniform
    sample of the split.

    Args:
      source: a folder, or a zip file, holding ``<split>/<class>/<image>``.
      split: the top-level folder to read, e.g. ``"train"`` or ``"test"``.
      classes: the class folder names in label order; ``None``: the folders of
        ``split``, sorted alphabetically (say so when reporting labels).
      mode: Pillow's mode for every image: ``"RGB"`` (``C = 3``) or ``"L"`` (``C = 1``).
      name: the data set's name (default: the source's file name, and the split).
      cache_dir: where decoded arrays are cached (default: the data root's
        ``image-folder-cache``, see :func:`advjax.data.resolve_data_root`).
      order: ``"shuffled"`` (the fixed permutation above) or ``"sorted"``
        (by class, then by file name).

    Returns:
      A :class:`Dataset` with ``classes`` set.

    Raises:
      DataError: an unknown ``order``, the source is missing or not a folder/zip, the split or a
        class has no images, an image cannot be decoded or has another size
        (every such file is named), or ``classes`` names a folder that is absent.

    Example:
      >>> import pathlib, tempfile
      >>> import numpy as np
      >>> from PIL import Image
      >>> from advjax.data import load_image_folder
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     for cls, value in (("cat", 10), ("dog", 200)):
      ...         folder = pathlib.Path(tmp, "data", "test", cls)
      ...         folder.mkdir(parents=True)
      ...         Image.new("RGB", (4, 4), (value,) * 3).save(folder / "0.png")
      ...     ds = load_image_folder(pathlib.Path(tmp, "data"), "test", cache_dir=tmp,
      ...                            order="sorted")
      >>> ds.classes, ds.labels.tolist(), ds.images.shape, int(ds.images[1, 0, 0, 0])
      (('cat', 'dog'), [0, 1], (2, 4, 4, 3), 200)
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"image folder {path} does not exist.")
    if mode not in ("RGB", "L"):
        raise DataError(f"mode must be 'RGB' or 'L', got {mode!r}.")
    if order not in ("shuffled", "sorted"):
        raise DataError(f"order must be 'shuffled' or 'sorted', got {order!r}.")
    files_source = _Source(path)
    by_class = _split_files(files_source, split)
    if not by_class:
        splits = sorted({n.split("/")[0] for n in files_source.names if n.count("/") == 2})
        raise DataError(
            f"{path} has no images under {split!r}/<class>/; its splits: {splits}. "
            "The layout is split/<class>/<image>."
        )
    class_names = tuple(sorted(by_class)) if classes is None else tuple(classes)
    missing = [c for c in class_names if c not in by_class]
    if missing:
        raise DataError(f"{path}/{split} has no folder (or no images) for classes {missing}.")
    files = [(f, label) for label, c in enumerate(class_names) for f in sorted(by_class[c])]
    name = name or f"{path.stem}/{split}"
    key = hashlib.sha256(
        f"{CACHE_VERSION}|{files_source.digest()}|{split}|{class_names}|{mode}".encode()
    ).hexdigest()[:24]
    cache_root = Path(cache_dir) if cache_dir else resolve_data_root() / "image-folder-cache"
    cache = cache_root / f"{path.stem}-{split}-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                images, labels = stored["images"], stored["labels"]
            return _in_order(Dataset(images, labels, name, len(class_names), class_names), order)
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache is rebuilt below
    images = _decode_all(files_source, files, mode)
    labels = np.asarray([label for _, label in files], np.int32)
    dataset = Dataset(images, labels, name, len(class_names), class_names)
    cache_root.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(cache.name + ".tmp.npz")
    np.savez(temporary, images=images, labels=labels)
    temporary.replace(cache)
    return _in_order(dataset, order)


def _in_order(dataset: Dataset, order: str) -> Dataset:
    """``dataset`` as stored (class, then file name), or in the fixed seed-0 permutation."""
    if order == "sorted":
        return dataset
    return dataset.subset(np.random.default_rng(0).permutation(len(dataset)), name=dataset.name)
