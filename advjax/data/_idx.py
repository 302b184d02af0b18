"""Reading and writing gzip-compressed IDX files (the MNIST / Fashion-MNIST format).

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the array payload in C order and big-endian byte order.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from advjax.data._dataset import Dataset
from advjax.data._errors import DataError, MissingDataError

# IDX dtype code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_FOR_KIND: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()
}
# Fixed gzip header: magic, deflate, no flags, mtime 0, XFL 2 (max compression), OS 255.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


def _corrupt(source: str | os.PathLike, what: str) -> DataError:
    return DataError(
        f"{source}: {what}. The file is corrupt, truncated or not an IDX .gz file; "
        "delete it and download it again."
    )


def parse_idx(raw: bytes, *, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    r"""Parse an *uncompressed* IDX byte string into a native-endian numpy array.

    Args:
        raw: The IDX bytes (magic number, dimensions, payload).
        source: Name used in error messages (usually the file path).

    Returns:
        Array with the shape and dtype recorded in the header (native byte order).

    Raises:
        DataError: Bad magic number, unknown dtype code, or a payload whose length does not
            match the dimensions exactly.

    Example:
        >>> from advjax.data import parse_idx
        >>> parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x08\x09").tolist()
        [7, 8, 9]
    """
    if len(raw) < 4:
        raise _corrupt(source, f"only {len(raw)} bytes, too short for the 4-byte IDX magic number")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0:
        raise _corrupt(source, f"bad IDX magic number {raw[:4].hex()} (must start with 0000)")
    if code not in _IDX_DTYPES:
        raise _corrupt(source, f"unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise _corrupt(source, "IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise _corrupt(source, f"header declares {ndim} dimensions but the file ends early")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        raise _corrupt(
            source,
            f"payload is {actual} bytes but dimensions {tuple(dims)} of {dtype.name} "
            f"need exactly {expected} bytes",
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def decompress_gz(blob: bytes, *, source: str | os.PathLike = "<bytes>") -> bytes:
    """Decompress gzip bytes, turning every corruption error into a :class:`DataError`.

    Args:
        blob: Gzip-compressed bytes.
        source: Name used in error messages.

    Returns:
        The decompressed bytes.

    Raises:
        DataError: ``blob`` is not gzip data or ends early.

    Example:
        >>> import gzip
        >>> from advjax.data import decompress_gz
        >>> decompress_gz(gzip.compress(b"abc"))
        b'abc'
        >>> decompress_gz(gzip.compress(b"abc")[:-4], source="x.gz")
        Traceback (most recent call last):
            ...
        advjax.data._errors.DataError: ...x.gz... gzip stream ends early ...
    """
    try:
        return gzip.decompress(blob)
    except EOFError as err:
        raise _corrupt(source, f"gzip stream ends early ({err})") from err
    except (gzip.BadGzipFile, zlib.error) as err:
        raise _corrupt(source, f"invalid gzip data ({err})") from err


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as err:
        raise MissingDataError(f"{path} does not exist; check the path.") from err
    except IsADirectoryError as err:
        raise DataError(f"{path} is a directory; pass the path of an IDX .gz file.") from err


def read_idx_gz(path: str | os.PathLike) -> np.ndarray:
    """Read a gzip-compressed IDX file of any dtype and rank.

    Args:
        path: Path of the ``.gz`` file.

    Returns:
        The array stored in the file (native byte order).

    Raises:
        DataError: The file is missing, not gzip, truncated, or not valid IDX.

    Example:
        >>> import tempfile, numpy as np
        >>> from advjax.data import read_idx_gz, write_idx_gz
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = tmp.name + "/a.gz"
        >>> _ = write_idx_gz(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
        >>> read_idx_gz(p).shape
        (2, 3)
        >>> tmp.cleanup()
    """
    return parse_idx(decompress_gz(_read_bytes(path), source=path), source=path)


def _check_uint8(array: np.ndarray, ndim: int, what: str, source: str | os.PathLike) -> None:
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise DataError(
            f"{source}: expected an IDX file of {what} (uint8, {ndim} dimensions) but found "
            f"{array.dtype.name} with shape {array.shape}; is this the right file?"
        )


def idx_images_from_bytes(blob: bytes, *, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode gzip IDX image bytes into a ``(N, H, W)`` uint8 array.

    Args:
        blob: Gzip-compressed IDX bytes.
        source: Name used in error messages.

    Returns:
        ``uint8`` array of shape ``(N, H, W)``.

    Raises:
        DataError: ``blob`` is not gzip, not valid IDX, or not a rank-3 uint8 array.

    Example:
        >>> import numpy as np
        >>> from advjax.data import idx_gz_bytes, idx_images_from_bytes
        >>> idx_images_from_bytes(idx_gz_bytes(np.zeros((2, 3, 3), np.uint8))).shape
        (2, 3, 3)
    """
    array = parse_idx(decompress_gz(blob, source=source), source=source)
    _check_uint8(array, 3, "images", source)
    return array


def idx_labels_from_bytes(blob: bytes, *, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode gzip IDX label bytes into a ``(N,)`` int32 array.

    Args:
        blob: Gzip-compressed IDX bytes.
        source: Name used in error messages.

    Returns:
        ``int32`` array of shape ``(N,)``.

    Raises:
        DataError: ``blob`` is not gzip, not valid IDX, or not a rank-1 uint8 array.

    Example:
        >>> import numpy as np
        >>> from advjax.data import idx_gz_bytes, idx_labels_from_bytes
        >>> idx_labels_from_bytes(idx_gz_bytes(np.array([3, 1], np.uint8))).tolist()
        [3, 1]
    """
    array = parse_idx(decompress_gz(blob, source=source), source=source)
    _check_uint8(array, 1, "labels", source)
    return array.astype(np.int32)


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX ``.gz`` image file into a ``(N, H, W)`` uint8 array.

    Args:
        path: Path of the file, e.g. ``t10k-images-idx3-ubyte.gz``.

    Returns:
        ``uint8`` array of shape ``(N, H, W)``.

    Raises:
        DataError: The file is missing, corrupt, or not a rank-3 uint8 IDX file.

    Example:
        >>> import tempfile, numpy as np
        >>> from advjax.data import read_idx_images, write_idx_gz
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = write_idx_gz(tmp.name + "/x.gz", np.zeros((4, 28, 28), np.uint8))
        >>> read_idx_images(p).shape
        (4, 28, 28)
        >>> tmp.cleanup()
    """
    return idx_images_from_bytes(_read_bytes(path), source=path)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX ``.gz`` label file into a ``(N,)`` int32 array.

    Args:
        path: Path of the file, e.g. ``t10k-labels-idx1-ubyte.gz``.

    Returns:
        ``int32`` array of shape ``(N,)``.

    Raises:
        DataError: The file is missing, corrupt, or not a rank-1 uint8 IDX file.

    Example:
        >>> import tempfile, numpy as np
        >>> from advjax.data import read_idx_labels, write_idx_gz
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = write_idx_gz(tmp.name + "/y.gz", np.array([5, 0, 4], np.uint8))
        >>> read_idx_labels(p).tolist()
        [5, 0, 4]
        >>> tmp.cleanup()
    """
    return idx_labels_from_bytes(_read_bytes(path), source=path)


def images_labels_to_dataset(
    images: np.ndarray, labels: np.ndarray, *, name: str, num_classes: int, source: str
) -> Dataset:
    """Combine ``(N, H, W)`` images and ``(N,)`` labels into a NHWC :class:`Dataset`.

    Args:
        images: ``uint8`` array ``(N, H, W)``.
        labels: Integer array ``(N,)``.
        name: Name of the dataset.
        num_classes: Size of the label space.
        source: Description of where the arrays came from, for error messages.

    Returns:
        A :class:`Dataset` with ``uint8`` images ``(N, H, W, 1)`` and ``int32`` labels ``(N,)``.

    Raises:
        DataError: The lengths differ, or a label lies outside ``[0, num_classes)``.

    Example:
        >>> import numpy as np
        >>> from advjax.data import images_labels_to_dataset
        >>> ds = images_labels_to_dataset(np.zeros((2, 5, 5), np.uint8), np.array([0, 1]),
        ...                               name="toy", num_classes=2, source="memory")
        >>> ds.images.shape
        (2, 5, 5, 1)
    """
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{source}: {images.shape[0]} images but {labels.shape[0]} labels; the two files do "
            "not belong together (use the matching images/labels pair of the same split)."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{source}: labels must lie in [0, {num_classes}) but range over "
            f"[{labels.min()}, {labels.max()}]; pass the right num_classes or check the file."
        )
    return Dataset(
        images=np.ascontiguousarray(images[..., None]),
        labels=labels.astype(np.int32),
        name=name,
        num_classes=num_classes,
    )


def load_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    name: str | None = None,
    num_classes: int = 10,
) -> Dataset:
    """Load any pair of IDX ``.gz`` image and label files (no checksum, no download).

    Use this for files with non-canonical names, such as a training subset.

    Args:
        images_path: IDX file of ``(N, H, W)`` uint8 images.
        labels_path: IDX file of ``(N,)`` uint8 labels.
        name: Dataset name; defaults to the images file name.
        num_classes: Size of the label space (labels must be below it).

    Returns:
        A :class:`Dataset` with images of shape ``(N, H, W, 1)``.

    Raises:
        DataError: A file is missing or corrupt, or the two files do not match.

    Example:
        >>> import tempfile, numpy as np
        >>> from advjax.data import load_idx_pair, write_idx_gz
        >>> tmp = tempfile.TemporaryDirectory()
        >>> d = tmp.name
        >>> xi = write_idx_gz(d + "/x.gz", np.zeros((3, 28, 28), np.uint8))
        >>> yi = write_idx_gz(d + "/y.gz", np.array([1, 2, 3], np.uint8))
        >>> ds = load_idx_pair(xi, yi)
        >>> ds.images.shape, ds.labels.dtype.name
        ((3, 28, 28, 1), 'int32')
        >>> tmp.cleanup()
    """
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    return images_labels_to_dataset(
        images,
        labels,
        name=name if name is not None else Path(images_path).name,
        num_classes=num_classes,
        source=f"{images_path} + {labels_path}",
    )


def idx_gz_bytes(array: np.ndarray, *, compresslevel: int = 9) -> bytes:
    """Encode an array as deterministic gzip-compressed IDX bytes (gzip mtime 0, no name).

    The output depends only on the array and the zlib library, so rebuilding a file gives
    byte-identical results.

    Args:
        array: Array of dtype uint8, int8, int16, int32, float32 or float64 with 1 to 255 dims.
        compresslevel: Deflate level 0-9.

    Returns:
        The ``.gz`` file contents.

    Raises:
        DataError: The dtype or shape cannot be stored in IDX.

    Example:
        >>> import numpy as np
        >>> from advjax.data import idx_gz_bytes
        >>> idx_gz_bytes(np.zeros(3, np.uint8)) == idx_gz_bytes(np.zeros(3, np.uint8))
        True
    """
    array = np.asarray(array)
    code = _CODE_FOR_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(
            f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, "
            "float32, float64."
        )
    if not 1 <= array.ndim <= 255:
        raise DataError(f"IDX needs 1 to 255 dimensions, got an array of shape {array.shape}.")
    if any(d >= 2**32 for d in array.shape):
        raise DataError(f"IDX dimension sizes must be < 2**32, got shape {array.shape}.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, -zlib.MAX_WBITS, 8)
    body = compressor.compress(raw) + compressor.flush()
    trailer = struct.pack("<II", zlib.crc32(raw) & 0xFFFFFFFF, len(raw) & 0xFFFFFFFF)
    return _GZIP_HEADER + body + trailer


def write_idx_gz(path: str | os.PathLike, array: np.ndarray, *, compresslevel: int = 9) -> Path:
    """Write ``array`` to ``path`` as a deterministic gzip-compressed IDX file.

    The file is written to a temporary name in the same directory and renamed into place,
    so a crash never leaves a half-written file under ``path``.

    Args:
        path: Destination path (conventionally ending in ``.gz``).
        array: Array to store (see :func:`idx_gz_bytes` for the allowed dtypes).
        compresslevel: Deflate level 0-9.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile, numpy as np
        >>> from advjax.data import read_idx_gz, write_idx_gz
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = write_idx_gz(tmp.name + "/z.gz", np.eye(2, dtype=np.float32))
        >>> read_idx_gz(p).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        >>> tmp.cleanup()
    """
    path = Path(path)
    blob = idx_gz_bytes(array, compresslevel=compresslevel)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
