"""The memory model of a bundle, and the budget that sizes tiles and batches.

A model call needs memory for its activations, roughly ``fixed + per_pixel * pixels`` where
``pixels`` counts every input pixel of the call (tile pixels times batch). The two numbers of a
bundle come from, in order of preference:

1. a **measurement**: :func:`measure` runs the real model twice on each of two small inputs in
   a fresh process and reads the peak resident memory (Linux ``VmHWM``) after each size (a
   runtime's second call of a shape may take more than its first); the result is cached per
   weights file (its sha256) under the user cache folder, so it is paid once;
2. the **bundle's own** measured peak (DeepImageJ ``MemoryPeak`` at its test image size);
3. a conservative **default** (:data:`DEFAULT_PER_PIXEL`).

:func:`choose` then picks the tile size and batch for an image: the plan that computes the
fewest pixels (halo included, plus a per-call cost) among those whose estimated peak fits the
budget, and among the plans within :data:`TIME_SLACK` of it the one that needs the least
memory. The budget covers the whole process (what is already resident, the image and its
outputs, the model call): ``max_memory`` when the caller gives one; else
:func:`default_budget`, half of the memory available, with model calls of at most
:data:`DEFAULT_CALL_BYTES` -- a larger call is not faster on a CPU (the halo recomputed around
tiles of that size costs a few percent), so a default run does not hold gigabytes of
activations to gain nothing.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from deepimagej import tiling
from deepimagej.bundle.spec import ModelSpec, WeightsSpec
from deepimagej.checksums import sha256_of
from deepimagej.errors import DeepImageJError, InputImageError
from deepimagej.outputs import write_text_atomic
from deepimagej.paths import cache_dir

__all__ = [
    "Choice",
    "MemoryModel",
    "choose",
    "default_budget",
    "estimate",
    "format_bytes",
    "measure",
    "parse_size",
    "peak_rss_bytes",
    "rss_bytes",
]

#: Activation bytes per input pixel assumed for a model that was never measured (2D U-Nets
#: measured here: 300-450; 3D U-Nets per voxel: up to ~1000).
DEFAULT_PER_PIXEL = 1024.0
#: Fraction of the memory available at the start of a run that a run may use by default.
DEFAULT_FRACTION = 0.5
#: Largest model call (activation bytes) of a run without ``max_memory``: a 2D U-Net's tiles are
#: then about 1000-1500 pixels wide, where the halo recomputation costs a few percent (pancreatic
#: U-Net on 2048x2048: 1.06x one untiled call at 1.23 GiB peak; 768 MiB gave 9 tiles, 1.18x).
DEFAULT_CALL_BYTES = 1024 * 2**20
#: A plan may take this much longer (estimated) than the fastest one that fits, to use less memory.
TIME_SLACK = 0.03
#: Cost of one model call, in pixel-equivalents of computation (framework dispatch, copies).
CALL_COST_PIXELS = 25_000
#: Measured per-pixel memory is raised by this factor: the probe's small calls under-estimate the
#: allocator overhead of large ones by 5-10 % (pancreatic U-Net: 437 vs 477 bytes per pixel).
SAFETY = 1.10
#: Share of a budget kept back from the plan: what no model of the call sees (allocator
#: fragmentation, the writer's buffers, the interpreter's own growth). A 900 MB budget planned to
#: the byte peaked 2.5 % over it on another machine.
HEADROOM = 0.05
#: Tiles smaller than this many pixels are batched together (larger tiles gain nothing on a CPU).
BATCH_PIXELS = 256 * 256 * 4
MAX_BATCH = 16
_PROBE_VERSION = 4


def parse_size(text: str | float) -> int:
    """``"1.5G"``, ``"800M"``, ``"2GiB"``, ``"512mb"``, ``1e9`` -> bytes (powers of 1024).

    Raises:
        InputImageError: not a size.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise InputImageError(f"memory budget must be positive, got {text}")
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise InputImageError(f"memory budget '{text}' is not a size; write e.g. 1.5G, 800M or 2GiB")
    factor = 1024 ** "_kmgt".index(match.group(2) or "_")
    return int(float(match.group(1)) * factor)


