"""Whole-image statistics computed block by block: min, max, mean, std and exact percentiles.

The pre-processing of a bundle often depends on the whole image (``scale_range`` percentiles,
``zero_mean_unit_variance``). These reductions read the image one block at a time, so the image
may be larger than memory (a zarr array, a TIFF read through tifffile's zarr store, a dask
array), and they give the same numbers whether the image is in memory or not: the blocks are
the same in both cases, and so is the arithmetic.

* **mean / std**: per block in float64 (numpy's pairwise sums), blocks merged with Chan et al.'s
  parallel update (exact up to float64 rounding);
* **percentiles**: *exact*, as ``numpy.percentile(x.astype(float64), q)`` (linear
  interpolation between the two order statistics around ``q``): the two order statistics are
  located by counting, block by block, how many values fall into each of 4096 bins of a value
  range that narrows to the bin holding the rank (integer images: one pass; float images: two
  or three), then read exactly from the few values left in that bin.

Each function reduces over ``dims`` and returns an array with ``keepdims`` shape (size 1 along
``dims``), in float64. ``transform`` (optional) is applied to every block before it is reduced:
the pre-processing steps before the one whose statistics are computed, told where the block
lies (a slice per axis) so that per-item or per-channel parameters apply to their part.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["mean_std", "minmax", "percentiles"]

#: Elements per block read (float64 working copies of a block stay near 32 MiB).
BLOCK_ELEMENTS = 1 << 22
_BINS = 4096
_GATHER = 1 << 20  # values left in a bin that are gathered and sorted

#: ``transform(block, region)``: applied to each block read; ``region`` locates it (a slice per axis).
Transform = Callable[[np.ndarray, tuple[slice, ...]], np.ndarray] | None


def _groups(shape: tuple[int, ...], dims: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Index tuples of the positions along the axes that are *not* reduced."""
    kept = [range(n) if d not in dims else range(1) for d, n in enumerate(shape)]
    return itertools.product(*kept)


