import jax
import numpy as np
import pytest

from advjax.data import (
    DataError,
    Dataset,
    batches,
    epoch_permutation,
    epochs,
    num_batches,
    to_device,
)

N = 53


@pytest.fixture(scope="module")
def ds():
    # Image i is filled with the value i, its label is i: both identify the example.
    images = np.broadcast_to(np.arange(N, dtype=np.uint8)[:, None, None, None], (N, 3, 2, 1))
    images = np.ascontiguousarray(images)
    images[0] = 255  # make sure the maximum value is exercised
    return Dataset(images, np.arange(N, dtype=np.int32), "ids", N)


def _ids(it):
    return [np.asarray(y).tolist() for _, y in it]


def test_num_batches():
    assert num_batches(10, 5) == 2
    assert num_batches(11, 5) == 2
    assert num_batches(11, 5, drop_last=False) == 3
    assert num_batches(0, 5, drop_last=False) == 0
    assert num_batches(3, 5) == 0
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(DataError, match="batch_size"):
            num_batches(10, bad)
    with pytest.raises(DataError, match="n must"):
        num_batches(-1, 3)


def test_output_types_dtype_and_range(ds):
    x, y = next(batches(ds, 8, key=jax.random.key(0)))
    assert isinstance(x, jax.Array) and isinstance(y, jax.Array)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.shape == (8, 3, 2, 1) and y.shape == (8,)
    xs = np.concatenate([np.asarray(x) for x, _ in batches(ds, 8, key=jax.random.key(0))])
    assert xs.min() >= 0.0 and xs.max() == 1.0
    ids = np.concatenate(_ids(batches(ds, 8, key=jax.random.key(0))))
    np.testing.assert_allclose(xs, ds.images[ids].astype(np.float32) / 255.0, rtol=1e-6, atol=0)


def test_same_key_same_order_and_matches_definition(ds):
    key = jax.random.key(42)
    first = _ids(batches(ds, 10, key=key, epoch=3))
    second = _ids(batches(ds, 10, key=key, epoch=3))
    assert first == second
    expected = np.asarray(jax.random.permutation(jax.random.fold_in(key, 3), N))[:50]
    assert np.concatenate(first).tolist() == expected.tolist()
    assert np.concatenate(first).tolist() == epoch_permutation(key, 3, N)[:50].tolist()


def test_different_epochs_and_keys_differ(ds):
    key = jax.random.key(0)
    e0 = np.concatenate(_ids(batches(ds, 10, key=key, epoch=0)))
    e1 = np.concatenate(_ids(batches(ds, 10, key=key, epoch=1)))
    other = np.concatenate(_ids(batches(ds, 10, key=jax.random.key(1), epoch=0)))
    assert e0.tolist() != e1.tolist()
    assert e0.tolist() != other.tolist()


def test_each_example_once_per_epoch(ds):
    key = jax.random.key(7)
    all_ids = np.concatenate(_ids(batches(ds, 10, key=key, drop_last=False)))
    assert sorted(all_ids.tolist()) == list(range(N))
    sizes = [len(b) for b in _ids(batches(ds, 10, key=key, drop_last=False))]
    assert sizes == [10, 10, 10, 10, 10, 3]
    kept = np.concatenate(_ids(batches(ds, 10, key=key, drop_last=True)))
    assert len(kept) == 50 and len(set(kept.tolist())) == 50


@pytest.mark.parametrize("drop_last", [True, False])
def test_resume_equals_tail(ds, drop_last):
    key = jax.random.PRNGKey(3)  # legacy keys work too
    full = _ids(batches(ds, 7, key=key, epoch=2, drop_last=drop_last))
    for start in range(len(full) + 1):
        tail = _ids(batches(ds, 7, key=key, epoch=2, start_batch=start, drop_last=drop_last))
        assert tail == full[start:]


def test_no_shuffle_keeps_order(ds):
    ids = _ids(batches(ds, 20, key=None, shuffle=False, drop_last=False))
    assert np.concatenate(ids).tolist() == list(range(N))


def test_argument_validation_is_eager(ds):
    key = jax.random.key(0)
    with pytest.raises(DataError, match="batch_size"):
        batches(ds, 0, key=key)
    with pytest.raises(DataError, match="start_batch"):
        batches(ds, 10, key=key, start_batch=6)
    with pytest.raises(DataError, match="start_batch"):
        batches(ds, 10, key=key, start_batch=-1)
    with pytest.raises(DataError, match="epoch"):
        batches(ds, 10, key=key, epoch=-1)
    with pytest.raises(DataError, match="PRNG key"):
        batches(ds, 10, key=None)
    with pytest.raises(DataError, match="no batch"):
        batches(ds, N + 1, key=key)
    with pytest.raises(DataError, match="Dataset"):
        batches((ds.images, ds.labels), 10, key=key)
    assert len(list(batches(ds, N + 1, key=key, drop_last=False))) == 1


def test_epochs_helper_and_resume(ds):
    key = jax.random.key(5)
    full = [
        (b.epoch, b.batch, np.asarray(b.y).tolist()) for b in epochs(ds, 10, key=key, num_epochs=3)
    ]
    assert [(e, i) for e, i, _ in full] == [(e, i) for e in range(3) for i in range(5)]
    assert [y for e, _, y in full if e == 1] == _ids(batches(ds, 10, key=key, epoch=1))
    resumed = [
        (b.epoch, b.batch, np.asarray(b.y).tolist())
        for b in epochs(ds, 10, key=key, num_epochs=3, start_epoch=1, start_batch=3)
    ]
    assert resumed == full[8:]
    assert list(epochs(ds, 10, key=key, num_epochs=2, start_epoch=2)) == []
    with pytest.raises(DataError, match="start_epoch"):
        epochs(ds, 10, key=key, num_epochs=2, start_epoch=3)


def test_to_device():
    x = to_device(np.array([[0, 1, 254, 255]], np.uint8))
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.asarray(x), [[0, 1 / 255, 254 / 255, 1]], rtol=1e-6)
    assert float(x[0, 0]) == 0.0 and float(x[0, 3]) == 1.0
    all_values = np.asarray(to_device(np.arange(256, dtype=np.uint8)))
    assert all_values.min() == 0.0 and all_values.max() == 1.0
    assert np.all(np.diff(all_values) > 0)
    with pytest.raises(DataError, match="uint8"):
        to_device(np.zeros(3, np.float32))
