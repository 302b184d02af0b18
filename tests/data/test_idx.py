import gzip
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from advjax.data import (
    DataError,
    MissingDataError,
    idx_gz_bytes,
    load_idx_pair,
    parse_idx,
    read_idx_gz,
    read_idx_images,
    read_idx_labels,
    write_idx_gz,
)

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    )
)
def test_idx_round_trip_bytes(array):
    out = parse_idx(gzip.decompress(idx_gz_bytes(array)))
    assert out.dtype == array.dtype
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_write_read_round_trip_file(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    xi = write_idx_gz(tmp_path / "x.gz", images)
    yi = write_idx_gz(tmp_path / "y.gz", labels)
    np.testing.assert_array_equal(read_idx_images(xi), images)
    got_labels = read_idx_labels(yi)
    assert got_labels.dtype == np.int32
    np.testing.assert_array_equal(got_labels, labels)
    assert read_idx_gz(xi).dtype == np.uint8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_write_is_deterministic_with_zero_mtime(tmp_path):
    array = np.arange(1000, dtype=np.uint8).reshape(10, 10, 10)
    a = write_idx_gz(tmp_path / "a.gz", array).read_bytes()
    b = write_idx_gz(tmp_path / "b.gz", array).read_bytes()
    assert a == b
    assert a[:2] == b"\x1f\x8b"
    assert a[4:8] == b"\x00\x00\x00\x00"  # gzip mtime field
    assert a[3] == 0  # no flags: no file name stored
    # Readable by the standard library / any gzip tool.
    assert gzip.decompress(a)[:4] == b"\x00\x00\x08\x03"


def test_big_endian_payload_matches_spec():
    raw = gzip.decompress(idx_gz_bytes(np.array([1, 256], dtype=np.int32)))
    assert raw == b"\x00\x00\x0c\x01" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x01\x00\x00\x01\x00"


def test_truncated_gzip_raises(tmp_path):
    blob = idx_gz_bytes(np.zeros((50, 28, 28), np.uint8) + np.arange(28, dtype=np.uint8))
    path = tmp_path / "t.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t\.gz.*delete it and download it again"):
        read_idx_images(path)


def test_corrupt_gzip_raises(tmp_path):
    blob = bytearray(idx_gz_bytes(np.random.default_rng(1).integers(0, 256, (20, 8, 8), np.uint8)))
    for i in range(20, 60):
        blob[i] ^= 0xFF
    path = tmp_path / "c.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"c\.gz.*delete it and download it again"):
        read_idx_images(path)


def test_crc_mismatch_raises(tmp_path):
    blob = bytearray(idx_gz_bytes(np.zeros(10, np.uint8)))
    blob[-8] ^= 0x01  # CRC32 field of the gzip trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="crc.gz"):
        read_idx_labels(path)


def test_not_gzip_raises(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")  # uncompressed IDX
    with pytest.raises(DataError, match="invalid gzip data"):
        read_idx_labels(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(MissingDataError, match="does not exist"):
        read_idx_images(tmp_path / "nope.gz")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "ends early"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", "payload is 2 bytes"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "payload is 2 bytes"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00", "need exactly 4 bytes"),
    ],
)
def test_bad_header_or_size(raw, message):
    with pytest.raises(DataError, match=message):
        parse_idx(raw, source="bad.idx")


def test_wrong_kind_of_file(tmp_path):
    labels = write_idx_gz(tmp_path / "labels.gz", np.zeros(5, np.uint8))
    images = write_idx_gz(tmp_path / "images.gz", np.zeros((5, 2, 2), np.uint8))
    floats = write_idx_gz(tmp_path / "f.gz", np.zeros((5, 2, 2), np.float32))
    with pytest.raises(DataError, match="expected an IDX file of images"):
        read_idx_images(labels)
    with pytest.raises(DataError, match="expected an IDX file of labels"):
        read_idx_labels(images)
    with pytest.raises(DataError, match="float32"):
        read_idx_images(floats)


def test_unsupported_dtype_for_writer(tmp_path):
    with pytest.raises(DataError, match="cannot store dtype"):
        write_idx_gz(tmp_path / "b.gz", np.zeros(3, np.uint16))
    with pytest.raises(DataError, match="1 to 255 dimensions"):
        idx_gz_bytes(np.uint8(3))


def test_load_idx_pair(tmp_path):
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    xi = write_idx_gz(tmp_path / "x.gz", images)
    yi = write_idx_gz(tmp_path / "y.gz", np.array([0, 9, 3], np.uint8))
    ds = load_idx_pair(xi, yi, name="toy")
    assert ds.images.shape == (3, 4, 4, 1)
    assert ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32
    assert ds.name == "toy" and ds.num_classes == 10
    np.testing.assert_array_equal(ds.images[..., 0], images)


def test_load_idx_pair_mismatched_counts_and_labels(tmp_path):
    xi = write_idx_gz(tmp_path / "x.gz", np.zeros((3, 4, 4), np.uint8))
    y2 = write_idx_gz(tmp_path / "y2.gz", np.array([0, 1], np.uint8))
    y_big = write_idx_gz(tmp_path / "yb.gz", np.array([0, 1, 12], np.uint8))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_idx_pair(xi, y2)
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        load_idx_pair(xi, y_big)


def test_load_idx_pair_on_shared_training_subset(shared_mnist):
    ds = load_idx_pair(
        shared_mnist / "train-5k-images-idx3-ubyte.gz",
        shared_mnist / "train-5k-labels-idx1-ubyte.gz",
    )
    assert ds.images.shape == (5000, 28, 28, 1)
    assert np.bincount(ds.labels, minlength=10).tolist() == [500] * 10


def test_reencoding_shared_test_labels_round_trips(shared_mnist):
    labels = read_idx_gz(shared_mnist / "t10k-labels-idx1-ubyte.gz")
    blob = idx_gz_bytes(labels)
    assert (
        hashlib.sha256(gzip.decompress(blob)).hexdigest()
        == hashlib.sha256(
            gzip.decompress((shared_mnist / "t10k-labels-idx1-ubyte.gz").read_bytes())
        ).hexdigest()
    )