def _blocks(
    array: Any, dims: Sequence[int], group: tuple[int, ...], transform: Transform
) -> Iterator[np.ndarray]:
    """The values of one group, block by block (flattened, in their own dtype: every comparison
    and sum below is exact in float64 without a float64 copy of the block), in a fixed order."""
    shape = array.shape
    dims = sorted(dims)
    sizes = [shape[d] for d in dims]
    # block: whole along the fastest reduced axes, split along the slowest ones
    step = [1] * len(dims)
    budget = BLOCK_ELEMENTS
    for i in range(len(dims) - 1, -1, -1):
        step[i] = max(1, min(sizes[i], budget))
        budget = max(1, budget // max(sizes[i], 1))
    starts = [range(0, n, s) for n, s in zip(sizes, step)]
    for corner in itertools.product(*starts):
        index: list[Any] = [slice(g, g + 1) for g in group]
        for d, start, s in zip(dims, corner, step):
            index[d] = slice(start, min(start + s, shape[d]))
        block = np.asarray(array[tuple(index)])
        if transform is not None:
            block = transform(block, tuple(index))
        yield block.ravel()


def _out(shape: tuple[int, ...], dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 if d in dims else n for d, n in enumerate(shape))


def minmax(array: Any, dims: Sequence[int], transform: Transform = None) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum over ``dims``."""
    shape = _out(array.shape, dims)
    lo, hi = np.empty(shape), np.empty(shape)
    for group in _groups(array.shape, dims):
        values = [(float(b.min()), float(b.max())) for b in _blocks(array, dims, group, transform) if b.size]
        lo[group], hi[group] = min(v[0] for v in values), max(v[1] for v in values)
    return lo, hi


def mean_std(array: Any, dims: Sequence[int], transform: Transform = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation over ``dims``."""
    shape = _out(array.shape, dims)
    means, stds = np.empty(shape), np.empty(shape)
    for group in _groups(array.shape, dims):
        n, mean, m2 = 0, 0.0, 0.0
        for block in _blocks(array, dims, group, transform):
            nb = block.size
            if not nb:
                continue
            mb = float(np.mean(block, dtype=np.float64))
            m2b = float(np.sum((block.astype(np.float64) - mb) ** 2))
            delta = mb - mean
            total = n + nb
            mean += delta * nb / total
            m2 += m2b + delta * delta * n * nb / total
            n = total
        means[group] = mean
        stds[group] = math.sqrt(m2 / n) if n else 0.0
    return means, stds


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's linear interpolation (``numpy.lib._function_base_impl._lerp``), for identical numbers."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _order_statistics(
    array: Any,
    dims: Sequence[int],
    group: tuple[int, ...],
    ranks: list[int],
    n: int,
    lo: float,
    hi: float,
    integer: bool,
    transform: Transform,
) -> dict[int, float]:
    """The values at ``ranks`` (0-based, in sorted order) of one group, found exactly."""
    found: dict[int, float] = {}
    for rank in ranks:
        if rank in found:
            continue
        below, low, high = 0, lo, hi  # values < low: `below`; the rank's value is in [low, high]
        while True:
            if low == high:
                found[rank] = low
                break
            if integer and high - low < _BINS:
                edges = np.arange(low, high + 2)  # one bin per integer value: exact
            else:
                edges = np.linspace(low, high, _BINS + 1)
            counts = np.zeros(len(edges) - 1, dtype=np.int64)
            for block in _blocks(array, dims, group, transform):
                # float64 scalars: a Python float against a float32 block would compare in float32
                inside = block[(block >= np.float64(low)) & (block <= np.float64(high))]
                counts += np.histogram(inside, bins=edges)[0]
            cumulative = below + np.cumsum(counts)
            k = int(np.searchsorted(cumulative, rank, side="right"))
            k = min(k, len(counts) - 1)
            new_below = below + (int(cumulative[k - 1] - below) if k else 0)
            new_low, new_high = float(edges[k]), float(edges[k + 1])
            in_bin = int(counts[k])
            last_bin = k == len(counts) - 1
            if integer and high - low < _BINS:
                found[rank] = new_low
                break
            if in_bin <= _GATHER or (new_low == low and new_high == high):
                values = []
                for block in _blocks(array, dims, group, transform):
                    low64, high64 = np.float64(new_low), np.float64(new_high)
                    mask = (block >= low64) & ((block <= high64) if last_bin else (block < high64))
                    values.append(block[mask])
                ordered = np.sort(np.concatenate(values).astype(np.float64))
                found[rank] = float(ordered[rank - new_below])
                break
            below, low, high = new_below, new_low, new_high
            if not last_bin:  # the bin is [low, high): exclude its upper edge next round
                high = float(np.nextafter(high, -np.inf))
    return found


def percentiles(
    array: Any, dims: Sequence[int], qs: Sequence[float], transform: Transform = None
) -> list[np.ndarray]:
    """Exact percentiles ``qs`` (0-100) over ``dims``, as ``numpy.percentile`` of the float64 values."""
    shape = _out(array.shape, dims)
    results = [np.empty(shape) for _ in qs]
    integer = np.issubdtype(np.dtype(getattr(array, "dtype", np.float64)), np.integer) and transform is None
    lows, highs = minmax(array, dims, transform)
    for group in _groups(array.shape, dims):
        n = math.prod(array.shape[d] for d in dims)
        positions = [q / 100 * (n - 1) for q in qs]
        ranks = sorted(
            {math.floor(p) for p in positions} | {min(math.floor(p) + 1, n - 1) for p in positions}
        )
        values = _order_statistics(
            array, dims, group, ranks, n, float(lows[group]), float(highs[group]), integer, transform
        )
        for result, p in zip(results, positions):
            below = math.floor(p)
            above = min(below + 1, n - 1)
            result[group] = _lerp(values[below], values[above], p - below)
    return results
