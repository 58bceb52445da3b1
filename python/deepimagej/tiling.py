"""Tile planning, mirror padding and stitching (pure numpy, no model imports).

A model sees the image through tiles: windows of a fixed *tile size* (the model input size,
halo included) cut out of the image after it has been mirror-padded at its borders. Of each
tile's output only the central part is kept -- ``halo`` pixels are cropped on each side, where
the model lacked context -- and the kept parts are written side by side into the output so
that every output pixel is written exactly once. When the halo covers the model's receptive
field, the tiled result equals the untiled one.

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
index the model output of that tile (same spatial size as its input: output scale 1, offset 0),
and ``target_slices`` index the output image (the size of the unpadded image).

Mirror padding is numpy's ``"reflect"`` mode (the border pixel is not repeated:
``[a b c] -> b | a b c | b``), which is what DeepImageJ's ``CompactMirroring`` and scipy's
``mode="mirror"`` do; pads larger than the image reflect again (period ``2I - 2``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deepimagej.bundle.spec import SPATIAL_AXES, DeepImageJTiling, ModelSpec
from deepimagej.errors import DeepImageJError

__all__ = [
    "Stitcher",
    "Tile",
    "TilePlan",
    "TilingError",
    "iter_tile_batches",
    "layout_axis",
    "mirror_pad",
    "zero_border",
    "plan_deepimagej",
    "plan_for_spec",
    "plan_tiles",
    "stitch",
]


class TilingError(DeepImageJError):
    """The image cannot be tiled as the model requires (sizes, halo, output scale)."""


@dataclass(frozen=True)
class Tile:
    """One tile, for the spatial axes of its :class:`TilePlan` (in ``plan.spatial_axes`` order).

    Attributes:
        grid_index: position of the tile in the tile grid, one index per spatial axis.
        input_slices: the model input window in the mirror-padded image; each has the plan's
            tile size.
        output_slices: the part of the model output of this tile that is kept (halo cropped).
        target_slices: where that part goes in the (unpadded) output image.
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
        image_shape: size of the (unpadded) image per spatial axis.
        tile_shape: model input size per spatial axis (halo included).
        halo: pixels cropped from each side of a tile output (at least; a tile next to the
            image border may keep more of the mirror-padded side, never less than ``halo``
            away from the tile border).
        pad_before / pad_after: mirror padding applied to the image before tiles are cut.
        tiles: the tiles, in C order of their grid index (last axis fastest).
        rule: ``"bioimageio"`` or ``"deepimagej"``, the rule that chose ``tile_shape``.
    """

    spatial_axes: str
    image_shape: tuple[int, ...]
    tile_shape: tuple[int, ...]
    halo: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    tiles: tuple[Tile, ...]
    rule: str = "bioimageio"

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


def layout_axis(
    size: int, tile: int, halo: int, align: int = 0, total: int | None = None
) -> tuple[int, int, list[_AxisTile]]:
    """Lay tiles of ``tile`` pixels with ``halo`` along one axis of ``size`` pixels.

    Args:
        size: image size along the axis.
        tile: model input size (halo included).
        halo: pixels cropped on each side of a tile output.
        align: 0 (default) for DeepImageJ's layout (mirror padding of ``halo`` on both sides);
            >= 1 for the bioimage.io layout of :func:`_layout_flush`: tiles start on multiples of
            ``align`` (pass the model's size ``step``, i.e. its down-sampling factor) inside the
            image padded at its end only to ``total`` pixels, so that a pooling network sees the
            same pixel grid in every tile as in one untiled call.
        total: the padded length for the bioimage.io layout (a valid model input size >= size).

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
        return _layout_flush(size, tile, halo, align, total if total is not None else size)
    if tile >= size + 2 * halo:  # one tile covers the image and its halo
        before = (tile - size) // 2
        return before, tile - size - before, [_AxisTile(0, before, before + size, 0, size)]
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
            tiles.append(_AxisTile(k * inner, halo, halo + inner, k * inner, (k + 1) * inner))
        else:
            start = size - inner  # padded coordinates: the tile ends at the end of the padded axis
            target_start = k * inner
            out_start = target_start + halo - start
            tiles.append(_AxisTile(start, out_start, halo + inner, target_start, size))
    return halo, halo, tiles


def _layout_flush(size: int, tile: int, halo: int, align: int, total: int) -> tuple[int, int, list[_AxisTile]]:
    """The bioimage.io layout: no padding before the image, tiles on the ``align`` grid.

    The image is mirror-padded *after* its end to ``total`` pixels (the smallest valid model
    input size that holds it) -- exactly what one untiled call sees. Tiles start at multiples
    of ``stride`` (the useful size rounded down to a multiple of ``align``); the last tile ends
    at ``total``. The first tile keeps its output from the image border, the last up to the
    image end, and every inner cut is at least ``halo`` pixels from a tile border. So each
    tile sees the same pixel grid and the same border context as the untiled call, and the
    tiled output equals the untiled output wherever the halo covers the receptive field.
    """
    total = max(total, tile, size)
    if tile >= total:
        return 0, tile - size, [_AxisTile(0, 0, size, 0, size)]
    stride = ((tile - 2 * halo) // align) * align
    if stride <= 0:
        raise TilingError(
            f"a tile of {tile} pixels leaves less than {align} pixels once the halo of {halo} pixels is cropped "
            f"on both sides; use tiles larger than {2 * halo + align}"
        )
    starts = [0]
    while starts[-1] + tile < total:
        starts.append(starts[-1] + stride)
    starts[-1] = total - tile
    tiles = []
    keep_start = 0
    for k, start in enumerate(starts):
        keep_stop = size if k == len(starts) - 1 else min(start + tile - halo, size)
        if keep_stop > keep_start:
            tiles.append(_AxisTile(start, keep_start - start, keep_stop - start, keep_start, keep_stop))
        keep_start = keep_stop
    return 0, total - size, tiles


def _build_plan(
    spatial: str,
    image: Sequence[int],
    tile: Sequence[int],
    halo: Sequence[int],
    rule: str,
    align: Sequence[int] | None = None,
    totals: Sequence[int] | None = None,
) -> TilePlan:
    pads_before, pads_after, per_axis = [], [], []
    for i, (a, size, q, h) in enumerate(zip(spatial, image, tile, halo)):
        try:
            before, after, tiles = layout_axis(size, q, h, align[i] if align else 0, totals[i] if totals else None)
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
                input_slices=tuple(slice(p.input_start, p.input_start + q) for p, q in zip(parts, tile)),
                output_slices=tuple(slice(p.output_start, p.output_stop) for p in parts),
                target_slices=tuple(slice(p.target_start, p.target_stop) for p in parts),
            )
        )
    return TilePlan(
        spatial_axes=spatial,
        image_shape=tuple(int(s) for s in image),
        tile_shape=tuple(int(q) for q in tile),
        halo=tuple(int(h) for h in halo),
        pad_before=tuple(pads_before),
        pad_after=tuple(pads_after),
        tiles=tuple(tiles_out),
        rule=rule,
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

    Returns:
        The :class:`TilePlan`.

    Raises:
        TilingError: no valid size fits the request, or a tile is not larger than twice the halo
            while the image needs more than one tile.
    """
    spatial, sizes = _spatial_shape(image_shape, axes)
    min_size, step, halo = dict(min_size or {}), dict(step or {}), dict(halo or {})
    tile, fixed, max_tile = dict(tile or {}), dict(fixed or {}), dict(max_tile or {})
    tile_shape, halos, aligns, totals = [], [], [], []
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
            single = _round_up(size + 2 * h, lo, st)
            if single is None:  # fixed size smaller than image + halo: tiles of exactly that size
                single = lo
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
    unknown = set(tile) - set(spatial)
    if unknown - set("bct"):
        raise TilingError(
            f"tile names axes {', '.join(sorted(unknown))} that are not spatial axes of '{axes}'"
        )
    return _build_plan(spatial, sizes, tile_shape, halos, "bioimageio", aligns, totals)


def plan_deepimagej(
    image_shape: Mapping[str, int] | Sequence[int],
    axes: str,
    tiling: DeepImageJTiling,
    patch: int | Mapping[str, int] | None = None,
    fixed: Mapping[str, int] | None = None,
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

    Raises:
        TilingError: invalid patch, ``Q <= 2P`` with several tiles, or tiling needed but the
            model does not allow it.
    """
    spatial, sizes = _spatial_shape(image_shape, axes)
    p, m = int(tiling.padding), max(1, int(tiling.minimum_size))
    fixed = dict(fixed or {})
    tile_shape, halos, aligns, totals = [], [], [], []
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
    return _build_plan(spatial, sizes, tile_shape, halos, "deepimagej")


def plan_for_spec(
    spec: ModelSpec,
    image_shape: Mapping[str, int],
    tile: Mapping[str, int] | None = None,
    max_tile: Mapping[str, int] | None = None,
) -> TilePlan:
    """Plan tiles for the first input of ``spec`` on an image of ``image_shape``.

    A DeepImageJ 1.x ``config.xml`` (``spec.kind == "deepimagej"`` with tiling fields) uses
    :func:`plan_deepimagej` (``tile`` values are the user's patch size; a ``z`` axis with a fixed
    size and no halo keeps that size); anything else uses
    :func:`plan_tiles` with ``min``/``step``/fixed ``size`` of the input's spatial axes and the
    halo = max of the input's and output's halo on each axis.

    Args:
        spec: the model.
        image_shape: size of each spatial axis of the model input, e.g. ``{"y": 512, "x": 512}``;
            other keys are ignored.
        tile: requested model input size per spatial axis (halo included), or ``None``.
        max_tile: largest tile per axis when ``tile`` does not set it (bioimage.io rule; a memory
            bound): the image is then split into as few, equal tiles as that allows.

    Raises:
        TilingError: the output is not the same size as the input (scale != 1 or offset != 0),
            or the image cannot be tiled as the model requires.
    """
    inp = spec.inputs[0]
    out = spec.outputs[0] if spec.outputs else None
    axes = inp.axis_names
    spatial = "".join(a for a in axes if a in SPATIAL_AXES)
    if out is not None:
        for a in spatial:
            if out.has_axis(a):
                ax = out.axis(a)
                if ax.scale != 1 or ax.offset != 0:
                    raise TilingError(
                        f"{spec.name}: output axis {a} is scaled (scale {ax.scale}, offset {ax.offset}) relative to "
                        "the input; deepimagej only tiles models whose output has the size of their input"
                    )
    if spec.kind == "deepimagej" and spec.deepimagej_tiling is not None:
        # a spatial axis with a fixed size and no halo (a fixed z depth) is outside the patch rule
        fixed_depth = {
            a: inp.axis(a).size
            for a in spatial
            if a not in "yx" and inp.axis(a).size is not None and inp.axis(a).halo == 0
        }
        plan = plan_deepimagej(image_shape, axes, spec.deepimagej_tiling, patch=tile, fixed=fixed_depth)
    else:
        min_size, step, fixed, halo = {}, {}, {}, {}
        for a in spatial:
            ax = inp.axis(a)
            if ax.size is not None:
                fixed[a] = ax.size
            elif ax.reference is not None:
                min_size[a], step[a] = 1, 1
            else:
                min_size[a], step[a] = ax.min, ax.step
            h = ax.halo
            if out is not None and out.has_axis(a):
                h = max(h, out.axis(a).halo)
            halo[a] = h
        plan = plan_tiles(
            image_shape, axes, min_size=min_size, step=step, halo=halo, fixed=fixed, tile=tile, max_tile=max_tile
        )
    if out is not None:
        for a, q in zip(plan.spatial_axes, plan.tile_shape):
            if not out.has_axis(a):
                if plan.grid_shape[plan.spatial_axes.index(a)] > 1:
                    raise TilingError(
                        f"{spec.name}: the output has no axis {a}, so the image cannot be split into tiles along {a}; "
                        "use an image (or tile) that fits the model input in one piece"
                    )
                continue
            ax = out.axis(a)
            if ax.size is not None and ax.reference is None and ax.size != q:
                raise TilingError(
                    f"{spec.name}: output axis {a} has a fixed size of {ax.size} but the model input tile is {q}; "
                    "deepimagej only tiles models whose output has the size of their input"
                )
    return plan


def zero_border(spec: ModelSpec) -> dict[str, int]:
    """Width of the zero border around the image for a model with ``border == "zeros"``.

    Such a model was trained to see zeros beyond the image (see :attr:`ModelSpec.border`), so the
    pre-processed image is padded with zeros before it is tiled, and the output cropped back.
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
# cutting and stitching
# --------------------------------------------------------------------------------------------


def iter_tile_batches(
    plan: TilePlan, padded: np.ndarray, batch_size: int, axes: str | None = None
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Cut the mirror-padded image into batches of tiles.

    Args:
        plan: the plan.
        padded: the image after ``mirror_pad(image, plan.pad_width(axes))``.
        batch_size: tiles per batch (the last batch may be smaller).
        axes: names of ``padded``'s dimensions (default ``plan.spatial_axes``); non-spatial
            axes (``c``...) are taken whole.

    Yields:
        ``(tiles, batch)`` where ``batch`` stacks the tiles along a new **leading** axis:
        ``batch.shape == (len(tiles), *tile_shape_in_axes_order)``. Tiles are views until
        ``np.stack`` copies them into the batch (one copy per batch).
    """
    axes = plan.spatial_axes if axes is None else axes
    if padded.ndim != len(axes):
        raise TilingError(f"array has {padded.ndim} dimensions but axes '{axes}' name {len(axes)}")
    plan._check_axes(axes)
    for a, n in zip(plan.spatial_axes, plan.padded_shape):
        if padded.shape[axes.index(a)] != n:
            raise TilingError(
                f"padded image is {padded.shape[axes.index(a)]} pixels along {a}, the plan expects {n}; "
                "pad it with mirror_pad(image, plan.pad_width(axes))"
            )
    batch_size = max(1, int(batch_size))
    tiles = plan.tiles
    for first in range(0, len(tiles), batch_size):
        chunk = list(tiles[first : first + batch_size])
        yield chunk, np.stack([padded[plan.index(t.input_slices, axes)] for t in chunk])


class Stitcher:
    """Writes the kept part of each tile output into a preallocated output image.

    Args:
        plan: the plan.
        out: the output image; its spatial axes have the plan's ``image_shape``, other axes
            (e.g. ``c``, which may differ from the input's) the size of the tile outputs.
        axes: names of ``out``'s dimensions (default ``plan.spatial_axes``); tile outputs have
            the same axes, with the tile size on spatial axes.
    """

    def __init__(self, plan: TilePlan, out: np.ndarray, axes: str | None = None):
        self.plan = plan
        self.out = out
        self.axes = plan.spatial_axes if axes is None else axes
        plan._check_axes(self.axes)
        if out.ndim != len(self.axes):
            raise TilingError(
                f"output has {out.ndim} dimensions but axes '{self.axes}' name {len(self.axes)}"
            )
        for a, n in zip(plan.spatial_axes, plan.image_shape):
            if out.shape[self.axes.index(a)] != n:
                raise TilingError(
                    f"output is {out.shape[self.axes.index(a)]} pixels along {a}, the image is {n}"
                )
        self.written = 0

    def write(self, tile: Tile, output: np.ndarray) -> None:
        """Write one tile output (axes ``self.axes``, tile size on spatial axes)."""
        for a, q in zip(self.plan.spatial_axes, self.plan.tile_shape):
            if output.shape[self.axes.index(a)] != q:
                raise TilingError(
                    f"the model returned {output.shape[self.axes.index(a)]} pixels along {a} for a tile of {q}; "
                    "deepimagej only tiles models whose output has the size of their input"
                )
        self.out[self.plan.index(tile.target_slices, self.axes)] = output[
            self.plan.index(tile.output_slices, self.axes)
        ]
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
