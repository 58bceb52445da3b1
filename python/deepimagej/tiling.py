"""The block plan over every tensor of a model: tile layout, borders, cutting and stitching.

Pure numpy, no model imports. This module is the only place that cuts images into tiles and
puts tile outputs back together; :mod:`deepimagej.predict` only orchestrates.

A model sees the image through tiles: windows of a fixed *tile size* (the model input size,
halo included) of the image, extended beyond its borders by mirroring (DeepImageJ's
``CompactMirroring``) or, for models trained that way, by a band of zeros first
(:func:`zero_border`). Of each tile's output only the central part is kept -- the ``halo`` is
cropped on each side, where the model lacked context -- and the kept parts are written side by
side into the output so that every output pixel is written exactly once. When the halo covers
the model's receptive field, the tiled result equals the untiled one.

Every input with spatial axes is cut with the same windows (inputs must agree on their spatial
sizes); inputs without a tiled axis are passed whole. Every output follows the input along each
spatial axis by an :class:`AxisMap` (bioimage.io: ``size = scale * input + 2 * offset``; 0.5 size
references are converted to this form when the descriptor is read), so a scaled output
(super-resolution, down-sampling) is stitched from the same plan; outputs that do not follow an
axis (fixed size, axis missing) need one tile along it.

Two rules choose the tile size, per spatial axis (``z``, ``y``, ``x``; ``b``, ``t`` and ``c``
are never tiled):

* the **bioimage.io** rule (:func:`plan_tiles`): valid model input sizes are ``min + n * step``
  (``step == 0``: exactly ``min``), the halo is cropped from the output;
* the **DeepImageJ 1.x** rule (:func:`plan_deepimagej`, paper Eq. 2-4): with padding ``P``, a
  *free* patch is the smallest multiple of ``MinimumSize`` that is ``>= I + 2P`` (capped at
  ``PatchSize``); a *fixed* patch is ``PatchSize``. The image is mirror-padded by ``P``, tiles
  of size ``Q`` overlap by ``2P`` and the central ``Q - 2P`` of each is kept, so there are
  ``T = ceil(I / (Q - 2P))`` tiles per axis; the last one is shifted back to end at the
  image border and keeps the remaining ``I - (T - 1)(Q - 2P)`` pixels.

Both rules share one layout (:func:`layout_axis`), which is exactly DeepImageJ's: per axis,

* if one tile covers the image (``Q >= I + 2h``), the image is mirror-padded by
  ``(Q - I) // 2`` before and the rest after, and the single tile is the whole padded axis;
* otherwise the image is mirror-padded by ``h`` on both sides, tile ``k`` starts at
  ``k * (Q - 2h)`` in padded coordinates and the last tile starts at ``I - (Q - 2h)``.

Coordinates: :class:`Tile` ``input_slices`` index the *mirror-padded* image, ``output_slices``
index the model output of that tile for an output of the input's size (scale 1, offset 0), and
``target_slices`` index the image (extended by its zero border, if any). Scaled outputs get
their slices from :meth:`TilePlan.output_window`. Padding is never applied to the whole image:
:func:`cut` pads each window on the fly, so memory follows the tile.

Mirror padding is numpy's ``"reflect"`` mode (the border pixel is not repeated:
``[a b c] -> b | a b c | b``), which is what DeepImageJ's ``CompactMirroring`` and scipy's
``mode="mirror"`` do; pads larger than the image reflect again (period ``2I - 2``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from deepimagej.bundle.spec import SPATIAL_AXES, DeepImageJTiling, ModelSpec, TensorSpec
from deepimagej.errors import DeepImageJError

__all__ = [
    "AxisMap",
    "Batch",
    "ModelGeometry",
    "Stitcher",
    "Tile",
    "TilePlan",
    "TilingError",
    "batches",
    "cut",
    "item_count",
    "iter_batches",
    "iter_tile_batches",
    "layout_axis",
    "mirror_pad",
    "model_geometry",
    "plan_deepimagej",
    "plan_for_spec",
    "plan_tiles",
    "reflect_index",
    "stack_batch",
    "stitch",
    "zero_border",
]


class TilingError(DeepImageJError):
    """The image cannot be tiled as the model requires (sizes, halo, output scale)."""


@dataclass(frozen=True)
class AxisMap:
    """How an output axis follows a tiled input axis: ``size = scale * input + 2 * offset``.

    ``offset`` is per side, in output pixels (bioimage.io 0.4 convention; a negative offset is
    the border a valid-convolution network loses). Output pixel ``j`` lies at input position
    ``(j - offset) / scale``.
    """

    scale: Fraction = Fraction(1)
    offset: Fraction = Fraction(0)

    @property
    def is_identity(self) -> bool:
        return self.scale == 1 and self.offset == 0

    def size(self, n: int) -> Fraction:
        """Output size for an input of ``n`` pixels (may be fractional: callers check)."""
        return self.scale * n + 2 * self.offset


IDENTITY = AxisMap()


@dataclass(frozen=True)
class Tile:
    """One tile, for the spatial axes of its :class:`TilePlan` (in ``plan.spatial_axes`` order).

    Attributes:
        grid_index: position of the tile in the tile grid, one index per spatial axis.
        input_slices: the model input window in the mirror-padded image; each has the plan's
            tile size.
        output_slices: the part of a same-size model output of this tile that is kept (halo
            cropped).
        target_slices: where that part goes in the image (extended by the plan's zero border).
    """

    grid_index: tuple[int, ...]
    input_slices: tuple[slice, ...]
    output_slices: tuple[slice, ...]
    target_slices: tuple[slice, ...]


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut into tiles.

    All per-axis tuples are in ``spatial_axes`` order.

    Attributes:
        spatial_axes: the tiled axes, e.g. ``"yx"`` or ``"zyx"``.
        image_shape: size of the image per spatial axis, including the zero border (the image
            as the model sees it).
        tile_shape: model input size per spatial axis (halo included).
        halo: pixels cropped from each side of a tile output (at least; a tile next to the
            image border may keep more of the mirror-padded side, never less than ``halo``
            away from the tile border).
        pad_before / pad_after: mirror padding of the (zero-extended) image the tiles are cut
            from (applied per tile by :func:`cut`).
        tiles: the tiles, in C order of their grid index (last axis fastest).
        rule: ``"bioimageio"`` or ``"deepimagej"``, the rule that chose ``tile_shape``.
        border: width of the band of zeros around the image per axis (:func:`zero_border`);
            ``image_shape`` includes it, outputs exclude it.
    """

    spatial_axes: str
    image_shape: tuple[int, ...]
    tile_shape: tuple[int, ...]
    halo: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    tiles: tuple[Tile, ...]
    rule: str = "bioimageio"
    border: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.border:
            object.__setattr__(self, "border", tuple(0 for _ in self.spatial_axes))

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.tiles)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Number of tiles along each spatial axis."""
        if not self.tiles:
            return tuple(0 for _ in self.spatial_axes)
        return tuple(max(t.grid_index[i] for t in self.tiles) + 1 for i in range(len(self.spatial_axes)))

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """Spatial shape of the mirror-padded image."""
        return tuple(s + b + a for s, b, a in zip(self.image_shape, self.pad_before, self.pad_after))

    @property
    def source_shape(self) -> tuple[int, ...]:
        """Spatial shape of the image itself (without its zero border)."""
        return tuple(s - 2 * z for s, z in zip(self.image_shape, self.border))

    @property
    def tile_pixels(self) -> int:
        """Pixels in one model input window (spatial axes only)."""
        return math.prod(self.tile_shape)

    def pad_width(self, axes: str) -> list[tuple[int, int]]:
        """``np.pad``-style pad widths for an array whose dimensions are named by ``axes``.

        Axes that are not tiled (``b``, ``c``, ``t``...) get ``(0, 0)``.
        """
        self._check_axes(axes)
        widths = []
        for a in axes:
            if a in self.spatial_axes:
                i = self.spatial_axes.index(a)
                widths.append((self.pad_before[i], self.pad_after[i]))
            else:
                widths.append((0, 0))
        return widths

    def index(self, slices: Sequence[slice], axes: str) -> tuple[slice, ...]:
        """Full index tuple for an array named by ``axes`` from per-spatial-axis ``slices``.

        Non-spatial axes are taken whole.
        """
        self._check_axes(axes)
        return tuple(
            slices[self.spatial_axes.index(a)] if a in self.spatial_axes else slice(None) for a in axes
        )

    def output_size(self, axis: str, amap: AxisMap = IDENTITY) -> int:
        """Size along ``axis`` of an output that follows the image by ``amap``.

        Raises:
            TilingError: the size would not be a whole number of pixels.
        """
        i = self.spatial_axes.index(axis)
        size = amap.size(self.source_shape[i])
        if size.denominator != 1 or size < 1:
            raise TilingError(
                f"an image of {self.source_shape[i]} pixels along {axis} gives an output of {float(size):g} pixels "
                f"(scale {amap.scale}, offset {amap.offset}); use an image size that gives whole pixels"
            )
        return int(size)

    def output_window(self, tile: Tile, axis: str, amap: AxisMap = IDENTITY) -> tuple[slice, slice]:
        """Where the kept part of ``tile``'s output goes, along ``axis``, for an output mapped by ``amap``.

        Returns:
            ``(slice in the tile's model output, slice in the output image)``; both empty when
            the tile only covers the zero border.
        """
        i = self.spatial_axes.index(axis)
        s, off = amap.scale, amap.offset
        extended, z = self.image_shape[i], self.border[i]
        keep = tile.target_slices[i]
        window_start = tile.input_slices[i].start - self.pad_before[i]  # extended image coordinates
        # scaled input coordinates of the kept range; at the image ends the output's own margin
        # (the offset) belongs to the first / last tile, as in one untiled call
        v0 = keep.start * s if keep.start > 0 else -off
        v1 = keep.stop * s if keep.stop < extended else extended * s + off
        shift = z * s - off  # output index = v - shift
        size = self.output_size(axis, amap)
        t0, t1 = max(v0 - shift, 0), min(v1 - shift, size)
        if t1 <= t0:
            return slice(0, 0), slice(0, 0)
        o0 = t0 + shift - window_start * s + off
        values = (t0, t1, o0)
        if any(Fraction(v).denominator != 1 for v in values):
            raise TilingError(
                f"tile boundaries along {axis} do not fall on whole output pixels (scale {s}, offset {off}); "
                "use a tile size that is a multiple of the output scale's denominator"
            )
        t0, t1, o0 = (int(v) for v in values)
        return slice(o0, o0 + t1 - t0), slice(t0, t1)

    def _check_axes(self, axes: str) -> None:
        missing = [a for a in self.spatial_axes if a not in axes]
        if missing:
            raise TilingError(
                f"array axes '{axes}' lack the tiled axes {', '.join(missing)} (plan: '{self.spatial_axes}')"
            )


# --------------------------------------------------------------------------------------------
# mirror padding
# --------------------------------------------------------------------------------------------


def mirror_pad(
    array: np.ndarray, pad_width: Sequence[tuple[int, int]] | Mapping[int, tuple[int, int]]
) -> np.ndarray:
    """Mirror-pad ``array`` (numpy ``"reflect"`` mode: the border pixel is not repeated).

    Args:
        array: any array.
        pad_width: ``(before, after)`` per dimension, as for :func:`numpy.pad`, or a mapping
            ``{dim: (before, after)}`` for only some dimensions.

    Returns:
        A new padded array; ``array`` itself when nothing is padded. Pads larger than the axis
        reflect repeatedly (period ``2n - 2``); an axis of size 1 is repeated.
    """
    array = np.asarray(array)
    if isinstance(pad_width, Mapping):
        widths = [tuple(pad_width.get(d, (0, 0))) for d in range(array.ndim)]
    else:
        widths = [tuple(w) for w in pad_width]
    if len(widths) != array.ndim:
        raise TilingError(f"mirror_pad: {len(widths)} pad widths for an array with {array.ndim} dimensions")
    if any(b < 0 or a < 0 for b, a in widths):
        raise TilingError(f"mirror_pad: negative pad width in {widths}")
    if all(b == 0 and a == 0 for b, a in widths):
        return array
    return np.pad(array, widths, mode="reflect")


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AxisTile:
    input_start: int
    output_start: int
    output_stop: int
    target_start: int
    target_stop: int
    size: int  # the model input window along the axis


def layout_axis(
    size: int,
    tile: int,
    halo: int,
    align: int = 0,
    total: int | None = None,
    valid: Callable[[int], int | None] | None = None,
    border: int = 0,
) -> tuple[int, int, list[_AxisTile]]:
    """Lay tiles of ``tile`` pixels with ``halo`` along one axis of ``size`` pixels.

    Args:
        size: image size along the axis.
        tile: model input size (halo included): the largest window.
        halo: pixels cropped on each side of a tile output.
        align: 0 (default) for DeepImageJ's layout (mirror padding of ``halo`` on both sides);
            >= 1 for the bioimage.io layout of :func:`_layout_chunks`: windows start on multiples
            of ``align`` (pass the model's size ``step``, i.e. its down-sampling factor) inside
            the image padded at its end only to ``total`` pixels, so that a pooling network sees
            the same pixel grid in every tile as in one untiled call.
        total: the padded length for the bioimage.io layout (a valid model input size >= size).
        valid: the smallest valid model input size at or above a length (``None`` when there is
            none); bioimage.io layout only (default: every length is valid).
        border: a band of zeros of this width at each end of the ``size`` pixels (bioimage.io
            layout): windows may reach into it, but only the pixels between the bands are kept.

    Returns:
        ``(pad_before, pad_after, tiles)``; see the module docstring for the rule.

    Raises:
        TilingError: ``tile - 2 * halo <= 0`` while more than one tile is needed.
    """
    if size < 1:
        raise TilingError(f"cannot tile an axis of size {size}")
    if halo < 0:
        raise TilingError(f"halo must be >= 0, got {halo}")
    if align >= 1:
        return _layout_chunks(
            size, tile, halo, align, total if total is not None else size, valid or (lambda n: n), border
        )
    if tile >= size + 2 * halo:  # one tile covers the image and its halo
        before = (tile - size) // 2
        return before, tile - size - before, [_AxisTile(0, before, before + size, 0, size, tile)]
    inner = tile - 2 * halo
    if inner <= 0:
        raise TilingError(
            f"a tile of {tile} pixels leaves nothing once the halo of {halo} pixels is cropped on both sides; "
            f"use tiles larger than {2 * halo}"
        )
    n = math.ceil(size / inner)
    tiles = []
    for k in range(n):
        if k < n - 1:
            tiles.append(_AxisTile(k * inner, halo, halo + inner, k * inner, (k + 1) * inner, tile))
        else:
            start = size - inner  # padded coordinates: the tile ends at the end of the padded axis
            target_start = k * inner
            out_start = target_start + halo - start
            tiles.append(_AxisTile(start, out_start, halo + inner, target_start, size, tile))
    return halo, halo, tiles


def _layout_chunks(
    size: int,
    tile: int,
    halo: int,
    align: int,
    total: int,
    valid: Callable[[int], int | None],
    border: int = 0,
) -> tuple[int, int, list[_AxisTile]]:
    """The bioimage.io layout: kept blocks on a regular grid, windows on the ``align`` grid.

    The image is mirror-padded *after* its end to ``total`` pixels (the smallest valid model
    input size that holds it) -- exactly what one untiled call sees. The output is kept in
    blocks of ``chunk`` pixels (the last one shorter), a multiple of ``align``: so a chunked
    output store (zarr) has one writer per chunk. Each block is computed from the smallest valid
    window that reaches at least ``halo`` pixels beyond it on each side -- on one side only at
    the image's ends, as the untiled call: the first window starts at 0, the last one ends at
    ``total`` at the latest, so border windows are smaller than inner ones. Windows start on the
    ``align`` grid, so each tile sees the same pixel grid and the same border context as the
    untiled call, and the tiled output equals the untiled output wherever the halo covers the
    receptive field. ``chunk`` is the largest the window size ``tile`` allows, balanced so that
    the blocks have nearly equal sizes. With a zero ``border``, blocks cover the image between
    the bands (the bands give the windows their context and are never kept), so the blocks stay
    on the chunk grid of the output, which excludes the bands.
    """
    total = max(total, size)
    if tile >= total:
        return 0, tile - size, [_AxisTile(0, 0, size, 0, size, tile)]
    origin, end = border, size - border  # the kept pixels
    before = math.ceil(halo / align) * align  # context before a block, on the align grid
    widest = ((tile - before - halo) // align) * align
    if widest <= 0:
        raise TilingError(
            f"a tile of {tile} pixels leaves less than {align} pixels once the halo of {halo} pixels is cropped "
            f"on both sides; use tiles larger than {before + halo + align}"
        )
    n = math.ceil((end - origin) / widest)
    chunk = math.ceil(math.ceil((end - origin) / n) / align) * align
    tiles = []
    for keep_start in range(origin, end, chunk):
        keep_stop = min(keep_start + chunk, end)
        low = max(keep_start - before, 0)  # at the image start, the image border (as untiled)
        high = min(keep_stop + halo, total) if keep_stop < size else size  # beyond total: as untiled
        window = min(valid(high - low) or tile, tile)
        start = min(low, total - window)
        if start < 0 or start + window < high:
            raise TilingError(
                f"no window of {window} pixels covers pixels {keep_start}-{keep_stop} with their halo of {halo}"
            )
        tiles.append(_AxisTile(start, keep_start - start, keep_stop - start, keep_start, keep_stop, window))
    return 0, total - size, tiles


def _build_plan(
    spatial: str,
    image: Sequence[int],
    tile: Sequence[int],
    halo: Sequence[int],
    rule: str,
    align: Sequence[int] | None = None,
    totals: Sequence[int] | None = None,
    border: Sequence[int] = (),
    valid: Sequence[Callable[[int], int | None]] | None = None,
) -> TilePlan:
    pads_before, pads_after, per_axis = [], [], []
    for i, (a, size, q, h) in enumerate(zip(spatial, image, tile, halo)):
        step = align[i] if align else 0
        try:
            before, after, tiles = layout_axis(
                size,
                q,
                h,
                step,
                totals[i] if totals else None,
                valid[i] if valid else None,
                border[i] if border and step else 0,
            )
        except TilingError as exc:
            raise TilingError(f"axis {a}: {exc}") from None
        pads_before.append(before)
        pads_after.append(after)
        per_axis.append(tiles)
    tiles_out = []
    for grid in np.ndindex(*[len(t) for t in per_axis]):
        parts = [per_axis[i][g] for i, g in enumerate(grid)]
        tiles_out.append(
            Tile(
                grid_index=tuple(int(g) for g in grid),
                input_slices=tuple(slice(p.input_start, p.input_start + p.size) for p in parts),
                output_slices=tuple(slice(p.output_start, p.output_stop) for p in parts),
                target_slices=tuple(slice(p.target_start, p.target_stop) for p in parts),
            )
        )
    return TilePlan(
        spatial_axes=spatial,
        image_shape=tuple(int(s) for s in image),
        tile_shape=tuple(max(p.size for p in tiles) for tiles in per_axis),
        halo=tuple(int(h) for h in halo),
        pad_before=tuple(pads_before),
        pad_after=tuple(pads_after),
        tiles=tuple(tiles_out),
        rule=rule,
        border=tuple(int(z) for z in border),
    )


def _spatial_shape(image_shape: Mapping[str, int] | Sequence[int], axes: str) -> tuple[str, tuple[int, ...]]:
    """Spatial axes (in ``axes`` order) and their sizes."""
    if isinstance(image_shape, Mapping):
        spatial = "".join(a for a in axes if a in SPATIAL_AXES)
        missing = [a for a in spatial if a not in image_shape]
        if missing:
            raise TilingError(f"image shape {dict(image_shape)} lacks axes {', '.join(missing)}")
        return spatial, tuple(int(image_shape[a]) for a in spatial)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != len(axes):
        raise TilingError(
            f"image shape {shape} has {len(shape)} dimensions but axes '{axes}' name {len(axes)}"
        )
    spatial = "".join(a for a in axes if a in SPATIAL_AXES)
    return spatial, tuple(shape[axes.index(a)] for a in spatial)


def _round_up(value: int, minimum: int, step: int) -> int | None:
    """Smallest ``minimum + n * step >= value`` (``None`` if there is none: fixed size too small)."""
    if value <= minimum:
        return minimum
    if step == 0:
        return None
    return minimum + math.ceil((value - minimum) / step) * step


def _round_down(value: int, minimum: int, step: int) -> int | None:
    """Largest ``minimum + n * step <= value`` (``None`` if ``value < minimum``)."""
    if value < minimum:
        return None
    if step == 0:
        return minimum
    return minimum + ((value - minimum) // step) * step


def _balanced_tile(total: int, cap: int, halo: int, minimum: int, step: int) -> int:
    """Smallest valid tile <= ``cap`` covering ``total`` pixels in as few tiles as ``cap`` allows."""
    useful = max(cap - 2 * halo - max(step, 1), 1)
    n = max(1, math.ceil((total - 2 * halo) / useful))
    while True:
        want = math.ceil((total + 2 * halo * (n - 1)) / n) + (max(step, 1) - 1) * (n > 1)
        q = _round_up(want, minimum, step)
        if q is not None and q <= cap:
            return q
        if n > total:
            return cap
        n += 1


def plan_tiles(
    image_shape: Mapping[str, int] | Sequence[int],
    axes: str,
    *,
    min_size: Mapping[str, int] | None = None,
    step: Mapping[str, int] | None = None,
    halo: Mapping[str, int] | None = None,
    tile: Mapping[str, int] | None = None,
    fixed: Mapping[str, int] | None = None,
    max_tile: Mapping[str, int] | None = None,
    align: bool = True,
    border: Mapping[str, int] | None = None,
) -> TilePlan:
    """Plan tiles with the bioimage.io rule (valid model input sizes ``min + n * step``).

    Args:
        image_shape: image size, either ``{axis: size}`` or a shape aligned with ``axes``.
        axes: axis letters of the image (or of the model input); only ``z``, ``y``, ``x`` are
            tiled, in the order they appear here.
        min_size: smallest valid model input size per axis (default 1).
        step: size increment per axis; 0 means the size is exactly ``min_size`` (default 1).
        halo: pixels cropped from each side of every tile output (default 0).
        tile: requested model input size per axis, **halo included**. It is rounded up to a
            valid size, and shrunk to the single tile that covers the image when it is larger.
            Axes left out (or ``tile=None``) get that single tile: the image plus ``2 * halo``,
            rounded up to a valid size.
        fixed: axes whose model input size is fixed (overrides ``min_size``/``step``).
        max_tile: largest model input size allowed per axis (memory limit); the tile size is
            rounded down to a valid size not above it.
        align: start tiles on multiples of each axis' ``step`` (see :func:`layout_axis`), so that
            models that pool by ``step`` give the same result tiled and untiled.
        border: width of a band of zeros around the image per axis (:func:`zero_border`); the
            plan covers the image with its border.

    Returns:
        The :class:`TilePlan`.

    Raises:
        TilingError: no valid size fits the request, or a tile is not larger than twice the halo
            while the image needs more than one tile.
    """
    spatial, sizes = _spatial_shape(image_shape, axes)
    borders = [int((border or {}).get(a, 0)) for a in spatial]
    sizes = tuple(n + 2 * z for n, z in zip(sizes, borders))
    min_size, step, halo = dict(min_size or {}), dict(step or {}), dict(halo or {})
    tile, fixed, max_tile = dict(tile or {}), dict(fixed or {}), dict(max_tile or {})
    tile_shape, halos, aligns, totals = [], [], [], []
    rules: list[tuple[int, int]] = []
    for a, size in zip(spatial, sizes):
        h = int(halo.get(a, 0))
        if a in fixed:
            lo, st = int(fixed[a]), 0
        else:
            lo, st = int(min_size.get(a, 1)), int(step.get(a, 1))
        if lo < 1 or st < 0:
            raise TilingError(f"axis {a}: invalid size rule min={lo}, step={st}")
        valid = f"{lo}" if st == 0 else f"{lo} + n*{st}"
        if align:  # bioimage.io layout: the untiled call is the image padded (at its end) to a valid size
            total = _round_up(size, lo, st) or size
            single = total if st or total == lo else lo
        else:
            total = 0
            rounded = _round_up(size + 2 * h, lo, st)
            single = (
                lo if rounded is None else rounded
            )  # None: fixed size smaller than image + halo: tiles of exactly that size
        q = single
        if a in tile:
            requested = _round_up(int(tile[a]), lo, st)
            if requested is None:
                raise TilingError(
                    f"axis {a}: tile size {tile[a]} is not possible, the model accepts only {valid}"
                )
            q = min(requested, single)
        if a in max_tile and a not in tile:
            cap = _round_down(int(max_tile[a]), lo, st)
            if cap is None:
                raise TilingError(
                    f"axis {a}: maximum tile size {max_tile[a]} is below the model's minimum {lo}"
                )
            q = _balanced_tile(q, cap, h, lo, st) if q > cap else q
        needs_tiles = q < (max(total, size) if align else size + 2 * h)
        if needs_tiles and q - 2 * h <= 0:
            raise TilingError(
                f"axis {a}: tile size {q} (valid sizes {valid}) is not larger than twice the halo ({h}); "
                f"ask for a larger tile"
            )
        tile_shape.append(q)
        halos.append(h)
        aligns.append(max(st, 1) if align else 0)
        totals.append(total)
        rules.append((lo, st))
    unknown = set(tile) - set(spatial)
    if unknown - set("bct"):
        raise TilingError(
            f"tile names axes {', '.join(sorted(unknown))} that are not spatial axes of '{axes}'"
        )
    windows = [functools.partial(_round_up, minimum=lo, step=st) for lo, st in rules]
    return _build_plan(spatial, sizes, tile_shape, halos, "bioimageio", aligns, totals, borders, windows)


def plan_deepimagej(
    image_shape: Mapping[str, int] | Sequence[int],
    axes: str,
    tiling: DeepImageJTiling,
    patch: int | Mapping[str, int] | None = None,
    fixed: Mapping[str, int] | None = None,
    border: Mapping[str, int] | None = None,
) -> TilePlan:
    """Plan tiles with the DeepImageJ 1.x rule (paper Eq. 2-4).

    With ``P = tiling.padding`` and ``m = tiling.minimum_size``, per spatial axis of size ``I``:

    * free patch (``tiling.fixed_patch`` false): ``Q`` = the smallest multiple of ``m`` that is
      ``>= I + 2P``, capped at ``patch`` (default ``tiling.patch_size``) rounded down to a
      multiple of ``m``; when capped, the image is tiled. Each axis gets its own ``Q``
      (DeepImageJ 1.x used one square patch; per-axis sizes are equally valid for a free-patch
      model and waste less).
    * fixed patch: ``Q = tiling.patch_size`` on every axis.

    Then ``T = ceil(I / (Q - 2P))`` tiles per axis overlap by ``2P``; see the module docstring.

    Args:
        image_shape: image size, ``{axis: size}`` or a shape aligned with ``axes``.
        axes: axis letters; only ``z``, ``y``, ``x`` are tiled.
        tiling: the bundle's DeepImageJ tiling fields.
        patch: the user's patch size (one int for all axes or per axis): the cap of a free
            patch; for a fixed patch it must equal ``tiling.patch_size``.
        fixed: axes outside the patch rule with a fixed model input size (e.g. a fixed ``z``
            depth); they get that tile size and no padding.
        border: width of a band of zeros around the image per axis (see :func:`plan_tiles`).

    Raises:
        TilingError: invalid patch, ``Q <= 2P`` with several tiles, or tiling needed but the
            model does not allow it.
    """
    spatial, sizes = _spatial_shape(image_shape, axes)
    borders = [int((border or {}).get(a, 0)) for a in spatial]
    sizes = tuple(n + 2 * z for n, z in zip(sizes, borders))
    p, m = int(tiling.padding), max(1, int(tiling.minimum_size))
    fixed = dict(fixed or {})
    tile_shape: list[int] = []
    halos: list[int] = []
    for a, size in zip(spatial, sizes):
        if a in fixed:  # e.g. a fixed z depth: not patched, no padding
            tile_shape.append(int(fixed[a]))
            halos.append(0)
            continue
        user = patch.get(a) if isinstance(patch, Mapping) else patch
        if tiling.fixed_patch:
            q = int(tiling.patch_size)
            if user is not None and int(user) != q:
                raise TilingError(
                    f"axis {a}: this model only accepts patches of {q} pixels (fixed patch), not {user}"
                )
        else:
            cap = int(user) if user is not None else int(tiling.patch_size)
            cap_valid = (cap // m) * m
            if cap_valid < m:
                raise TilingError(f"axis {a}: patch size {cap} is smaller than the model's minimum size {m}")
            if user is not None and cap % m:
                raise TilingError(f"axis {a}: patch size {cap} must be a multiple of the minimum size {m}")
            q = min(math.ceil((size + 2 * p) / m) * m, cap_valid)
        if q < size + 2 * p:
            if not tiling.allow_tiling:
                raise TilingError(
                    f"axis {a}: the image ({size} pixels) plus padding 2x{p} does not fit the patch of {q} pixels "
                    "and this model does not allow tiling"
                )
            if q - 2 * p <= 0:
                raise TilingError(
                    f"axis {a}: patch size {q} must be larger than twice the padding ({2 * p}) to tile the image"
                )
        tile_shape.append(q)
        halos.append(p)
    return _build_plan(spatial, sizes, tile_shape, halos, "deepimagej", border=borders)


# --------------------------------------------------------------------------------------------
# the model's geometry: valid input sizes, halo and output maps per spatial axis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelGeometry:
    """What the bundle says about each spatial axis, for every tensor at once.

    Attributes:
        spatial_axes: the axes that can be tiled, in the first input's order.
        fixed: axis -> the model's fixed input size.
        min_size / step: axis -> valid input sizes ``min + n * step`` (axes not in ``fixed``),
            valid for every input and giving whole output pixels for every output.
        halo: axis -> input pixels cropped on each side of a tile: the inputs' own halo
            (DeepImageJ ``Padding``) and each output's halo (and negative offset) in input pixels.
        outputs: output name -> {axis: :class:`AxisMap`} for the axes the output follows;
            ``None`` for a spatial axis it has at a size of its own (taken whole).
        whole: axis -> why the image cannot be split along it (an output lacks it or does not
            follow it); a plan with several tiles along such an axis is refused.
    """

    spatial_axes: str
    fixed: dict[str, int] = field(default_factory=dict)
    min_size: dict[str, int] = field(default_factory=dict)
    step: dict[str, int] = field(default_factory=dict)
    halo: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, dict[str, AxisMap | None]] = field(default_factory=dict)
    whole: dict[str, str] = field(default_factory=dict)


def _fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(1024)


def _output_map(spec: ModelSpec, tensor: TensorSpec, axis: str, depth: int = 0) -> AxisMap | None:
    """How ``tensor``'s ``axis`` follows the inputs; ``None`` when it has a size of its own."""
    ax = tensor.axis(axis)
    if ax.size is not None and ax.reference is None:
        return None
    if ax.reference is None:
        return IDENTITY  # free size (DeepImageJ outputs, data-dependent): assumed to follow the input
    ref_name, ref_axis = ax.reference
    if ref_axis != axis:
        raise TilingError(
            f"{spec.name}: axis {axis} of tensor '{tensor.name}' follows axis {ref_axis} of '{ref_name}'; "
            "deepimagej only tiles axes that follow the same axis"
        )
    own = AxisMap(_fraction(ax.scale), _fraction(ax.offset))
    ref = next((t for t in spec.inputs if t.name == ref_name), None)
    inner: AxisMap | None
    if ref is not None:
        inner = _input_map(spec, ref, axis)
    else:
        ref = next((t for t in spec.outputs if t.name == ref_name), None)
        if ref is None or depth > len(spec.outputs):
            raise TilingError(f"{spec.name}: tensor '{tensor.name}' refers to an unknown tensor '{ref_name}'")
        inner = _output_map(spec, ref, axis, depth + 1)
    if inner is None:
        return None
    return AxisMap(own.scale * inner.scale, own.scale * inner.offset + own.offset)


def _input_map(spec: ModelSpec, tensor: TensorSpec, axis: str) -> AxisMap:
    """Inputs follow the tiled image one to one; an input sized by another input must match it."""
    ax = tensor.axis(axis)
    if ax.reference is not None and (ax.scale != 1 or ax.offset != 0):
        raise TilingError(
            f"{spec.name}: input '{tensor.name}' axis {axis} is {ax.scale:g} x '{ax.reference[0]}' + "
            f"{2 * ax.offset:g}; deepimagej tiles inputs of equal spatial size only"
        )
    return IDENTITY


def _merge_sizes(spec: ModelSpec, axis: str) -> tuple[int | None, int, int]:
    """(fixed size or None, min, step) valid for every input that has ``axis``."""
    fixed: dict[int, str] = {}
    rules: list[tuple[int, int, str]] = []
    for t in spec.inputs:
        if not t.has_axis(axis):
            continue
        ax = t.axis(axis)
        _input_map(spec, t, axis)
        if ax.reference is not None:
            continue
        if ax.size is not None:
            fixed.setdefault(ax.size, t.name)
        elif ax.step == 0:
            fixed.setdefault(ax.min, t.name)
        else:
            rules.append((ax.min, ax.step, t.name))
    if len(fixed) > 1:
        (a, na), (b, nb) = list(fixed.items())[:2]
        raise TilingError(
            f"{spec.name}: input '{na}' needs {a} pixels along {axis} but input '{nb}' needs {b}; "
            "the bundle's inputs disagree"
        )
    if fixed:
        size, name = next(iter(fixed.items()))
        for lo, st, other in rules:
            if size < lo or (size - lo) % st:
                raise TilingError(
                    f"{spec.name}: input '{name}' needs {size} pixels along {axis}, which input '{other}' "
                    f"does not accept ({lo} + n*{st})"
                )
        return size, size, 0
    if not rules:
        return None, 1, 1
    step = math.lcm(*(st for _, st, _ in rules))
    start = max(lo for lo, _, _ in rules)
    for size in range(start, start + step + 1):
        if all(size >= lo and (size - lo) % st == 0 for lo, st, _ in rules):
            return None, size, step
    names = " and ".join(f"'{n}'" for _, _, n in rules)
    raise TilingError(f"{spec.name}: inputs {names} accept no common size along {axis}")


def model_geometry(spec: ModelSpec) -> ModelGeometry:
    """Read every tensor's spatial rules from ``spec`` into one :class:`ModelGeometry`.

    Raises:
        TilingError: inputs that disagree on a size, an axis following another axis, or an
            output scale that no valid input size turns into whole pixels.
    """
    spatial = ""
    for t in spec.inputs:
        spatial += "".join(a for a in t.axis_names if a in SPATIAL_AXES and a not in spatial)
    geometry = ModelGeometry(spatial_axes=spatial)
    for out in spec.outputs:
        geometry.outputs[out.name] = {}
    for a in spatial:
        fixed, lo, st = _merge_sizes(spec, a)
        halo = max((t.axis(a).halo for t in spec.inputs if t.has_axis(a)), default=0)
        grid = 1
        for out in spec.outputs:
            if not out.has_axis(a):
                geometry.outputs[out.name][a] = None
                geometry.whole.setdefault(a, f"the output '{out.name}' has no axis {a}")
                continue
            amap = _output_map(spec, out, a)
            geometry.outputs[out.name][a] = amap
            if amap is None:
                geometry.whole.setdefault(a, f"the output '{out.name}' has a fixed size along {a}")
                continue
            if (2 * amap.offset).denominator != 1 or amap.offset.denominator != 1:
                geometry.whole.setdefault(a, f"the output '{out.name}' has a half-pixel offset along {a}")
            grid = math.lcm(grid, amap.scale.denominator)
            band = out.axis(a).halo - amap.offset  # output pixels not to keep, from the tile edge
            if band > 0:
                halo = max(halo, math.ceil(band / amap.scale))
        halo = math.ceil(halo / grid) * grid
        if fixed is not None:
            if fixed % grid:
                raise TilingError(
                    f"{spec.name}: the model's input size {fixed} along {a} does not give whole output pixels "
                    f"(output scale 1/{grid})"
                )
            geometry.fixed[a] = fixed
        else:
            first = next(
                (v for v in range(lo, lo + grid * max(st, 1) + 1, max(st, 1)) if v % grid == 0), None
            )
            if first is None:
                raise TilingError(
                    f"{spec.name}: no valid input size along {a} gives whole output pixels (output scale 1/{grid})"
                )
            geometry.min_size[a], geometry.step[a] = first, math.lcm(st, grid)
        geometry.halo[a] = halo
    return geometry


# --------------------------------------------------------------------------------------------
# planning a whole model
# --------------------------------------------------------------------------------------------


def plan_for_spec(
    spec: ModelSpec,
    image_shape: Mapping[str, int],
    tile: Mapping[str, int] | None = None,
    max_tile: Mapping[str, int] | None = None,
    geometry: ModelGeometry | None = None,
) -> TilePlan:
    """Plan tiles for every tensor of ``spec`` on an image of ``image_shape``.

    A DeepImageJ 1.x ``config.xml`` (``spec.kind == "deepimagej"`` with tiling fields and outputs
    of the input's size) uses :func:`plan_deepimagej` (``tile`` values are the user's patch size;
    a ``z`` axis with a fixed size and no halo keeps that size); anything else uses
    :func:`plan_tiles` with the valid sizes, halo and output scales of :func:`model_geometry`.
    A model with ``border == "zeros"`` is planned on the image extended by :func:`zero_border`.

    Args:
        spec: the model.
        image_shape: size of each spatial axis of the inputs, e.g. ``{"y": 512, "x": 512}``;
            other keys are ignored.
        tile: requested model input size per spatial axis (halo included), or ``None``.
        max_tile: largest tile per axis when ``tile`` does not set it (a memory bound): the
            image is then split into as few, equal tiles as that allows.
        geometry: ``model_geometry(spec)``, when the caller already has it.

    Raises:
        TilingError: the image cannot be tiled as the model requires: an output that does not
            follow an axis along which the image needs several tiles, a scaled output that
            would not be whole pixels, invalid tile requests.
    """
    geometry = geometry or model_geometry(spec)
    spatial = geometry.spatial_axes
    missing = [a for a in spatial if a not in image_shape]
    if missing:
        raise TilingError(f"{spec.name}: the image has no axis {', '.join(missing)} (model axes: {spatial})")
    shape = {a: int(image_shape[a]) for a in spatial}
    border = zero_border(spec)
    scaled = any(
        m is not None and not m.is_identity for maps in geometry.outputs.values() for m in maps.values()
    )
    if spec.kind == "deepimagej" and spec.deepimagej_tiling is not None and not scaled:
        inp = spec.inputs[0]
        # a spatial axis with a fixed size and no halo (a fixed z depth) is outside the patch rule
        fixed_depth = {
            a: size
            for a in spatial
            if a not in "yx"
            and inp.has_axis(a)
            and (size := inp.axis(a).size) is not None
            and inp.axis(a).halo == 0
        }
        plan = plan_deepimagej(
            shape, spatial, spec.deepimagej_tiling, patch=tile, fixed=fixed_depth, border=border
        )
    else:
        plan = plan_tiles(
            shape,
            spatial,
            min_size=geometry.min_size,
            step=geometry.step,
            halo=geometry.halo,
            fixed=geometry.fixed,
            tile=tile,
            max_tile=max_tile,
            border=border,
        )
    for a, n in zip(plan.spatial_axes, plan.grid_shape):
        if n > 1 and a in geometry.whole:
            raise TilingError(
                f"{spec.name}: {geometry.whole[a]}, so the image cannot be split into tiles along {a}; "
                "use an image (or tile) that fits the model input in one piece"
            )
    for name, maps in geometry.outputs.items():
        for a, amap in maps.items():
            if amap is not None:
                try:
                    plan.output_size(a, amap)
                except TilingError as exc:
                    raise TilingError(f"{spec.name}: output '{name}': {exc}") from None
    return plan


def zero_border(spec: ModelSpec) -> dict[str, int]:
    """Width of the zero border around the image for a model with ``border == "zeros"``.

    Such a model was trained to see zeros beyond the image (see :attr:`ModelSpec.border`), so the
    pre-processed image is extended with zeros before it is tiled, and the outputs exclude them.
    The width per spatial axis is the halo (the DeepImageJ ``Padding`` of a ``config.xml``),
    rounded up to a multiple of the axis's size step, so that the image keeps its place on the
    model's down-sampling grid.

    Returns:
        ``{axis: width}`` for the input's spatial axes; empty for ``border == "mirror"``.
    """
    if spec.border != "zeros":
        return {}
    inp = spec.inputs[0]
    out = spec.outputs[0] if spec.outputs else None
    widths = {}
    for a in (a for a in inp.axis_names if a in SPATIAL_AXES):
        ax = inp.axis(a)
        halo = max(ax.halo, out.axis(a).halo if out is not None and out.has_axis(a) else 0)
        step = ax.step
        if spec.kind == "deepimagej" and spec.deepimagej_tiling is not None:
            halo = max(halo, spec.deepimagej_tiling.padding)
            step = step or spec.deepimagej_tiling.minimum_size
        step = max(1, step)
        widths[a] = int(math.ceil(halo / step) * step)
    return widths


# --------------------------------------------------------------------------------------------
# cutting
# --------------------------------------------------------------------------------------------


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Positions mirrored into ``[0, size)`` as numpy's ``"reflect"`` padding does (period ``2 size - 2``)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * size - 2
    r = np.mod(index, period)
    return np.where(r < size, r, period - r)


def cut(
    source: Any,
    axes: str,
    plan: TilePlan,
    tile: Tile,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    item: int | None = None,
) -> np.ndarray:
    """The model input window of ``tile``, read from the unpadded image ``source``.

    Only the pixels the window needs are read (one rectangular read, so ``source`` may be a
    lazy array: zarr, a memory map); mirror padding and the zero border are applied to the
    window alone.

    Args:
        source: the image (not padded), indexable like a numpy array; its spatial sizes are
            ``plan.source_shape``.
        axes: names of ``source``'s dimensions; axes the plan does not tile are taken whole.
        plan: the plan.
        tile: one of ``plan.tiles``.
        transform: a pixel-wise transform (e.g. frozen pre-processing) applied to the pixels
            read, before mirroring and before the zero border (which stays zero).
        item: read only this index of the batch axis ``b`` (kept, of size 1), in the same one
            read as the window.

    Returns:
        The window: a view of ``source`` when it lies inside the image and there is no
        transform, else a new array.
    """
    if len(axes) != len(source.shape):
        raise TilingError(f"array has {len(source.shape)} dimensions but axes '{axes}' name {len(axes)}")
    index: list[slice] = []
    fixes: list[tuple[int, np.ndarray, np.ndarray]] = []
    for d, a in enumerate(axes):
        if a not in plan.spatial_axes:
            index.append(slice(item, item + 1) if a == "b" and item is not None else slice(None))
            continue
        i = plan.spatial_axes.index(a)
        size = plan.source_shape[i]
        if source.shape[d] != size:
            raise TilingError(f"the image is {source.shape[d]} pixels along {a}, the plan expects {size}")
        window = tile.input_slices[i]
        offset = plan.pad_before[i] + plan.border[i]
        start, stop = window.start - offset, window.stop - offset
        if start >= 0 and stop <= size:
            index.append(slice(start, stop))
            continue
        positions = reflect_index(
            np.arange(window.start, window.stop) - plan.pad_before[i], plan.image_shape[i]
        )
        positions = positions - plan.border[i]
        inside = (positions >= 0) & (positions < size)
        lo = int(positions[inside].min()) if inside.any() else 0
        hi = int(positions[inside].max()) + 1 if inside.any() else 1
        index.append(slice(lo, hi))
        fixes.append((d, np.where(inside, positions - lo, 0), inside))
    block = np.asarray(source[tuple(index)])
    if transform is not None:
        block = transform(block)
    for d, positions, inside in fixes:
        block = np.take(block, positions, axis=d)
        if not inside.all():
            outside: list[slice | np.ndarray] = [slice(None)] * block.ndim
            outside[d] = ~inside
            block[tuple(outside)] = 0
    return block


@dataclass(frozen=True)
class Batch:
    """Model inputs of some ``(item, tile)`` jobs, stacked along each input's batch axis.

    Attributes:
        jobs: the ``(item, tile)`` pairs, in the order of the stacked entries.
        arrays: input name -> the stacked windows; the batch axis is where ``b`` is in that
            input's axes (a new leading axis when it has none).
        filled: entries added at the end (copies of the last job) to reach a fixed batch size.
    """

    jobs: tuple[tuple[int, Tile], ...]
    arrays: dict[str, np.ndarray]
    filled: int = 0


def item_count(sources: Mapping[str, tuple[Any, str]]) -> int:
    """Items of a run: the size along ``b`` of the inputs that have several (the others are shared).

    Raises:
        TilingError: two inputs with different numbers of items.
    """
    n_items = 1
    for name, (array, axes) in sources.items():
        if "b" in axes:
            n = array.shape[axes.index("b")]
            if n != 1 and n_items != 1 and n != n_items:
                raise TilingError(f"input '{name}' has {n} items along b, another input has {n_items}")
            n_items = max(n_items, n)
    return n_items


def batches(plan: TilePlan, n_items: int, batch_size: int) -> list[list[tuple[int, Tile]]]:
    """The run's ``(item, tile)`` jobs grouped into batches: at most ``batch_size`` jobs whose
    windows have the same shape (they are stacked), items outer, tiles inner."""
    jobs = [(item, t) for item in range(n_items) for t in plan.tiles]
    return list(_same_shape_batches(jobs, max(1, int(batch_size))))


def stack_batch(
    plan: TilePlan,
    jobs: Sequence[tuple[int, Tile]],
    sources: Mapping[str, tuple[Any, str]],
    *,
    fill_to: int | None = None,
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]] | None = None,
) -> Batch:
    """Cut every input for ``jobs`` and stack the windows (see :func:`iter_batches`)."""
    filled = max(0, (fill_to or 0) - len(jobs))
    arrays = {}
    for name, (array, axes) in sources.items():
        transform = (transforms or {}).get(name)
        windows = []
        for item, t in jobs:
            k = item if "b" in axes and array.shape[axes.index("b")] > 1 else 0
            f = None if transform is None else functools.partial(_call_with_item, transform, k)
            # the item and the window in one read: a lazy array (zarr, TIFF) reads only the window
            windows.append(cut(array, axes, plan, t, f, item=k if "b" in axes else None))
        windows += [windows[-1]] * filled
        if "b" in axes:
            arrays[name] = np.concatenate(windows, axis=axes.index("b"))
        else:
            arrays[name] = np.stack(windows)
    return Batch(tuple(jobs), arrays, filled)


