import hashlib
from pathlib import Path

import numpy as np
import pytest

import advjax.data as ad
from advjax.data import (
    ChecksumError,
    DataError,
    DatasetSource,
    MissingDataError,
    RemoteFile,
    dataset_dir,
    default_data_root,
    fetch_files,
    idx_gz_bytes,
    load_fashion_mnist,
    load_mnist,
    resolve_data_root,
)

MD5 = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731


@pytest.fixture
def toy(monkeypatch):
    """Register a two-file data set 'toy' whose files are returned as {name: bytes}."""
    files = {"a.bin": b"alpha" * 1000, "b.bin": bytes(range(256)) * 50}
    source = DatasetSource(
        name="toy",
        subdir="toy",
        mirrors=("http://127.0.0.1:9/",),
        files=tuple(RemoteFile(n, MD5(b)) for n, b in files.items()),
        splits={"train": ("a.bin", "b.bin"), "test": ("b.bin",)},
    )
    monkeypatch.setitem(ad.REGISTRY, "toy", source)
    return files


def _leftovers(directory: Path):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- data directory resolution


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("ADVJAX_DATA", raising=False)
    assert default_data_root() == tmp_path / "home" / ".cache" / "advjax"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_root() == tmp_path / "xdg" / "advjax"

    monkeypatch.setenv("ADVJAX_DATA", str(tmp_path / "env"))
    assert default_data_root() == tmp_path / "env"
    assert resolve_data_root() == tmp_path / "env"
    assert dataset_dir("mnist") == tmp_path / "env" / "mnist"

    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert dataset_dir("fashion_mnist", tmp_path / "arg") == tmp_path / "arg" / "fashion_mnist"
    assert dataset_dir("cifar10", str(tmp_path)) == tmp_path / "cifar10"
    assert dataset_dir("cifar100", str(tmp_path)) == tmp_path / "cifar100"


def test_empty_env_and_relative_xdg_are_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ADVJAX_DATA", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert default_data_root() == tmp_path / ".cache" / "advjax"


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(DataError, match="Unknown data set 'svhn'"):
        dataset_dir("svhn")
    with pytest.raises(DataError, match="Unknown split 'val' for mnist"):
        fetch_files("mnist", "val", data_dir=tmp_path)
    with pytest.raises(DataError, match="Unknown split 'valid'"):
        load_mnist("valid", data_dir=tmp_path)
    with pytest.raises(DataError, match="Unknown split"):
        load_fashion_mnist("training", data_dir=tmp_path)


# ---------------------------------------------------------------- downloads


def test_download_success_and_reuse(tmp_path, http_server, toy):
    for name, blob in toy.items():
        http_server.serve(name, blob)
    paths = fetch_files("toy", "train", data_dir=tmp_path, mirrors=[http_server.url])
    directory = tmp_path / "toy"
    assert paths == {"a.bin": directory / "a.bin", "b.bin": directory / "b.bin"}
    for name, blob in toy.items():
        assert paths[name].read_bytes() == blob
    assert _leftovers(directory) == []
    assert sorted(http_server.hits) == ["a.bin", "b.bin"]
    # Second call: verified local files, no network.
    fetch_files("toy", "train", data_dir=tmp_path, mirrors=[http_server.url])
    assert len(http_server.hits) == 2


def test_split_downloads_only_its_files(tmp_path, http_server, toy):
    http_server.serve("b.bin", toy["b.bin"])
    paths = fetch_files("toy", "test", data_dir=tmp_path, mirrors=http_server.url)
    assert list(paths) == ["b.bin"]
    assert not (tmp_path / "toy" / "a.bin").exists()


def test_download_checksum_mismatch(tmp_path, http_server, toy):
    http_server.serve("a.bin", b"something else entirely")
    http_server.serve("b.bin", toy["b.bin"])
    with pytest.raises(MissingDataError) as info:
        fetch_files("toy", "train", data_dir=tmp_path, mirrors=[http_server.url])
    message = str(info.value)
    assert "a.bin" in message and toy_md5(toy, "a.bin") in message
    assert "md5" in message and "discarded" in message
    assert not (tmp_path / "toy" / "a.bin").exists()
    assert (tmp_path / "toy" / "b.bin").read_bytes() == toy["b.bin"]  # the good one is kept
    assert _leftovers(tmp_path / "toy") == []


def toy_md5(toy, name):
    return MD5(toy[name])