def format_bytes(n: float) -> str:
    """``1610612736`` -> ``"1.50 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # pragma: no cover


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where there is none)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    """Resident memory of this process now, in bytes."""
    value = _status("VmRSS")
    if value:
        return value
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, in bytes (0 where unknown)."""
    value = _status("VmHWM")
    if value:
        return value
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):  # Windows
        import psutil

        return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))


def default_budget() -> int:
    """The default memory budget: what this process holds now plus a fraction of what is available."""
    import psutil

    return int(rss_bytes() + DEFAULT_FRACTION * psutil.virtual_memory().available)


@dataclass(frozen=True)
class MemoryModel:
    """Memory of one model call: ``fixed + per_pixel * pixels`` bytes.

    Attributes:
        per_pixel: bytes per input pixel of the call (tile pixels times batch).
        fixed: bytes per call whatever its size.
        source: ``"measured"``, ``"bundle"`` or ``"default"``.
        loaded: resident bytes of a fresh process once the model is loaded (measured only; 0
            when unknown): what a run costs before its first call.
    """

    per_pixel: float
    fixed: float = 0.0
    source: str = "default"
    loaded: float = 0.0

    def call_bytes(self, pixels: int) -> float:
        return self.fixed + self.per_pixel * pixels


def _cache_file(weights: WeightsSpec) -> Path | None:
    if weights.path is None or not weights.path.exists():
        return None
    digest: str | None
    if weights.path.is_file():
        digest = sha256_of(weights.path)
    else:  # a SavedModel folder: its graph file stands for it
        pb = weights.path / "saved_model.pb"
        digest = sha256_of(pb) if pb.is_file() else None
    if digest is None:
        return None
    return cache_dir() / "memory" / f"{weights.format}-{digest[:24]}-v{_PROBE_VERSION}.json"


def _bundle_peak(spec: ModelSpec) -> MemoryModel | None:
    """DeepImageJ's measured ``MemoryPeak`` at its test input size, as bytes per pixel."""
    peak = _parse_peak(spec.memory_peak)
    size = spec.extra.get("test_input_size")
    if peak is None or not isinstance(size, str):
        return None
    numbers = [int(n) for n in re.findall(r"\d+", size)]
    pixels = math.prod(n for n in numbers[:3] if n > 1) if numbers else 0
    if pixels < 64 * 64:
        return None
    return MemoryModel(per_pixel=peak / pixels, source="bundle")


def _parse_peak(text: str | None) -> float | None:
    if not text:
        return None
    match = re.search(r"([0-9]+(?:[.,][0-9]+)?)\s*([kmgt]?)b", text.lower())
    if not match:
        return None
    return float(match.group(1).replace(",", ".")) * 1024 ** "_kmgt".index(match.group(2) or "_")


