import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest

import advjax.data as ad
from advjax.data import (
    DataError,
    MissingDataError,
    load_cifar10,
    load_cifar100,
    parse_cifar_records,
    read_cifar10_archive,
    read_cifar100_archive,
)


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _records(images, *label_columns):
    """Encode NHWC images + label columns as CIFAR binary records (labels first, CHW)."""
    chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    labels = np.stack(label_columns, axis=1).astype(np.uint8)
    return np.concatenate([labels, chw], axis=1).tobytes()


def _write_tar(path, members, extra=()):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def _cifar10_archive(path, per_batch=3, test=4):
    truth = {}
    members = {"cifar-10-batches-bin/batches.meta.txt": b"airplane\n"}
    for i in range(1, 6):
        x, y = _images(per_batch, i), (np.arange(per_batch) + i) % 10
        members[f"cifar-10-batches-bin/data_batch_{i}.bin"] = _records(x, y)
        truth[i] = (x, y)
    x, y = _images(test, 99), np.arange(test) % 10
    members["cifar-10-batches-bin/test_batch.bin"] = _records(x, y)
    truth["test"] = (x, y)
    return _write_tar(path, members), truth


def _cifar100_archive(path, train=6, test=5):
    truth = {}
    members = {}
    for split, n, seed in (("train", train, 1), ("test", test, 2)):
        x = _images(n, seed)
        coarse = np.arange(n) % 20
        fine = (np.arange(n) * 7 + 50) % 100
        members[f"cifar-100-binary/{split}.bin"] = _records(x, coarse, fine)
        truth[split] = (x, coarse, fine)
    return _write_tar(path, members), truth


def test_parse_records_chw_to_hwc():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30
    image[1, 2] = (1, 2, 3)
    x, y = parse_cifar_records(_records(image[None], np.array([5])), label_bytes=1)
    assert x.shape == (1, 32, 32, 3) and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0], image)
    assert y.tolist() == [[5]]


def test_parse_records_bad_sizes():
    with pytest.raises(DataError, match="whole number of 3073-byte records"):
        parse_cifar_records(bytes(3073 * 2 + 5), label_bytes=1)
    with pytest.raises(DataError, match="2 records, expected 3"):
        parse_cifar_records(bytes(3074 * 2), label_bytes=2, expected_records=3)


