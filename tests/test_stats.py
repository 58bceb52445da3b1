"""Whole-image statistics block by block (deepimagej.stats): exact percentiles, mean/std, lazy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej import stats


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 1000 elements: every reduction below reads many blocks."""
    monkeypatch.setattr(stats, "BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(stats, "_GATHER", 50)


def _arrays():
    rng = np.random.default_rng(0)
    yield "float32", rng.normal(10, 3, (2, 97, 61)).astype(np.float32)
    yield "ties", rng.integers(0, 7, (2, 80, 50)).astype(np.float32)
    yield "uint8", rng.integers(0, 256, (3, 64, 70), dtype=np.uint8)
    yield "uint16", (rng.gamma(2, 3000, (2, 90, 90))).clip(0, 65535).astype(np.uint16)
    yield "constant", np.full((1, 30, 30), 5.5, np.float32)


@pytest.mark.parametrize("name,array", list(_arrays()))
@pytest.mark.parametrize("qs", [(0.0, 100.0), (1.0, 99.8), (3.3, 50.0), (0.1, 99.99)])
def test_percentiles_are_exactly_numpys(name, array, qs):
    for dims in ((1, 2), (0, 1, 2)):
        expected = np.percentile(array.astype(np.float64), qs, axis=dims, keepdims=True)
        got = stats.percentiles(array, dims, qs)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("name,array", list(_arrays()))
def test_mean_std_minmax(name, array):
    dims = (1, 2)
    mean, std = stats.mean_std(array, dims)
    x = array.astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(axis=dims, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=dims, keepdims=True), rtol=1e-9, atol=1e-12)
    lo, hi = stats.minmax(array, dims)
    np.testing.assert_array_equal(lo, x.min(axis=dims, keepdims=True))
    np.testing.assert_array_equal(hi, x.max(axis=dims, keepdims=True))


def test_lazy_arrays_give_the_same_numbers(tmp_path):
    zarr = pytest.importorskip("zarr")
    array = np.random.default_rng(1).normal(0, 1, (2, 130, 70)).astype(np.float32)
    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=array.shape, chunks=(1, 32, 32), dtype="f4")
    z[:] = array
    for f in (stats.mean_std, stats.minmax):
        for a, b in zip(f(array, (1, 2)), f(z, (1, 2))):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(stats.percentiles(array, (1, 2), [2, 98]), stats.percentiles(z, (1, 2), [2, 98])):
        np.testing.assert_array_equal(a, b)


def test_transform_sees_each_block_and_where_it_lies():
    array = np.arange(2 * 40 * 30, dtype=np.float32).reshape(2, 40, 30)
    offsets = np.array([0.0, 1000.0]).reshape(2, 1, 1)

    def shift(block, region):
        return block + offsets[region[0]]  # a per-item parameter, taken over the block's own items

    got_mean, _ = stats.mean_std(array, (1, 2), shift)
    np.testing.assert_allclose(got_mean, (array + offsets).mean(axis=(1, 2), keepdims=True), rtol=1e-12)
    got = stats.percentiles(array, (1, 2), [10, 90], shift)
    expected = np.percentile((array + offsets).astype(np.float64), [10, 90], axis=(1, 2), keepdims=True)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
