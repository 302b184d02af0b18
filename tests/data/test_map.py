"""``map_batches``: the one walk over a data set in fixed-size padded batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advjax.data import bucket_size, map_batches


@jax.jit
def _row_stats(x, y):
    return {"sum": x.sum(axis=1) + y, "first": x[:, 0]}


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 23),
    batch_size=st.integers(1, 9),
    bucket=st.booleans(),
    data=st.data(),
)
def test_outputs_equal_the_unbatched_function_on_any_rows(n, batch_size, bucket, data):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.float32) * 10
    rows = data.draw(st.none() | st.lists(st.integers(0, n - 1), max_size=2 * n).map(np.array))
    got = map_batches(_row_stats, [x, y], batch_size=batch_size, rows=rows, bucket=bucket)
    take = np.arange(n) if rows is None else rows.astype(np.int64)
    want = jax.tree.map(np.asarray, _row_stats(x[take], y[take])) if take.size else None
    assert got["sum"].shape == (take.size,)
    if want is not None:
        np.testing.assert_array_equal(got["sum"], want["sum"])
        np.testing.assert_array_equal(got["first"], want["first"])


def test_every_call_sees_one_compiled_size_and_padding_repeats_a_real_row():
    seen = []

    def record(x):
        seen.append(np.asarray(x).copy())
        return x

    out = map_batches(record, [np.arange(7)], batch_size=3)
    assert out.tolist() == list(range(7))
    assert [s.tolist() for s in seen] == [[0, 1, 2], [3, 4, 5], [6, 6, 6]]
    seen.clear()
    map_batches(record, [np.arange(7)], batch_size=8, rows=np.array([5, 2, 1]), bucket=True)
    assert [s.tolist() for s in seen] == [[5, 2, 1, 5]]


def test_batch_b_gets_its_own_folded_key():
    key = jax.random.key(3)
    draws = map_batches(
        lambda x, k: jax.random.uniform(k, (x.shape[0],)), [np.zeros(5)], batch_size=2, key=key
    )
    want = [jax.random.uniform(jax.random.fold_in(key, b), (2,)) for b in range(3)]
    np.testing.assert_array_equal(draws, np.concatenate(want)[:5])


def test_no_rows_gives_empty_outputs_of_the_right_structure():
    out = map_batches(_row_stats, [np.ones((4, 3)), np.ones(4)], batch_size=2, rows=[])
    assert out["sum"].shape == (0,) and out["sum"].dtype == np.float32
    empty = [np.ones((0, 3), np.float32), np.ones(0, np.float32)]
    out = map_batches(_row_stats, empty, batch_size=2, key=None)
    assert out["first"].shape == (0,)
    keyed = map_batches(
        lambda x, k: x * jax.random.uniform(k, x.shape),
        [np.ones((0, 2))],
        batch_size=3,
        key=jax.random.key(0),
    )
    assert keyed.shape == (0, 2)


def test_buckets_are_powers_of_two_capped_at_the_batch():
    assert [bucket_size(n, 10) for n in (0, 1, 2, 3, 5, 8, 9, 10, 11)] == [
        1, 1, 2, 4, 8, 8, 10, 10, 10
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arrays": [], "batch_size": 2}, "at least one array"),
        ({"arrays": [np.ones(3), np.ones(4)], "batch_size": 2}, "same leading size"),
        ({"arrays": [np.ones(3)], "batch_size": 0}, "batch_size"),
        ({"arrays": [np.ones(3)], "batch_size": 2, "rows": np.array([3])}, r"rows must index"),
        ({"arrays": [np.ones(3)], "batch_size": 2, "rows": np.array([-1])}, r"rows must index"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        map_batches(lambda *a: a[0], **kwargs)


def test_a_sharded_batch_is_rounded_up_to_the_device_count():
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    out = map_batches(jnp.negative, [np.arange(5.0)], batch_size=3, sharding=sharding)
    assert out.tolist() == [-0.0, -1.0, -2.0, -3.0, -4.0]