def test_cifar10_archive(tmp_path):
    path, truth = _cifar10_archive(tmp_path / "c10.tar.gz")
    train = read_cifar10_archive(path, "train", check_counts=False)
    assert train.images.shape == (15, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int32 and train.num_classes == 10
    assert train.name == "cifar10/train"
    np.testing.assert_array_equal(train.images, np.concatenate([truth[i][0] for i in range(1, 6)]))
    np.testing.assert_array_equal(train.labels, np.concatenate([truth[i][1] for i in range(1, 6)]))
    test = read_cifar10_archive(path, "test", check_counts=False)
    np.testing.assert_array_equal(test.images, truth["test"][0])
    np.testing.assert_array_equal(test.labels, truth["test"][1])


def test_cifar10_archive_official_counts_enforced(tmp_path):
    path, _ = _cifar10_archive(tmp_path / "c10.tar.gz")
    with pytest.raises(DataError, match="3 records, expected 10000"):
        read_cifar10_archive(path, "train")


@pytest.mark.parametrize("mode", ["fine", "coarse"])
def test_cifar100_archive(tmp_path, mode):
    path, truth = _cifar100_archive(tmp_path / "c100.tar.gz")
    for split in ("train", "test"):
        ds = read_cifar100_archive(path, split, label_mode=mode, check_counts=False)
        x, coarse, fine = truth[split]
        np.testing.assert_array_equal(ds.images, x)
        np.testing.assert_array_equal(ds.labels, fine if mode == "fine" else coarse)
        assert ds.num_classes == (100 if mode == "fine" else 20)
        assert ds.labels.dtype == np.int32


def test_cifar100_counts_and_label_mode(tmp_path):
    path, _ = _cifar100_archive(tmp_path / "c100.tar.gz")
    with pytest.raises(DataError, match="6 records, expected 50000"):
        read_cifar100_archive(path, "train")
    with pytest.raises(DataError, match="label_mode"):
        read_cifar100_archive(path, "train", label_mode="superclass", check_counts=False)
    with pytest.raises(DataError, match="Unknown split"):
        read_cifar100_archive(path, "val", check_counts=False)


def test_missing_member(tmp_path):
    path = _write_tar(tmp_path / "a.tar.gz", {"cifar-10-batches-bin/test_batch.bin": bytes(3073)})
    with pytest.raises(DataError, match="missing archive member"):
        read_cifar10_archive(path, "train", check_counts=False)


def test_symlink_member_rejected(tmp_path):
    link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    path = _write_tar(tmp_path / "l.tar.gz", {}, extra=[link])
    with pytest.raises(DataError, match="not a regular file"):
        read_cifar10_archive(path, "test", check_counts=False)


def test_label_out_of_range(tmp_path):
    members = {"cifar-10-batches-bin/test_batch.bin": _records(_images(2, 0), np.array([1, 10]))}
    path = _write_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(DataError, match="label 10 out of range"):
        read_cifar10_archive(path, "test", check_counts=False)


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_archive(tmp_path, cut):
    path, _ = _cifar10_archive(tmp_path / "c10.tar.gz")
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * cut)])
    with pytest.raises(DataError, match="delete it and download it again"):
        read_cifar10_archive(path, "test", check_counts=False)


def test_not_an_archive(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="cannot read the tar.gz archive"):
        read_cifar10_archive(path, "test", check_counts=False)
    with pytest.raises(MissingDataError):
        read_cifar10_archive(tmp_path / "absent.tar.gz", "test")


def test_load_cifar_through_registry(tmp_path, monkeypatch):
    """End to end: data dir layout + md5 verification + parsing (tiny archive, patched md5)."""
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    (root / "cifar100").mkdir(parents=True)
    p10, t10 = _cifar10_archive(root / "cifar10" / "cifar-10-binary.tar.gz")
    p100, t100 = _cifar100_archive(root / "cifar100" / "cifar-100-binary.tar.gz")
    for key, path in (("cifar10", p10), ("cifar100", p100)):
        src = ad.REGISTRY[key]
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        patched = dataclasses.replace(src, files=(ad.RemoteFile(path.name, md5),))
        monkeypatch.setitem(ad.REGISTRY, key, patched)
    # The official record counts are still enforced by the public loaders.
    with pytest.raises(DataError, match="expected 10000"):
        load_cifar10("test", data_dir=root, download=False)
    with pytest.raises(DataError, match="expected 10000"):
        load_cifar100("test", data_dir=root, download=False, label_mode="coarse")
    monkeypatch.setattr(ad._cifar, "CIFAR10_RECORDS_PER_MEMBER", 4)
    monkeypatch.setattr(ad._cifar, "CIFAR100_RECORDS", {"train": 6, "test": 5})
    ds = load_cifar10("test", data_dir=root, download=False)
    np.testing.assert_array_equal(ds.images, t10["test"][0])
    ds = load_cifar100("test", data_dir=root, download=False, label_mode="coarse")
    np.testing.assert_array_equal(ds.labels, t100["test"][1])


def test_cifar_loader_argument_errors(tmp_path):
    with pytest.raises(DataError, match="Unknown split 'validation' for cifar10"):
        load_cifar10("validation", data_dir=tmp_path, download=False)
    with pytest.raises(DataError, match="label_mode"):
        load_cifar100("train", data_dir=tmp_path, download=False, label_mode="both")
    with pytest.raises(MissingDataError, match="cifar-100-binary.tar.gz"):
        load_cifar100("train", data_dir=tmp_path, download=False)