def estimate(spec: ModelSpec, weights: WeightsSpec) -> MemoryModel:
    """The best memory model known without running anything (cached measurement, bundle, default)."""
    cached = _cache_file(weights)
    if cached is not None and cached.is_file():
        try:
            data = json.loads(cached.read_text())
            return MemoryModel(
                float(data["per_pixel"]), float(data["fixed"]), "measured", float(data["loaded"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is measured again
    return _bundle_peak(spec) or MemoryModel(DEFAULT_PER_PIXEL)


def measure(
    spec: ModelSpec, weights: WeightsSpec, *, trust_code: bool = False, timeout: float = 300
) -> MemoryModel:
    """Measure the memory model of ``weights`` in a fresh process (cached per weights file).

    The probe loads the model, runs it on a small and a larger valid input (every input
    tensor) and reads the process's peak resident memory after each call.

    Raises:
        DeepImageJError: the probe failed (its one-line message).
    """
    cached = _cache_file(weights)
    known = estimate(spec, weights)
    if known.source == "measured":
        return known
    cmd = [sys.executable, "-m", "deepimagej.memory", str(spec.source), weights.format]
    if trust_code:
        cmd.append("--trust-code")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise DeepImageJError(
            f"{spec.source.name}: measuring the model's memory took over {timeout:.0f} s"
        ) from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        reason = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeepImageJError(f"{spec.source.name}: measuring the model's memory failed ({reason})")
    data = json.loads(lines[-1])
    model = MemoryModel(
        SAFETY * float(data["per_pixel"]), SAFETY * float(data["fixed"]), "measured", float(data["loaded"])
    )
    if cached is not None:
        write_text_atomic(cached, json.dumps(asdict(model)))
    return model


# --------------------------------------------------------------------------------------------
# choosing tile size and batch
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """Tile size and batch chosen for a run.

    Attributes:
        tile: model input size per spatial axis (to pass to :func:`deepimagej.tiling.plan_for_spec`).
        batch: jobs per model call.
        n_tiles: tiles per item.
        estimated_peak: estimated peak resident memory of the whole process, in bytes.
        budget: the budget it was chosen under, in bytes.
        model: the memory model used.
    """

    tile: dict[str, int]
    batch: int
    n_tiles: int
    estimated_peak: int
    budget: int
    model: MemoryModel


def _axis_candidates(
    spec: ModelSpec, axis: str, size: int, geometry: tiling.ModelGeometry
) -> list[tuple[int, int, int]]:
    """``(tiles, largest window, pixels of all windows)`` along one axis, per distinct tile count.

    Each candidate is a real one-axis plan (the rules of :func:`deepimagej.tiling.plan_for_spec`),
    so the counts and sizes are exact.
    """
    border = tiling.zero_border(spec).get(axis, 0)
    dij = spec.deepimagej_tiling if spec.kind == "deepimagej" else None

    def plan(q: int | None) -> tiling.TilePlan:
        request = None if q is None else {axis: q}
        if dij is not None:
            return tiling.plan_deepimagej({axis: size}, axis, dij, patch=request, border={axis: border})
        return tiling.plan_tiles(
            {axis: size},
            axis,
            min_size={axis: geometry.min_size.get(axis, 1)},
            step={axis: geometry.step.get(axis, 1)},
            halo={axis: geometry.halo[axis]},
            fixed={k: v for k, v in geometry.fixed.items() if k == axis},
            tile=request,
            border={axis: border},
        )

    def entry(p: tiling.TilePlan) -> tuple[int, int, int]:
        return (
            p.n_tiles,
            p.tile_shape[0],
            sum(t.input_slices[0].stop - t.input_slices[0].start for t in p.tiles),
        )

    single = plan(None)
    found = {single.n_tiles: entry(single)}
    if axis in geometry.fixed or axis in geometry.whole or (dij is not None and dij.fixed_patch):
        return sorted(found.values())
    halo = dij.padding if dij is not None else geometry.halo[axis]
    step = dij.minimum_size if dij is not None else max(geometry.step.get(axis, 1), 1)
    extended = size + 2 * border
    for n in _TILE_COUNTS:
        if n >= single.n_tiles * 2 and n > extended // max(step, 1):
            break
        q = math.ceil(extended / n) + 2 * halo  # n blocks with their halo on both sides
        candidate = None
        for _ in range(8):  # the smallest valid size at or above q that needs at most n tiles
            if dij is not None:
                q = math.ceil(q / step) * step
            try:
                candidate = plan(q)
            except tiling.TilingError:
                candidate = None
                break
            if candidate.n_tiles <= n:
                break
            q = candidate.tile_shape[0] + step
        if candidate is None:
            break
        count = candidate.n_tiles
        if count not in found or candidate.tile_shape[0] < found[count][1]:
            found[count] = entry(candidate)
        if candidate.tile_shape[0] - 2 * halo <= 2 * step:
            break
    return sorted(found.values())


#: Tile counts per axis tried by :func:`choose` (every count up to 8, then sparser).
_TILE_COUNTS = (
    *range(2, 9),
    10,
    12,
    14,
    16,
    20,
    24,
    28,
    32,
    40,
    48,
    56,
    64,
    80,
    96,
    128,
    160,
    192,
    256,
    384,
    512,
)


class _Option(NamedTuple):
    tile: dict[str, int]
    n_tiles: int
    pixels: int  # of the largest window (memory)
    computed: int  # of all windows (time)


def choose(
    spec: ModelSpec,
    image_shape: dict[str, int],
    model: MemoryModel,
    *,
    budget: int,
    baseline: int,
    reusable: int = 0,
    call_limit: int | None = None,
    n_items: int = 1,
    fixed_batch: int | None = None,
    tile: dict[str, int] | None = None,
    batch_size: int | None = None,
    strict: bool = False,
    geometry: tiling.ModelGeometry | None = None,
) -> Choice:
    """Choose the tile size and batch of a run under a memory budget.

    Args:
        spec: the model.
        image_shape: size of each spatial axis of the inputs.
        model: the bundle's memory model (:func:`estimate` / :func:`measure`).
        budget: bytes the whole process may use.
        baseline: bytes the process holds during the run besides the model call (resident
            now, plus the arrays the run allocates).
        reusable: resident bytes a model call reuses (the runtime's memory pool from earlier
            calls, counted in ``baseline`` already).
        call_limit: largest model call allowed, in bytes (``None``: only the budget limits it).
        n_items: batch items of the run (e.g. the slices of a stack run by a 2D model).
        fixed_batch: the batch size the model requires, if any.
        tile: the user's tile size; then only the batch is chosen.
        batch_size: the user's batch size; kept unless ``strict`` and it exceeds the budget.
        strict: the budget was given by the user: refuse a run that cannot fit it.
        geometry: ``tiling.model_geometry(spec)``, when the caller already has it.

    Raises:
        InputImageError: ``strict`` and not even the smallest tile fits the budget.
    """
    geometry = geometry or tiling.model_geometry(spec)
    spatial = geometry.spatial_axes
    available = budget * (1 - HEADROOM) - baseline + reusable
    if call_limit is not None:
        available = min(available, call_limit)
    dij_tiling = spec.deepimagej_tiling if spec.kind == "deepimagej" else None
    if tile or (dij_tiling is not None and dij_tiling.fixed_patch) or not spatial:
        plan = tiling.plan_for_spec(spec, image_shape, tile, geometry=geometry)
        computed = sum(math.prod(s.stop - s.start for s in t.input_slices) for t in plan.tiles)
        options = [
            _Option(dict(zip(plan.spatial_axes, plan.tile_shape)), plan.n_tiles, plan.tile_pixels, computed)
        ]
    else:
        per_axis = [_axis_candidates(spec, a, image_shape[a], geometry) for a in spatial]
        options = [
            _Option(
                {a: q for a, (_, q, _) in zip(spatial, combo)},
                math.prod(n for n, _, _ in combo),
                math.prod(q for _, q, _ in combo),
                math.prod(s for _, _, s in combo),
            )
            for combo in itertools.product(*per_axis)
        ]
    fits = [o for o in options if model.call_bytes(o.pixels) <= available]
    if not fits:
        smallest = min(options, key=lambda o: o.pixels)
        if strict:
            need = baseline + model.call_bytes(smallest.pixels)
            raise InputImageError(
                f"{spec.name}: the memory budget {format_bytes(budget)} is too small: this image and the model's "
                f"smallest tile need about {format_bytes(need)}; raise --max-memory"
            )
        fits = [smallest]

    def cost(o: _Option) -> float:
        return n_items * (o.computed + o.n_tiles * CALL_COST_PIXELS)

    best = min(cost(o) for o in fits)
    chosen = min((o for o in fits if cost(o) <= best * (1 + TIME_SLACK)), key=lambda o: (o.pixels, cost(o)))
    pixels, jobs = chosen.pixels, chosen.n_tiles * n_items
    if fixed_batch:
        batch = fixed_batch
    elif batch_size:
        batch = max(1, int(batch_size))
        while strict and batch > 1 and model.call_bytes(pixels * batch) > available:
            batch -= 1
    else:
        batch = max(1, min(MAX_BATCH, jobs, BATCH_PIXELS // max(pixels, 1)))
        while batch > 1 and model.call_bytes(pixels * batch) > available:
            batch -= 1
    peak = int(baseline + max(0.0, model.call_bytes(pixels * batch) - reusable))
    return Choice(chosen.tile, batch, chosen.n_tiles, peak, budget, model)


# --------------------------------------------------------------------------------------------
# the probe (run in a fresh process by :func:`measure`)
# --------------------------------------------------------------------------------------------


def _probe_sizes(spec: ModelSpec, geometry: tiling.ModelGeometry) -> list[dict[str, int]]:
    """Two valid input sizes per tiled axis (about 192 and 384 pixels for 2D, 32 and 64 for 3D)."""
    spatial = geometry.spatial_axes
    targets = (192, 384) if len(spatial) < 3 else (32, 64)
    sizes = []
    for target in targets:
        shape = {}
        for a in spatial:
            if a in geometry.fixed:
                shape[a] = geometry.fixed[a]
            else:
                lo, st = geometry.min_size[a], geometry.step[a]
                shape[a] = lo + max(0, math.ceil((target - lo) / st)) * st
        sizes.append(shape)
    return sizes if sizes[0] != sizes[1] else sizes[:1]


def _probe(descriptor: str, weights_format: str, trust_code: bool) -> dict[str, float]:
    import numpy as np

    from deepimagej.bundle import load_bundle
    from deepimagej.engines import load_engine

    spec = load_bundle(descriptor)
    weights = spec.weights[weights_format]
    engine = load_engine(
        weights, [t.name for t in spec.inputs], [t.name for t in spec.outputs], trust_code=trust_code
    )
    geometry = tiling.model_geometry(spec)
    loaded = rss_bytes()
    points = []
    for shape in _probe_sizes(spec, geometry):
        batch = {}
        for t in spec.inputs:
            dims = []
            for ax in t.axes:
                if ax.name in shape:
                    dims.append(shape[ax.name])
                elif ax.name == "b":
                    dims.append(engine.fixed_batch_size or 1)
                else:
                    dims.append(ax.size or ax.min or 1)
            batch[t.name] = np.random.default_rng(0).random(dims, dtype=np.float32)
        engine(batch)
        engine(batch)  # a second call of a shape can take more than the first (allocator pools)
        points.append((math.prod(shape.values()) * (engine.fixed_batch_size or 1), _status("VmHWM") - loaded))
    if len(points) == 2 and points[1][0] > points[0][0] and points[1][1] > points[0][1]:
        per_pixel = (points[1][1] - points[0][1]) / (points[1][0] - points[0][0])
        fixed = max(0.0, points[0][1] - per_pixel * points[0][0])
    else:
        pixels, used = points[-1]
        per_pixel, fixed = max(used, 0) / max(pixels, 1), 0.0
    return {"per_pixel": per_pixel, "fixed": fixed, "loaded": loaded}


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m deepimagej.memory", description="measure a bundle's memory model"
    )
    parser.add_argument("descriptor")
    parser.add_argument("weights_format")
    parser.add_argument("--trust-code", action="store_true")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(_probe(args.descriptor, args.weights_format, args.trust_code)))
    except DeepImageJError as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