def iter_batches(
    plan: TilePlan,
    sources: Mapping[str, tuple[Any, str]],
    batch_size: int,
    *,
    fill_to: int | None = None,
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]] | None = None,
) -> Iterator[Batch]:
    """Cut every input for every ``(item, tile)`` job and stack the windows into batches.

    Args:
        plan: the plan.
        sources: input name -> ``(array, axes)``, arrays not padded. An array whose axes hold
            ``b`` has one item per index along ``b`` (the run's batch); an array with one item
            (or no ``b``) is shared by every item.
        batch_size: jobs per batch (the last batch of a window shape may be smaller).
        fill_to: a fixed batch size the model requires: a smaller batch is filled up with
            copies of its last entry (see :attr:`Batch.filled`).
        transforms: input name -> ``f(pixels, item)``, a pixel-wise transform applied to what
            :func:`cut` reads for that item (frozen pre-processing).

    Yields:
        :class:`Batch` es covering every item and every tile (:func:`batches`).
    """
    if not sources:
        raise TilingError("no input to cut")
    for jobs in batches(plan, item_count(sources), batch_size):
        yield stack_batch(plan, jobs, sources, fill_to=fill_to, transforms=transforms)


def _same_shape_batches(jobs: list[tuple[int, Tile]], batch_size: int) -> Iterator[list[tuple[int, Tile]]]:
    """Batches of up to ``batch_size`` jobs whose windows have the same shape (they are stacked),
    in the order of each shape's first job."""
    groups: dict[tuple[int, ...], list[tuple[int, Tile]]] = {}
    for job in jobs:
        groups.setdefault(tuple(s.stop - s.start for s in job[1].input_slices), []).append(job)
    for group in groups.values():
        for first in range(0, len(group), batch_size):
            yield group[first : first + batch_size]