def test_download_truncated_file(tmp_path, http_server, toy):
    blob = toy["a.bin"]
    http_server.serve("a.bin", blob[: len(blob) // 3])  # consistent headers, short file
    with pytest.raises(MissingDataError, match="a.bin"):
        fetch_files("toy", "train", data_dir=tmp_path, mirrors=[http_server.url])
    assert not (tmp_path / "toy" / "a.bin").exists()
    assert _leftovers(tmp_path / "toy") == []


def test_download_connection_cut_short(tmp_path, http_server, toy):
    blob = toy["a.bin"]
    http_server.serve("a.bin", blob[:1000], declared_length=len(blob))  # server lies and hangs up
    with pytest.raises(MissingDataError, match=r"after 1000 of 5000 bytes|IncompleteRead"):
        fetch_files("toy", "train", data_dir=tmp_path, mirrors=[http_server.url])
    assert not (tmp_path / "toy" / "a.bin").exists()
    assert _leftovers(tmp_path / "toy") == []


def test_existing_corrupt_file_is_not_overwritten(tmp_path, http_server, toy):
    for name, blob in toy.items():
        http_server.serve(name, blob)
    directory = tmp_path / "toy"
    directory.mkdir()
    (directory / "a.bin").write_bytes(b"corrupt")
    with pytest.raises(ChecksumError) as info:
        fetch_files("toy", "train", data_dir=tmp_path, mirrors=[http_server.url])
    message = str(info.value)
    assert str(directory / "a.bin") in message and "delete it" in message
    assert toy_md5(toy, "a.bin") in message
    assert (directory / "a.bin").read_bytes() == b"corrupt"
    assert http_server.hits == []  # checked before any download


def test_offline_error_lists_files_md5s_urls_and_directory(tmp_path, closed_port_url, toy):
    with pytest.raises(MissingDataError) as info:
        fetch_files("toy", "train", data_dir=tmp_path, mirrors=[closed_port_url], timeout=5)
    message = str(info.value)
    for name, blob in toy.items():
        assert name in message
        assert MD5(blob) in message
        assert closed_port_url + name in message
    assert str(tmp_path / "toy") in message
    assert _leftovers(tmp_path / "toy") == []


def test_timeout_is_reported(tmp_path, silent_server_url, toy):
    with pytest.raises(MissingDataError, match="timed out"):
        fetch_files("toy", "test", data_dir=tmp_path, mirrors=[silent_server_url], timeout=0.3)


def test_falls_back_to_next_mirror(tmp_path, http_server, closed_port_url, toy):
    http_server.serve("b.bin", toy["b.bin"])
    paths = fetch_files(
        "toy", "test", data_dir=tmp_path, mirrors=[closed_port_url, http_server.url.rstrip("/")]
    )
    assert paths["b.bin"].read_bytes() == toy["b.bin"]


def test_http_404_is_reported(tmp_path, http_server, toy):
    with pytest.raises(MissingDataError, match="404"):
        fetch_files("toy", "test", data_dir=tmp_path, mirrors=[http_server.url])


def test_download_false_lists_files(tmp_path, toy):
    with pytest.raises(MissingDataError) as info:
        fetch_files("toy", "train", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "download=False" in message
    assert "http://127.0.0.1:9/a.bin" in message and MD5(toy["a.bin"]) in message
    assert str(tmp_path / "toy") in message
    assert not (tmp_path / "toy").exists()  # nothing created


def test_bad_arguments(tmp_path, toy):
    with pytest.raises(DataError, match="mirrors"):
        fetch_files("toy", "train", data_dir=tmp_path, mirrors=[])
    with pytest.raises(DataError, match="timeout"):
        fetch_files("toy", "train", data_dir=tmp_path, timeout=0)


# ---------------------------------------------------------------- MNIST loaders


def _patch_mnist(monkeypatch, key, n_train=12, n_test=8):
    rng = np.random.default_rng(0)
    blobs = {
        "train-images-idx3-ubyte.gz": idx_gz_bytes(rng.integers(0, 256, (n_train, 28, 28), "u1")),
        "train-labels-idx1-ubyte.gz": idx_gz_bytes(rng.integers(0, 10, n_train).astype("u1")),
        "t10k-images-idx3-ubyte.gz": idx_gz_bytes(rng.integers(0, 256, (n_test, 28, 28), "u1")),
        "t10k-labels-idx1-ubyte.gz": idx_gz_bytes(rng.integers(0, 10, n_test).astype("u1")),
    }
    src = ad.REGISTRY[key]
    files = tuple(RemoteFile(f.name, MD5(blobs[f.name])) for f in src.files)
    patched = DatasetSource(src.name, src.subdir, src.mirrors, files, src.splits)
    monkeypatch.setitem(ad.REGISTRY, key, patched)
    return blobs


@pytest.mark.parametrize(
    ("key", "loader"), [("mnist", load_mnist), ("fashion_mnist", load_fashion_mnist)]
)
def test_idx_loaders_download_and_load(tmp_path, http_server, monkeypatch, key, loader):
    blobs = _patch_mnist(monkeypatch, key)
    for name, blob in blobs.items():
        http_server.serve(name, blob)
    ds = loader("train", data_dir=tmp_path, mirrors=[http_server.url])
    assert ds.images.shape == (12, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (12,) and ds.labels.dtype == np.int32
    assert ds.name == f"{key}/train" and ds.num_classes == 10
    assert (tmp_path / key / "train-images-idx3-ubyte.gz").is_file()
    ds = loader("test", data_dir=tmp_path, download=True, mirrors=[http_server.url])
    assert len(ds) == 8


def test_default_mirrors_are_canonical():
    mnist = ad.REGISTRY["mnist"]
    assert mnist.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert mnist.mirrors[1] == "http://yann.lecun.com/exdb/mnist/"
    assert ad.REGISTRY["fashion_mnist"].mirrors == (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )
    assert ad.REGISTRY["cifar10"].mirrors == ("https://www.cs.toronto.edu/~kriz/",)
    assert ad.REGISTRY["cifar10"].files[0].name == "cifar-10-binary.tar.gz"
    assert ad.REGISTRY["cifar100"].files[0].name == "cifar-100-binary.tar.gz"


def test_load_mnist_test_from_shared_dir(shared_mnist):
    ds = load_mnist("test", data_dir=shared_mnist.parent, download=False)
    assert ds.images.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.labels, minlength=10).sum() == 10000


def test_load_mnist_train_missing_in_shared_dir(shared_mnist):
    with pytest.raises(MissingDataError) as info:
        load_mnist("train", data_dir=shared_mnist.parent, download=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in message
    assert "train-labels-idx1-ubyte.gz" in message and "d53e105ee54ea40749a09fcbcd1e9432" in message
    assert str(shared_mnist) in message


def test_data_dir_pointing_at_dataset_folder_gets_a_hint(shared_mnist):
    with pytest.raises(MissingDataError, match="'mnist' subfolder"):
        load_mnist("test", data_dir=shared_mnist, download=False)
