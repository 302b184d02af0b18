"""Image folders (a directory or a zip of split/<class>/<image>) and the CIFAR-10 JPEG set."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advjax import data

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CIFAR_ZIP = SHARED / "cifar10-jpeg" / "cifar10-jpeg75.zip"


def _folder(root: Path) -> Path:
    """train/test splits, classes 'zebra' and 'ant' (not in label order alphabetically)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("zebra", "ant"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, path.relative_to(folder).as_posix())
    return target


def test_a_folder_loads_in_a_stated_class_order_with_exact_pixels(tmp_path):
    root = _folder(tmp_path / "images")
    ds = data.load_image_folder(root, "train", cache_dir=tmp_path / "cache", order="sorted")
    assert ds.classes == ("ant", "zebra") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.images.shape == (6, 6, 5, 3) and ds.images.dtype == np.uint8
    expected = np.asarray(Image.open(root / "train" / "zebra" / "1.png"))
    np.testing.assert_array_equal(ds.images[4], expected)
    ordered = data.load_image_folder(
        root, "test", classes=["zebra", "ant"], cache_dir=tmp_path, order="sorted"
    )
    assert ordered.classes == ("zebra", "ant") and ordered.labels.tolist() == [0, 0, 1, 1]
    gray = data.load_image_folder(root, "test", mode="L", cache_dir=tmp_path)
    assert gray.images.shape == (4, 6, 5, 1)


def test_a_zip_gives_the_same_arrays_as_the_folder(tmp_path):
    root = _folder(tmp_path / "images")
    archive = _zip(root, tmp_path / "images.zip")
    from_folder = data.load_image_folder(root, "test", cache_dir=tmp_path / "a")
    from_zip = data.load_image_folder(archive, "test", cache_dir=tmp_path / "b")
    np.testing.assert_array_equal(from_folder.images, from_zip.images)
    np.testing.assert_array_equal(from_folder.labels, from_zip.labels)


def test_the_cache_is_keyed_by_the_contents(tmp_path):
    root = _folder(tmp_path / "images")
    cache = tmp_path / "cache"
    first = data.load_image_folder(root, "test", cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    again = data.load_image_folder(root, "test", cache_dir=cache)
    np.testing.assert_array_equal(first.images, again.images)
    Image.new("RGB", (5, 6), (7, 8, 9)).save(root / "test" / "ant" / "0.png")
    changed = data.load_image_folder(root, "test", cache_dir=cache, order="sorted")
    assert len(list(cache.glob("*.npz"))) == 2
    assert changed.images[0].tolist() == [[[7, 8, 9]] * 5] * 6


def test_the_default_order_is_one_fixed_permutation_so_any_prefix_is_a_fair_sample(tmp_path):
    root = _folder(tmp_path / "images")
    ordered = data.load_image_folder(root, "train", cache_dir=tmp_path, order="sorted")
    shuffled = data.load_image_folder(root, "train", cache_dir=tmp_path)
    again = data.load_image_folder(root, "train", cache_dir=tmp_path / "other")
    permutation = np.random.default_rng(0).permutation(len(ordered))
    np.testing.assert_array_equal(shuffled.images, ordered.images[permutation])
    np.testing.assert_array_equal(shuffled.labels, ordered.labels[permutation])
    np.testing.assert_array_equal(again.labels, shuffled.labels)
    with pytest.raises(data.DataError, match="order must be 'shuffled' or 'sorted'"):
        data.load_image_folder(root, "train", cache_dir=tmp_path, order="random")


def test_bad_files_are_reported_by_name(tmp_path):
    root = _folder(tmp_path / "images")
    (root / "test" / "ant" / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (9, 9)).save(root / "test" / "zebra" / "big.png")
    with pytest.raises(data.DataError) as error:
        data.load_image_folder(root, "test", cache_dir=tmp_path)
    message = str(error.value)
    assert "2 image(s)" in message and "test/ant/broken.png" in message
    assert "test/zebra/big.png (size (9, 9)" in message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "val"}, "no images under 'val'/<class>/; its splits: ['test', 'train']"),
        ({"split": "test", "classes": ["ant", "cat"]}, "for classes ['cat']"),
        ({"split": "test", "mode": "CMYK"}, "mode must be 'RGB' or 'L'"),
    ],
)
def test_wrong_splits_classes_and_modes_are_clear_errors(tmp_path, kwargs, message):
    root = _folder(tmp_path / "images")
    with pytest.raises(data.DataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        data.load_image_folder(root, cache_dir=tmp_path, **kwargs)
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_image_folder(tmp_path / "nowhere", "test")


def test_named_image_folder_and_a_cifar_zip_with_the_wrong_checksum(tmp_path):
    root = _folder(tmp_path / "images")
    assert len(data.load_named("image-folder", "train", str(root))) == 6
    fake = tmp_path / "cifar10-jpeg" / "cifar10-jpeg75.zip"
    fake.parent.mkdir()
    _zip(root, fake)
    with pytest.raises(data.DataError, match="not the published fbd10768"):
        data.load_named("cifar10-jpeg", "test", str(tmp_path))
    with pytest.raises(data.DataError, match="needs --data-dir"):
        data.load_named("cifar10-jpeg", "test")


@pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason="the shared CIFAR-10 JPEG zip is not here")
def test_the_shared_cifar10_jpeg_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVJAX_DATA", str(tmp_path))  # the cache goes to a temporary folder
    ds = data.load_named("cifar10-jpeg", "test", str(SHARED))
    assert len(ds) == 10_000 and ds.images.shape[1:] == (32, 32, 3)
    assert ds.classes[:3] == ("airplane", "automobile", "bird")
    assert np.bincount(ds.labels).tolist() == [1000] * 10
    # "the first 1,000 test images" hold every class, 100 +- 30 of each
    first = np.bincount(ds.labels[:1000], minlength=10)
    assert first.min() >= 70 and first.max() <= 130, first
    pixels = ds.images.reshape(-1, 3) / 255.0
    # the figures its README gives for the decoded test set
    np.testing.assert_allclose(pixels.mean(0), [0.4941, 0.4851, 0.4504], atol=6e-5)
    np.testing.assert_allclose(pixels.std(0), [0.2448, 0.2422, 0.2606], atol=6e-5)
    shutil.rmtree(tmp_path, ignore_errors=True)
