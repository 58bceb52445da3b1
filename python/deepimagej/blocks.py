"""The unit of work of every run: a batch of blocks, cut from every input, through the engine, stitched.

A run (in this process, or spread over a Dask cluster by :mod:`deepimagej.distributed`) is a
list of batches (:func:`deepimagej.tiling.batches`); each batch is cut and stacked
(:func:`deepimagej.tiling.stack_batch`), run by :func:`call_model` and written by
:func:`write_batch` into the outputs' :class:`~deepimagej.tiling.Stitcher` s. The same batches
give the same numbers wherever they run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deepimagej import memory, ops, tiling
from deepimagej.bundle.spec import ModelSpec
from deepimagej.engines import Engine
from deepimagej.errors import BundleError, InputImageError

__all__ = ["apply_to_item", "call_model", "fixed_batch", "run_blocks", "write_batch"]

#: progress(done_tiles, total_tiles, elapsed_seconds, peak_rss_bytes)
ProgressCallback = Callable[[int, int, float, int], None]


def fixed_batch(spec: ModelSpec, engine: Engine) -> int | None:
    for t in spec.inputs:
        if not t.has_axis("b"):
            return 1
        size = t.axis("b").size
        if size is not None:
            return size
    return engine.fixed_batch_size


def apply_to_item(pipeline: ops.Pipeline, block: np.ndarray, item: int) -> np.ndarray:
    """Pre-processing of a window of one item (its statistics; the window's own pixels)."""
    region = tuple(slice(item, item + 1) if a == "b" else slice(None) for a in pipeline.axes)
    return pipeline.apply(block, region)


def finite_then(nan: str, pipeline: ops.Pipeline, block: np.ndarray, item: int) -> np.ndarray:
    """:func:`apply_to_item` on a block of an image read lazily, whose NaN/Inf pixels are refused
    (``nan="error"``) or replaced by zero (``nan="zero"``) here, block by block."""
    finite = np.isfinite(block)
    if not finite.all():
        if nan != "zero":
            bad = int(block.size - np.count_nonzero(finite))
            raise InputImageError(
                f"the image has NaN/infinite pixels ({bad} in the block of item {item} read now); clean the "
                "image, or replace them: --nan=zero (nan='zero' in Python)"
            )
        block = np.where(finite, block, np.zeros((), dtype=block.dtype))
    return apply_to_item(pipeline, block, item)


def run_blocks(
    spec: ModelSpec,
    engine: Engine,
    plan: tiling.TilePlan,
    geometry: tiling.ModelGeometry,
    n_items: int,
    batch_size: int,
    sources: Mapping[str, tuple[Any, str]],
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]],
    progress: ProgressCallback | None,
    report: Callable[[int, int], None] | None = None,
    allocate: Callable[..., Any] | None = None,
    post: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict[str, tuple[np.ndarray, str]]:
    """Cut every input, call the engine batch by batch and stitch every output (model axes, with ``b``).

    ``allocate(name, first_result, out_axes, maps)`` makes the array an output is stitched into
    (default: in memory); ``post[name]`` is applied to each kept block before it is written.
    """
    fixed = fixed_batch(spec, engine)
    stitchers: dict[str, tiling.Stitcher] = {}
    total = plan.n_tiles * n_items
    done = 0
    start = time.perf_counter()
    for jobs in tiling.batches(plan, n_items, batch_size):
        batch = tiling.stack_batch(plan, jobs, sources, fill_to=fixed, transforms=transforms)
        results = call_model(spec, engine, batch)
        for name, (result, out_axes) in results.items():
            if name not in stitchers:
                maps = geometry.outputs.get(name, {})
                if allocate is None:
                    target = _allocate(plan, maps, result, out_axes, n_items)
                else:
                    target = allocate(name, result, out_axes, maps)
                stitchers[name] = tiling.Stitcher(plan, target, out_axes, maps, (post or {}).get(name))
        write_batch(stitchers, batch, results)
        done += len(batch.jobs)
        if report is not None:
            report(done, total)
        elif progress is not None:
            progress(done, total, time.perf_counter() - start, memory.peak_rss_bytes())
    return {name: (s.out, s.axes) for name, s in stitchers.items()}


def call_model(spec: ModelSpec, engine: Engine, batch: tiling.Batch) -> dict[str, tuple[np.ndarray, str]]:
    """Run the engine on a batch: every output with its axes, with ``b`` (added where the model has none)."""
    feed = {}
    for t in spec.inputs:
        array = batch.arrays[t.name]
        feed[t.name] = array if t.has_axis("b") else array[0]
    results = engine(feed)
    out = {}
    for t in spec.outputs:
        result = np.asarray(results[t.name])
        out_axes = t.axis_names if t.has_axis("b") else "b" + t.axis_names
        if not t.has_axis("b"):
            result = result[np.newaxis]
        if result.ndim != len(out_axes):
            raise BundleError(
                f"{spec.source.name}: output '{t.name}' has {result.ndim} dimensions, its axes "
                f"'{t.axis_names}' name {len(t.axis_names)}"
            )
        out[t.name] = (result, out_axes)
    return out


def write_batch(
    stitchers: Mapping[str, tiling.Stitcher],
    batch: tiling.Batch,
    results: Mapping[str, tuple[np.ndarray, str]],
) -> None:
    """Stitch a batch's outputs (filled entries are skipped)."""
    for name, (result, out_axes) in results.items():
        b = out_axes.index("b")
        for k, (item, tile) in enumerate(batch.jobs):
            stitchers[name].write(tile, result.take(k, axis=b), {"b": item})


def _allocate(
    plan: tiling.TilePlan,
    maps: Mapping[str, tiling.AxisMap | None],
    first: np.ndarray,
    axes: str,
    n_items: int,
) -> np.ndarray:
    shape = list(first.shape)
    for i, a in enumerate(axes):
        if a == "b":
            shape[i] = n_items
        elif a in plan.spatial_axes and maps.get(a) is not None:
            shape[i] = plan.output_size(a, maps[a])  # type: ignore[arg-type]
    return np.empty(shape, dtype=first.dtype)