def _call_with_item(
    transform: Callable[[np.ndarray, int], np.ndarray], item: int, block: np.ndarray
) -> np.ndarray:
    return transform(block, item)


def iter_tile_batches(
    plan: TilePlan, image: np.ndarray, batch_size: int, axes: str | None = None
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Cut one image into batches of tiles (:func:`iter_batches` for a single input).

    Args:
        plan: the plan.
        image: the image, **not** padded (:func:`cut` pads each window).
        batch_size: tiles per batch (the last batch may be smaller).
        axes: names of ``image``'s dimensions (default ``plan.spatial_axes``); must not hold ``b``.

    Yields:
        ``(tiles, batch)`` where ``batch`` stacks the tiles along a new **leading** axis:
        ``batch.shape == (len(tiles), *tile_shape_in_axes_order)``.
    """
    axes = plan.spatial_axes if axes is None else axes
    if "b" in axes:
        raise TilingError("iter_tile_batches cuts one image; use iter_batches for a batch of items")
    plan._check_axes(axes)
    for batch in iter_batches(plan, {"image": (image, axes)}, batch_size):
        yield [t for _, t in batch.jobs], batch.arrays["image"]


# --------------------------------------------------------------------------------------------
# stitching
# --------------------------------------------------------------------------------------------


class Stitcher:
    """Writes the kept part of each tile output into a preallocated output.

    Args:
        plan: the plan.
        out: the output; along each spatial axis it follows, its size is
            ``plan.output_size(axis, map)``; other axes (``c``, a fixed-size axis...) have the
            size of the tile outputs. Any array supporting slice assignment (numpy, zarr).
        axes: names of ``out``'s dimensions (default ``plan.spatial_axes``).
        maps: axis -> :class:`AxisMap` for the spatial axes the output follows (default: every
            plan axis, one to one); a plan axis mapped to ``None`` or absent from ``out`` is
            taken whole (the plan has one tile along it).
        transform: a pixel-wise function applied to each kept block before it is written
            (point-wise post-processing of a streamed output).
    """

    def __init__(
        self,
        plan: TilePlan,
        out: Any,
        axes: str | None = None,
        maps: Mapping[str, AxisMap | None] | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.plan = plan
        self.out = out
        self.transform = transform
        self.axes = plan.spatial_axes if axes is None else axes
        self.maps = dict.fromkeys(plan.spatial_axes, IDENTITY) if maps is None else dict(maps)
        if len(out.shape) != len(self.axes):
            raise TilingError(
                f"output has {len(out.shape)} dimensions but axes '{self.axes}' name {len(self.axes)}"
            )
        for a in plan.spatial_axes:
            amap = self.maps.get(a)
            if a in self.axes and amap is not None:
                n = plan.output_size(a, amap)
                if out.shape[self.axes.index(a)] != n:
                    raise TilingError(
                        f"output is {out.shape[self.axes.index(a)]} pixels along {a}, the image gives {n}"
                    )
        self._windows: dict[tuple[tuple[int, ...], str], tuple[slice, slice]] = {}
        self.written = 0

    def _window(self, tile: Tile, axis: str) -> tuple[slice, slice]:
        key = (tile.grid_index, axis)
        if key not in self._windows:
            self._windows[key] = self.plan.output_window(tile, axis, self.maps[axis])  # type: ignore[arg-type]
        return self._windows[key]

    def write(self, tile: Tile, output: np.ndarray, index: Mapping[str, int] | None = None) -> None:
        """Write one tile output.

        Args:
            tile: the tile it was computed from.
            output: the model output for that tile, with the axes of ``out`` minus those in
                ``index``.
            index: positions along axes of ``out`` that the tile output lacks, e.g. ``{"b": 3}``
                for the fourth item of a batch.
        """
        index = dict(index or {})
        if output.ndim != len(self.axes) - len(index):
            raise TilingError(
                f"a tile output has {output.ndim} dimensions, expected {len(self.axes) - len(index)} "
                f"(axes '{self.axes}' without {''.join(index)})"
            )
        src: list[slice] = []
        dst: list[slice | int] = []
        for a in self.axes:
            if a in index:
                dst.append(index[a])
                continue
            amap = self.maps.get(a) if a in self.plan.spatial_axes else None
            if amap is None:
                src.append(slice(None))
                dst.append(slice(None))
                continue
            n = output.shape[len(src)]
            window = tile.input_slices[self.plan.spatial_axes.index(a)]
            q = window.stop - window.start
            expected = amap.size(q)
            if n != expected:
                rule = (
                    "the size of its input"
                    if amap.is_identity
                    else f"{amap.scale} x its input + {2 * amap.offset}"
                )
                raise TilingError(
                    f"the model returned {n} pixels along {a} for a tile of {q} (expected {float(expected):g}: "
                    f"{rule}, as its descriptor says)"
                )
            o, t = self._window(tile, a)
            src.append(o)
            dst.append(t)
        kept = output[tuple(src)]
        self.out[tuple(dst)] = kept if self.transform is None else self.transform(kept)
        self.written += 1

    def write_batch(self, tiles: Sequence[Tile], outputs: np.ndarray) -> None:
        """Write a batch of tile outputs stacked along a leading axis (as from :func:`iter_tile_batches`)."""
        if len(outputs) < len(tiles):
            raise TilingError(f"{len(outputs)} tile outputs for {len(tiles)} tiles")
        for k, t in enumerate(tiles):
            self.write(t, outputs[k])

    @property
    def done(self) -> bool:
        """Whether every tile of the plan has been written."""
        return self.written >= self.plan.n_tiles


def stitch(
    plan: TilePlan, outputs: Iterable[tuple[Tile, np.ndarray]], out: np.ndarray, axes: str | None = None
) -> np.ndarray:
    """Write ``(tile, tile_output)`` pairs into ``out`` (see :class:`Stitcher`) and return ``out``."""
    stitcher = Stitcher(plan, out, axes)
    for t, o in outputs:
        stitcher.write(t, o)
    return out
