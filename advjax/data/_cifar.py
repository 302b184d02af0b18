"""Parsing of the official CIFAR-10 / CIFAR-100 *binary* archives (no pickle, no extraction).

CIFAR-10 records are 1 label byte + 3072 image bytes; CIFAR-100 records are 1 coarse label
byte + 1 fine label byte + 3072 image bytes. Images are stored channel-major (3 x 32 x 32,
red plane first) and are returned as NHWC.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Sequence

import numpy as np

from advjax.data._dataset import Dataset
from advjax.data._errors import DataError, MissingDataError

IMAGE_BYTES = 3 * 32 * 32

CIFAR10_MEMBERS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("cifar-10-batches-bin/test_batch.bin",),
}
CIFAR100_MEMBERS: dict[str, tuple[str, ...]] = {
    "train": ("cifar-100-binary/train.bin",),
    "test": ("cifar-100-binary/test.bin",),
}
# Official number of records per archive member.
CIFAR10_RECORDS_PER_MEMBER = 10_000
CIFAR100_RECORDS = {"train": 50_000, "test": 10_000}
CIFAR100_LABEL_MODES = ("fine", "coarse")
_CIFAR100_NUM_CLASSES = {"fine": 100, "coarse": 20}


def _corrupt(path: str | os.PathLike, what: str) -> DataError:
    return DataError(
        f"{path}: {what}. The archive is corrupt, truncated or not the official binary "
        "CIFAR archive; delete it and download it again."
    )


def read_tar_members(path: str | os.PathLike, names: Sequence[str]) -> dict[str, bytes]:
    """Read the named regular-file members of a ``.tar.gz`` archive in one streaming pass.

    Nothing is extracted to disk; links, directories and duplicate members are rejected.

    Args:
        path: The ``.tar.gz`` archive.
        names: Exact member paths to read.

    Returns:
        Mapping from member name to its bytes.

    Raises:
        DataError: The archive is missing, unreadable, or lacks one of ``names``.

    Example:
        >>> import io, tarfile, tempfile
        >>> from advjax.data import read_tar_members
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = tmp.name + "/a.tar.gz"
        >>> with tarfile.open(p, "w:gz") as tf:
        ...     info = tarfile.TarInfo("d/x.bin"); info.size = 2
        ...     tf.addfile(info, io.BytesIO(b"hi"))
        >>> read_tar_members(p, ["d/x.bin"])
        {'d/x.bin': b'hi'}
        >>> tmp.cleanup()
    """
    wanted = set(names)
    found: dict[str, bytes] = {}
    if not os.path.isfile(path):
        raise MissingDataError(f"{path} does not exist or is not a file; check the path.")
    try:
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                if member.name not in wanted:
                    continue
                if not member.isreg():
                    raise _corrupt(path, f"member {member.name} is not a regular file")
                if member.name in found:
                    raise _corrupt(path, f"member {member.name} appears twice")
                handle = archive.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise _corrupt(
                        path, f"member {member.name} has {len(data)} of {member.size} bytes"
                    )
                found[member.name] = data
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise _corrupt(
            path, f"cannot read the tar.gz archive ({type(err).__name__}: {err})"
        ) from err
    absent = [n for n in names if n not in found]
    if absent:
        raise _corrupt(path, f"missing archive member(s) {absent}")
    return found


def parse_cifar_records(
    raw: bytes,
    *,
    label_bytes: int,
    source: str | os.PathLike = "<bytes>",
    expected_records: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split CIFAR binary records into NHWC images and raw label bytes.

    Args:
        raw: Concatenated records of ``label_bytes`` label bytes + 3072 CHW image bytes.
        label_bytes: 1 for CIFAR-10, 2 for CIFAR-100 (coarse, fine).
        source: Name used in error messages.
        expected_records: If given, the exact number of records required.

    Returns:
        ``(images, labels)``: ``uint8`` arrays of shapes ``(N, 32, 32, 3)`` and
        ``(N, label_bytes)``.

    Raises:
        DataError: The length is not a whole number of records, or not the expected count.

    Example:
        >>> from advjax.data import parse_cifar_records
        >>> x, y = parse_cifar_records(bytes([7]) + bytes(3072), label_bytes=1)
        >>> x.shape, y.tolist()
        ((1, 32, 32, 3), [[7]])
    """
    record = label_bytes + IMAGE_BYTES
    if len(raw) % record != 0:
        raise _corrupt(source, f"{len(raw)} bytes is not a whole number of {record}-byte records")
    count = len(raw) // record
    if expected_records is not None and count != expected_records:
        raise _corrupt(source, f"{count} records, expected {expected_records}")
    table = np.frombuffer(raw, dtype=np.uint8).reshape(count, record)
    labels = np.array(table[:, :label_bytes])
    images = table[:, label_bytes:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    if labels.size and labels.max() >= num_classes:
        raise _corrupt(where, f"label {labels.max()} out of range [0, {num_classes})")
    return labels.astype(np.int32)


def _check_split(split: str, members: dict[str, tuple[str, ...]], dataset: str) -> None:
    if split not in members:
        raise DataError(f"Unknown split {split!r} for {dataset}; choose one of {sorted(members)}.")


def read_cifar10_archive(
    path: str | os.PathLike, split: str, *, check_counts: bool = True
) -> Dataset:
    """Read one split of ``cifar-10-binary.tar.gz``.

    Args:
        path: The archive (no checksum is checked here; see :func:`load_cifar10`).
        split: ``"train"`` (data_batch_1..5) or ``"test"`` (test_batch).
        check_counts: Require the official 10,000 records per batch file.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 32, 32, 3)`` and 10 classes.

    Raises:
        DataError: Unknown split, or a malformed archive.

    Example:
        >>> import io, tarfile, tempfile
        >>> from advjax.data import read_cifar10_archive
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = tmp.name + "/c10.tar.gz"
        >>> with tarfile.open(p, "w:gz") as tf:
        ...     info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin"); info.size = 3073
        ...     tf.addfile(info, io.BytesIO(bytes([3]) + bytes(3072)))
        >>> ds = read_cifar10_archive(p, "test", check_counts=False)
        >>> ds.images.shape, ds.labels.tolist()
        ((1, 32, 32, 3), [3])
        >>> tmp.cleanup()
    """
    _check_split(split, CIFAR10_MEMBERS, "cifar10")
    names = CIFAR10_MEMBERS[split]
    members = read_tar_members(path, names)
    images, labels = [], []
    for name in names:
        x, y = parse_cifar_records(
            members[name],
            label_bytes=1,
            source=f"{path}:{name}",
            expected_records=CIFAR10_RECORDS_PER_MEMBER if check_counts else None,
        )
        images.append(x)
        labels.append(_check_labels(y[:, 0], 10, f"{path}:{name}"))
    return Dataset(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        name=f"cifar10/{split}",
        num_classes=10,
    )


def read_cifar100_archive(
    path: str | os.PathLike,
    split: str,
    *,
    label_mode: str = "fine",
    check_counts: bool = True,
) -> Dataset:
    """Read one split of ``cifar-100-binary.tar.gz``.

    Args:
        path: The archive (no checksum is checked here; see :func:`load_cifar100`).
        split: ``"train"`` (train.bin) or ``"test"`` (test.bin).
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        check_counts: Require the official 50,000 / 10,000 records.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, 32, 32, 3)``.

    Raises:
        DataError: Unknown split or label mode, or a malformed archive.

    Example:
        >>> import io, tarfile, tempfile
        >>> from advjax.data import read_cifar100_archive
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = tmp.name + "/c100.tar.gz"
        >>> with tarfile.open(p, "w:gz") as tf:
        ...     info = tarfile.TarInfo("cifar-100-binary/test.bin"); info.size = 3074
        ...     tf.addfile(info, io.BytesIO(bytes([4, 42]) + bytes(3072)))
        >>> read_cifar100_archive(p, "test", label_mode="coarse", check_counts=False).labels
        array([4], dtype=int32)
        >>> tmp.cleanup()
    """
    _check_split(split, CIFAR100_MEMBERS, "cifar100")
    if label_mode not in CIFAR100_LABEL_MODES:
        raise DataError(
            f"Unknown label_mode {label_mode!r} for cifar100; choose 'fine' (100 classes) "
            "or 'coarse' (20 superclasses)."
        )
    (name,) = CIFAR100_MEMBERS[split]
    raw = read_tar_members(path, [name])[name]
    where = f"{path}:{name}"
    images, labels = parse_cifar_records(
        raw,
        label_bytes=2,
        source=where,
        expected_records=CIFAR100_RECORDS[split] if check_counts else None,
    )
    coarse = _check_labels(labels[:, 0], 20, where)
    fine = _check_labels(labels[:, 1], 100, where)
    suffix = "" if label_mode == "fine" else "-coarse"
    return Dataset(
        images=images,
        labels=fine if label_mode == "fine" else coarse,
        name=f"cifar100{suffix}/{split}",
        num_classes=_CIFAR100_NUM_CLASSES[label_mode],
    )
