"""Tile planning, mirror padding and stitching (deepimagej.tiling), without any DL model.

The "model" of the equality tests is a chain of scipy box filters: a finite, known receptive
field, so tiled == untiled must hold exactly when the halo covers it and fail when it does not.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from deepimagej.bundle.spec import AxisSpec, DeepImageJTiling, ModelSpec, TensorSpec
from deepimagej.errors import DeepImageJError
from deepimagej.tiling import (
    AxisMap,
    Stitcher,
    TilePlan,
    TilingError,
    cut,
    iter_batches,
    iter_tile_batches,
    layout_axis,
    mirror_pad,
    model_geometry,
    plan_deepimagej,
    plan_for_spec,
    plan_tiles,
    stitch,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def coverage(plan: TilePlan) -> np.ndarray:
    """How many times each output pixel is written."""
    count = np.zeros(plan.image_shape, dtype=np.int32)
    for t in plan.tiles:
        count[t.target_slices] += 1
    return count


def check_plan(plan: TilePlan) -> None:
    """Invariants every plan must satisfy."""
    assert (coverage(plan) == 1).all(), "every output pixel is written exactly once"
    padded = plan.padded_shape
    for t in plan.tiles:
        for i in range(len(plan.spatial_axes)):
            s_in, s_out, s_tgt = t.input_slices[i], t.output_slices[i], t.target_slices[i]
            q, h = plan.tile_shape[i], plan.halo[i]
            assert s_in.stop - s_in.start <= q, "tile_shape is the largest window"
            if plan.rule == "deepimagej":
                assert s_in.stop - s_in.start == q
            assert s_in.start >= 0 and s_in.stop <= padded[i], "tiles stay inside the padded image"
            assert s_out.stop - s_out.start == s_tgt.stop - s_tgt.start
            # kept pixels are >= halo from a tile border, except at the image's own border (bioimage.io
            # layout: there the tile border is the image border, as in one untiled call)
            if s_tgt.start > 0:
                assert s_out.start >= h, "kept pixels are >= halo from the tile border"
            if s_tgt.stop < plan.image_shape[i]:
                assert s_out.stop <= q - h, "kept pixels are >= halo from the tile border"
            if plan.rule == "deepimagej":
                assert s_out.start >= h and s_out.stop <= q - h
            # the kept tile pixels are the same image pixels as the target
            assert s_in.start + s_out.start - plan.pad_before[i] == s_tgt.start
    assert plan.n_tiles == int(np.prod(plan.grid_shape))
    for i in range(len(plan.spatial_axes)):  # kept blocks on a regular grid (chunks of an output store)
        starts = sorted({t.target_slices[i].start for t in plan.tiles})
        sizes = {b - a for a, b in itertools.pairwise(starts)}
        assert len(sizes) <= 1, f"kept blocks along axis {i} start at {starts}"


def box_model(r: int, passes: int = 2):
    """A 'network': ``passes`` box filters of width 2r+1 (receptive radius r*passes), mirror borders."""

    def model(x: np.ndarray, spatial_dims: tuple[int, ...]) -> np.ndarray:
        size = [1] * x.ndim
        for d in spatial_dims:
            size[d] = 2 * r + 1
        y = x.astype(np.float64)
        for _ in range(passes):
            y = ndimage.uniform_filter(y, size=size, mode="mirror")
        return y * 2.0 - 1.0

    return model


def run_tiled(image: np.ndarray, axes: str, plan: TilePlan, model, batch_size: int = 3) -> np.ndarray:
    spatial_dims = tuple(axes.index(a) for a in axes if a in plan.spatial_axes)
    out = np.full(image.shape, np.nan)
    stitcher = Stitcher(plan, out, axes)
    for tiles, batch in iter_tile_batches(plan, image, batch_size, axes):
        assert batch.shape[0] == len(tiles) <= batch_size
        result = model(batch, tuple(d + 1 for d in spatial_dims))
        stitcher.write_batch(tiles, result)
    assert stitcher.done
    return out


# --------------------------------------------------------------------------------------------
# mirror padding
# --------------------------------------------------------------------------------------------


def test_mirror_pad_is_reflect_and_repeats():
    a = np.arange(4)
    assert mirror_pad(a, [(2, 2)]).tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    # pad larger than the axis reflects again (period 2n - 2 = 6), like DeepImageJ's CompactMirroring
    assert mirror_pad(a, [(7, 0)]).tolist() == [1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3]

    def dij_mirror(i: int, n: int) -> int:  # DeepImageJ CompactMirroring.mirror
        period = 2 * n - 2
        while i < 0:
            i += period
        while i >= n:
            i = abs(period - i)
        return i

    for n in (2, 3, 5):
        x = np.arange(n) * 10
        expected = [x[dij_mirror(i, n)] for i in range(-13, n + 11)]
        assert mirror_pad(x, [(13, 11)]).tolist() == expected
    assert mirror_pad(np.array([5]), [(2, 1)]).tolist() == [5, 5, 5, 5]
    img = np.arange(12.0).reshape(3, 4)
    out = mirror_pad(img, {1: (1, 1)})
    assert out.shape == (3, 6)
    np.testing.assert_array_equal(out[:, 0], img[:, 1])
    assert mirror_pad(img, [(0, 0), (0, 0)]) is img
    with pytest.raises(TilingError):
        mirror_pad(img, [(1, 1)])


def test_mirror_pad_matches_scipy_mirror():
    rng = np.random.default_rng(0)
    x = rng.random(9)
    k = np.ones(5) / 5
    ours = np.convolve(mirror_pad(x, [(2, 2)]), k, mode="valid")
    np.testing.assert_allclose(ours, ndimage.uniform_filter1d(x, 5, mode="mirror"), atol=1e-12)


# --------------------------------------------------------------------------------------------
# the per-axis layout and the bioimage.io rule
# --------------------------------------------------------------------------------------------


def test_layout_axis_single_and_multi():
    before, after, tiles = layout_axis(100, 128, 8)  # one tile, centred
    assert (before, after) == (14, 14) and len(tiles) == 1
    assert (tiles[0].output_start, tiles[0].output_stop, tiles[0].target_stop) == (14, 114, 100)
    before, after, tiles = layout_axis(100, 48, 8)  # inner 32 -> 4 tiles, last one shifted back
    assert (before, after) == (8, 8)
    assert [t.input_start for t in tiles] == [0, 32, 64, 68]
    assert [(t.target_start, t.target_stop) for t in tiles] == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert tiles[-1].output_start == 96 + 8 - 68 == 36 and tiles[-1].output_stop == 40
    with pytest.raises(TilingError, match="halo"):
        layout_axis(100, 16, 8)


def test_default_is_one_tile_of_valid_size():
    plan = plan_tiles(
        {"y": 100, "x": 70},
        "byxc",
        min_size={"y": 16, "x": 16},
        step={"y": 16, "x": 16},
        halo={"y": 8, "x": 8},
    )
    assert plan.spatial_axes == "yx" and plan.n_tiles == 1
    # bioimage.io layout: the untiled call is the image padded at its end to a valid size
    assert plan.tile_shape == (112, 80)  # 100 -> 112, 70 -> 80
    assert plan.pad_before == (0, 0) and plan.pad_after == (12, 10)
    centred = plan_tiles(
        {"y": 100, "x": 70},
        "byxc",
        min_size={"y": 16, "x": 16},
        step={"y": 16, "x": 16},
        halo={"y": 8, "x": 8},
        align=False,
    )
    assert centred.tile_shape == (128, 96)  # DeepImageJ layout: 100 + 16 -> 128, 70 + 16 -> 96
    assert centred.pad_before == (14, 13) and centred.pad_after == (14, 13)
    check_plan(plan)


@pytest.mark.parametrize(
    ("shape", "tile", "halo", "mn", "st"),
    [
        ((100, 70), {"y": 48, "x": 40}, 8, 16, 8),
        ((257, 31), {"y": 96, "x": 64}, 16, 32, 32),
        ((33, 200), {"y": 20, "x": 50}, 4, 10, 5),
        ((64, 64), {"y": 64, "x": 64}, 0, 64, 0),
        ((1, 50), {"y": 8, "x": 24}, 2, 8, 8),
    ],
)
def test_bioimageio_plans_cover_once_with_valid_sizes(shape, tile, halo, mn, st):
    plan = plan_tiles(
        shape,
        "yx",
        min_size={"y": mn, "x": mn},
        step={"y": st, "x": st},
        halo={"y": halo, "x": halo},
        tile=tile,
    )
    check_plan(plan)
    for q in plan.tile_shape:
        assert q >= mn and (q == mn if st == 0 else (q - mn) % st == 0)


def test_requested_tile_is_rounded_up_and_capped():
    kw = {"min_size": {"y": 16, "x": 16}, "step": {"y": 16, "x": 16}, "halo": {"y": 4, "x": 4}}
    plan = plan_tiles((200, 200), "yx", tile={"y": 50, "x": 1000}, align=False, **kw)
    assert plan.tile_shape == (64, 208)  # 50 -> 64; 1000 shrunk to the single tile 208
    assert plan.grid_shape == (4, 1)  # inner 56: ceil(200 / 56) = 4
    plan = plan_tiles((200, 200), "yx", max_tile={"y": 100, "x": 100}, align=False, **kw)
    assert plan.tile_shape == (96, 96) and plan.grid_shape == (3, 3)
    check_plan(plan)


def test_fixed_size_axes():
    plan = plan_tiles((300, 50), "yx", fixed={"y": 128, "x": 128}, halo={"y": 16, "x": 16})
    assert plan.tile_shape == (128, 128)
    # y: kept blocks of at most 128 - 2 * 16 = 96 pixels on a regular grid: 4 blocks of 75 (the first window
    # starts at 0, the others 16 before their block, the last one ends at the image end); x: one tile padded to 128
    assert [t.input_slices[0].start for t in plan.tiles] == [0, 59, 134, 172]
    assert [t.target_slices[0].start for t in plan.tiles] == [0, 75, 150, 225]
    check_plan(plan)
    with pytest.raises(TilingError, match="only 128"):
        plan_tiles((300, 50), "yx", fixed={"y": 128, "x": 128}, tile={"y": 200})


def test_errors_are_deepimagej_errors():
    with pytest.raises(TilingError, match="axis y.*halo"):
        plan_tiles((300,), "y", fixed={"y": 32}, halo={"y": 16})
    with pytest.raises(TilingError, match="below the model's minimum"):
        plan_tiles((300,), "y", min_size={"y": 64}, step={"y": 8}, max_tile={"y": 32})
    with pytest.raises(DeepImageJError, match="lacks axes"):
        plan_tiles({"y": 3}, "yx")
    with pytest.raises(TilingError, match="not spatial"):
        plan_tiles((10, 10), "yx", tile={"z": 4})


def test_zyx_plan():
    plan = plan_tiles(
        {"z": 20, "y": 90, "x": 33},
        "bczyx",
        min_size={"z": 4, "y": 16, "x": 16},
        step={"z": 4, "y": 16, "x": 16},
        halo={"z": 2, "y": 8, "x": 8},
        tile={"z": 8, "y": 48, "x": 64},
        align=False,
    )
    assert plan.spatial_axes == "zyx"
    assert plan.tile_shape == (8, 48, 64)  # x: 33 + 16 = 49 -> 64, a single tile
    assert plan.grid_shape == (5, 3, 1)
    check_plan(plan)
    assert plan.pad_width("bczyx") == [(0, 0), (0, 0), (2, 2), (8, 8), (15, 16)]


# --------------------------------------------------------------------------------------------
# the DeepImageJ rule (paper Eq. 2-4)
# --------------------------------------------------------------------------------------------


def test_deepimagej_fixed_patch_example():
    # I = 720, Q = 256, P = 64: Q - 2P = 128 pixels kept per tile, T = ceil(720 / 128) = 6
    tiling = DeepImageJTiling(fixed_patch=True, minimum_size=256, patch_size=256, padding=64)
    plan = plan_deepimagej({"y": 720, "x": 720}, "yx", tiling)
    assert plan.rule == "deepimagej"
    assert plan.tile_shape == (256, 256) and plan.grid_shape == (6, 6)
    assert plan.pad_before == (64, 64)
    ys = [t for t in plan.tiles if t.grid_index[1] == 0]
    assert [t.target_slices[0].start for t in ys] == [0, 128, 256, 384, 512, 640]
    last = ys[-1]
    # the last tile keeps I - (T - 1)(Q - 2P) = 720 - 640 = 80 pixels and ends at the image border
    assert last.target_slices[0] == slice(640, 720)
    assert last.input_slices[0] == slice(720 + 128 - 256, 720 + 128)
    assert last.output_slices[0] == slice(256 - 64 - 80, 256 - 64)
    check_plan(plan)
    with pytest.raises(TilingError, match="fixed patch"):
        plan_deepimagej({"y": 720, "x": 720}, "yx", tiling, patch=512)


def test_deepimagej_free_patch_eq2():
    # free patch: smallest multiple of m = 16 >= I + 2P = 300 + 2*20 -> 352, within PatchSize 512
    tiling = DeepImageJTiling(fixed_patch=False, minimum_size=16, patch_size=512, padding=20)
    plan = plan_deepimagej((300, 100), "yx", tiling)
    assert plan.tile_shape == (352, 144) and plan.n_tiles == 1
    check_plan(plan)
    # capped by a user patch of 128: tiled with Q = 128, Q - 2P = 88 -> ceil(300 / 88) = 4
    plan = plan_deepimagej((300, 100), "yx", tiling, patch=128)
    assert plan.tile_shape == (128, 128) and plan.grid_shape == (4, 2)
    check_plan(plan)
    with pytest.raises(TilingError, match="multiple of the minimum size"):
        plan_deepimagej((300, 100), "yx", tiling, patch=100)
    no_tiling = DeepImageJTiling(
        fixed_patch=False, minimum_size=16, patch_size=128, padding=20, allow_tiling=False
    )
    with pytest.raises(TilingError, match="does not allow tiling"):
        plan_deepimagej((300, 100), "yx", no_tiling)


# --------------------------------------------------------------------------------------------
# plan_for_spec
# --------------------------------------------------------------------------------------------


def _spec(kind="bioimageio", in_axes=None, out_axes=None, dij=None) -> ModelSpec:
    in_axes = in_axes or (
        AxisSpec("b"),
        AxisSpec("y", min=32, step=16),
        AxisSpec("x", min=32, step=16),
        AxisSpec("c", size=1),
    )
    out_axes = out_axes or (
        AxisSpec("b"),
        AxisSpec("y", reference=("in", "y"), halo=12),
        AxisSpec("x", reference=("in", "x"), halo=12),
        AxisSpec("c", size=2),
    )
    return ModelSpec(
        name="m",
        source=Path("rdf.yaml"),
        kind=kind,
        format_version="0.4.10",
        inputs=(TensorSpec("in", in_axes),),
        outputs=(TensorSpec("out", out_axes),),
        deepimagej_tiling=dij,
    )


def test_plan_for_spec_bioimageio():
    plan = plan_for_spec(_spec(), {"y": 300, "x": 100, "c": 1}, tile={"y": 96})
    assert plan.rule == "bioimageio" and plan.spatial_axes == "yx"
    assert plan.halo == (12, 12)
    assert plan.tile_shape == (96, 112)  # x: the whole 100 pixels, padded at the end to a valid 112
    check_plan(plan)


def test_plan_for_spec_deepimagej():
    dij = DeepImageJTiling(fixed_patch=True, minimum_size=256, patch_size=256, padding=64)
    plan = plan_for_spec(_spec(kind="deepimagej", dij=dij), {"y": 720, "x": 500})
    assert plan.rule == "deepimagej" and plan.grid_shape == (6, 4)
    # a 3D config with a fixed z depth of 16: z is not patched nor padded
    free = DeepImageJTiling(fixed_patch=False, minimum_size=16, patch_size=64, padding=8)
    in_axes = (
        AxisSpec("b"),
        AxisSpec("z", size=16, min=16, step=0),
        AxisSpec("y", min=16, step=16, halo=8),
        AxisSpec("x", min=16, step=16, halo=8),
    )
    out_axes = (
        AxisSpec("b"),
        AxisSpec("z", reference=("in", "z")),
        AxisSpec("y", reference=("in", "y"), halo=8),
        AxisSpec("x", reference=("in", "x"), halo=8),
    )
    spec = _spec(kind="deepimagej", in_axes=in_axes, out_axes=out_axes, dij=free)
    plan = plan_for_spec(spec, {"z": 16, "y": 100, "x": 40})
    assert plan.spatial_axes == "zyx" and plan.tile_shape == (16, 64, 64) and plan.halo == (0, 8, 8)
    assert plan.grid_shape == (1, 3, 1)  # y: ceil(100 / 48) = 3; x: 40 + 16 -> 64
    check_plan(plan)


def test_plan_for_spec_scaled_outputs():
    """A down-sampling output: valid sizes become even, the halo is counted in input pixels."""
    in_axes = (
        AxisSpec("b"),
        AxisSpec("y", min=8, step=4),
        AxisSpec("x", min=8, step=4),
        AxisSpec("c", size=1),
    )
    out = (
        AxisSpec("b"),
        AxisSpec("y", reference=("in", "y"), scale=0.5, halo=6),
        AxisSpec("x", reference=("in", "x"), scale=0.25, halo=2),
        AxisSpec("c", size=1),
    )
    spec = _spec(in_axes=in_axes, out_axes=out)
    geometry = model_geometry(spec)
    assert geometry.outputs["out"]["y"] == AxisMap(Fraction(1, 2))
    assert geometry.halo == {"y": 12, "x": 8}  # 6 / 0.5 and 2 / 0.25 input pixels
    assert geometry.step == {"y": 4, "x": 4} and geometry.min_size == {"y": 8, "x": 8}
    plan = plan_for_spec(spec, {"y": 96, "x": 64}, tile={"y": 40, "x": 32})
    assert plan.grid_shape[0] > 1 and plan.grid_shape[1] > 1
    assert (
        plan.output_size("y", geometry.outputs["out"]["y"]),
        plan.output_size("x", geometry.outputs["out"]["x"]),
    ) == (48, 16)
    with pytest.raises(TilingError, match="whole pixels"):
        plan_for_spec(spec, {"y": 96, "x": 66})
    classifier = (AxisSpec("b"), AxisSpec("c", size=3))
    assert plan_for_spec(_spec(out_axes=classifier), {"y": 64, "x": 64}).n_tiles == 1
    with pytest.raises(TilingError, match="no axis"):
        plan_for_spec(_spec(out_axes=classifier), {"y": 640, "x": 64}, tile={"y": 64})


def test_inputs_must_agree_on_sizes():
    a = TensorSpec("a", (AxisSpec("b"), AxisSpec("y", size=64), AxisSpec("x", size=64)))
    b = TensorSpec("b", (AxisSpec("b"), AxisSpec("y", size=32), AxisSpec("x", size=64)))
    out = TensorSpec(
        "out", (AxisSpec("b"), AxisSpec("y", reference=("a", "y")), AxisSpec("x", reference=("a", "x")))
    )
    spec = ModelSpec("m", Path("rdf.yaml"), "bioimageio", "0.5.4", (a, b), (out,))
    with pytest.raises(TilingError, match="input 'a' needs 64 pixels along y but input 'b' needs 32"):
        model_geometry(spec)


# --------------------------------------------------------------------------------------------
# tiled == untiled when the halo covers the receptive field
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["bioimageio", "deepimagej"])
def test_tiled_equals_untiled_2d(rule):
    rng = np.random.default_rng(1)
    image = rng.random((77, 90, 2)).astype(np.float32)  # y x c
    model = box_model(r=2, passes=2)  # receptive radius 4
    expected = model(image, (0, 1))
    if rule == "bioimageio":
        kw = {"min_size": {"y": 8, "x": 8}, "step": {"y": 8, "x": 8}, "halo": {"y": 4, "x": 4}}
        plan = plan_tiles(image.shape, "yxc", tile={"y": 32, "x": 24}, **kw)
        # the reference is one untiled call on the image padded to a valid size (80 x 96)
        expected = run_tiled(image, "yxc", plan_tiles(image.shape, "yxc", **kw), model)
    else:
        tiling = DeepImageJTiling(fixed_patch=True, minimum_size=24, patch_size=24, padding=4)
        plan = plan_deepimagej(image.shape, "yxc", tiling)
    assert plan.n_tiles > 6
    got = run_tiled(image, "yxc", plan, model)
    assert np.abs(got - expected).max() < 1e-5


def test_small_halo_breaks_equality():
    """The equality test above can fail: with a halo below the receptive radius it does."""
    rng = np.random.default_rng(2)
    image = rng.random((60, 60))
    model = box_model(r=2, passes=2)
    plan = plan_tiles(image.shape, "yx", halo={"y": 1, "x": 1}, tile={"y": 20, "x": 20})
    got = run_tiled(image, "yx", plan, model)
    assert np.abs(got - model(image, (0, 1))).max() > 1e-3


def test_tiled_equals_untiled_3d_with_channel_change():
    rng = np.random.default_rng(3)
    image = rng.random((2, 14, 30, 26))  # c z y x
    smooth = box_model(r=1, passes=2)  # receptive radius 2

    def model(batch: np.ndarray, spatial_dims: tuple[int, ...]) -> np.ndarray:
        y = smooth(batch, spatial_dims)
        return np.concatenate([y, y[:, :1] * y[:, 1:]], axis=1)  # 2 -> 3 channels

    expected = model(image[None], (2, 3, 4))[0]
    plan = plan_tiles(
        {"z": 14, "y": 30, "x": 26}, "czyx", halo={"z": 2, "y": 2, "x": 2}, tile={"z": 8, "y": 12, "x": 16}
    )
    assert all(n > 1 for n in plan.grid_shape)
    out = np.zeros((3, 14, 30, 26))
    pairs = []
    for tiles, batch in iter_tile_batches(plan, image, 5, "czyx"):
        result = model(batch, (2, 3, 4))
        pairs += list(zip(tiles, result))
    stitch(plan, pairs, out, "czyx")
    assert np.abs(out - expected).max() < 1e-5


def test_stitcher_checks_sizes():
    plan = plan_tiles((40, 40), "yx", halo={"y": 2, "x": 2}, tile={"y": 16, "x": 16})
    with pytest.raises(TilingError, match="pixels along y"):
        Stitcher(plan, np.zeros((39, 40)))
    stitcher = Stitcher(plan, np.zeros((40, 40)))
    middle = next(t for t in plan.tiles if t.grid_index == (1, 1))
    q = middle.input_slices[0].stop - middle.input_slices[0].start
    with pytest.raises(TilingError, match=f"returned {q - 2} pixels along y for a tile of {q}"):
        stitcher.write(middle, np.zeros((q - 2, q)))
    with pytest.raises(TilingError, match="plan expects"):
        next(iter_tile_batches(plan, np.zeros((30, 40)), 2))


def test_aligned_tiles_start_on_the_step_grid():
    """Windows start on multiples of the model's step from the untiled run's origin (pooling grid);
    kept blocks lie on a regular grid, and border windows need context on one side only."""
    kw = {"min_size": {"y": 8, "x": 8}, "step": {"y": 8, "x": 8}, "halo": {"y": 47, "x": 47}}
    whole = plan_tiles((576, 720), "yx", **kw)
    tiled = plan_tiles((576, 720), "yx", tile={"y": 256, "x": 256}, **kw)
    assert whole.n_tiles == 1 and tiled.n_tiles > 1
    assert whole.pad_before == tiled.pad_before == (0, 0)
    for t in tiled.tiles:
        assert all(s.start % 8 == 0 and (s.stop - s.start) % 8 == 0 for s in t.input_slices)
        assert all(s.stop - s.start <= 256 for s in t.input_slices)
    check_plan(tiled)
    check_plan(whole)
    # y: blocks of at most 256 - 48 - 47 = 161 -> 4 blocks of 144; windows 48 before (47 on the step grid) and
    # 47 after each block, 0-based at the start, ending at the image end at the end
    ys = sorted(
        {(t.input_slices[0].start, t.input_slices[0].stop, t.target_slices[0].start) for t in tiled.tiles}
    )
    assert ys == [(0, 192, 0), (96, 336, 144), (240, 480, 288), (384, 576, 432)]


# --------------------------------------------------------------------------------------------
# scaled outputs and several tensors, through the production cutter and stitcher
# --------------------------------------------------------------------------------------------


def _resample(y: np.ndarray, dims: tuple[int, ...], scale: Fraction) -> np.ndarray:
    for d in dims:
        if scale > 1:
            y = np.repeat(y, int(scale), axis=d)
        elif scale < 1:
            y = y.take(np.arange(0, y.shape[d], int(1 / scale)), axis=d)
    return y


@pytest.mark.parametrize(
    "scale,offset",
    [
        (Fraction(2), 0),
        (Fraction(4), 0),
        (Fraction(1, 2), 0),
        (Fraction(1, 4), 0),
        (Fraction(1), -3),
        (Fraction(2), -2),
    ],
)
def test_scaled_outputs_tiled_equal_untiled(scale, offset):
    """Up-/down-sampling 'networks' (box filters, then nearest up-sampling or subsampling, then
    a crop of ``-offset`` output pixels per side, like a valid convolution): tiled == untiled."""
    rng = np.random.default_rng(4)
    image = rng.random((88, 104)).astype(np.float64)
    smooth = box_model(r=2, passes=2)  # receptive radius 4

    def model(batch: np.ndarray) -> np.ndarray:
        y = _resample(smooth(batch, (1, 2)), (1, 2), scale)
        c = -offset
        return y[:, c : y.shape[1] - c, c : y.shape[2] - c] if c else y

    amap = AxisMap(scale, Fraction(offset))
    step = max(1, int(1 / scale)) * 4
    kw = {"min_size": {"y": step, "x": step}, "step": {"y": step, "x": step}}
    halo = int(np.ceil(4 + (-offset) / scale))
    halo = -(-halo // step) * step
    whole = plan_tiles(image.shape, "yx", halo={"y": halo, "x": halo}, **kw)
    tiled = plan_tiles(
        image.shape,
        "yx",
        halo={"y": halo, "x": halo},
        tile={"y": 2 * halo + 2 * step, "x": 2 * halo + step},
        **kw,
    )
    assert whole.n_tiles == 1 and tiled.grid_shape[0] > 1 and tiled.grid_shape[1] > 2
    results = []
    for plan in (whole, tiled):
        shape = (plan.output_size("y", amap), plan.output_size("x", amap))
        out = np.full(shape, np.nan)
        stitcher = Stitcher(plan, out, "yx", {"y": amap, "x": amap})
        for tiles, batch in iter_tile_batches(plan, image, 4, "yx"):
            stitcher.write_batch(tiles, model(batch))
        assert stitcher.done and not np.isnan(out).any()
        results.append(out)
    assert results[0].shape == (88 * scale + 2 * offset, 104 * scale + 2 * offset)
    expected = model(image[None])[0]
    np.testing.assert_allclose(results[0], expected, atol=1e-12)
    np.testing.assert_allclose(results[1], expected, atol=1e-12)


def test_several_inputs_and_outputs_with_items():
    """Two inputs (one with channels, one shared by every item), two outputs (one down-sampled)."""
    rng = np.random.default_rng(5)
    raw = rng.random((3, 70, 90))  # b y x: three items
    mask = rng.random((2, 70, 90))  # c y x: the same for every item
    smooth = box_model(r=1, passes=2)  # receptive radius 2

    def model(raw_b: np.ndarray, mask_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = smooth(raw_b, (1, 2))  # b y x
        m = smooth(mask_b, (2, 3))  # b c y x
        first = s[:, None] * m  # b c y x, 2 channels
        second = np.stack([s, s**2, m[:, 0]], axis=1)[:, :, ::2, ::2]  # b c y/2 x/2, 3 channels
        return first, second

    maps = {
        "first": {"y": AxisMap(), "x": AxisMap()},
        "second": {"y": AxisMap(Fraction(1, 2)), "x": AxisMap(Fraction(1, 2))},
    }
    kw = {"min_size": {"y": 2, "x": 2}, "step": {"y": 2, "x": 2}, "halo": {"y": 2, "x": 2}}
    plan = plan_tiles({"y": 70, "x": 90}, "yx", tile={"y": 20, "x": 24}, **kw)
    assert plan.n_tiles > 9
    outs = {"first": np.full((3, 2, 70, 90), np.nan), "second": np.full((3, 3, 35, 45), np.nan)}
    stitchers = {n: Stitcher(plan, outs[n], "bcyx", maps[n]) for n in outs}
    sources = {"raw": (raw, "byx"), "mask": (mask, "cyx")}
    for batch in iter_batches(plan, sources, batch_size=7, fill_to=7):
        assert batch.arrays["raw"].shape[0] == batch.arrays["mask"].shape[0] == 7
        results = dict(zip(("first", "second"), model(batch.arrays["raw"], batch.arrays["mask"])))
        for k, (item, tile) in enumerate(batch.jobs):
            for name, result in results.items():
                stitchers[name].write(tile, result[k], {"b": item})
    for item in range(3):
        first, second = model(raw[item : item + 1], mask[None])
        np.testing.assert_allclose(outs["first"][item], first[0], atol=1e-12)
        np.testing.assert_allclose(outs["second"][item], second[0], atol=1e-12)


def test_zero_border_cut_and_crop():
    """A zero border: windows see zeros beyond the image (then mirror), outputs exclude the border."""
    image = np.arange(1, 1 + 12 * 10, dtype=float).reshape(12, 10)
    plan = plan_tiles(
        image.shape, "yx", halo={"y": 2, "x": 2}, tile={"y": 8, "x": 8}, border={"y": 4, "x": 4}
    )
    assert plan.image_shape == (20, 18) and plan.source_shape == (12, 10)
    extended = np.pad(image, 4)
    reference = mirror_pad(extended, plan.pad_width("yx"))
    out = np.full(image.shape, np.nan)
    stitcher = Stitcher(plan, out, "yx")
    for t in plan.tiles:
        window = cut(image, "yx", plan, t)
        np.testing.assert_array_equal(window, reference[t.input_slices])
        stitcher.write(t, window)
    np.testing.assert_array_equal(out, image)
    # the kept blocks lie on a regular grid of the output (which excludes the border): chunks of a store
    for axis in "yx":
        starts = sorted({plan.output_window(t, axis)[1].start for t in plan.tiles})
        assert starts[0] == 0 and len({b - a for a, b in itertools.pairwise(starts)}) == 1


class _CountingArray:
    """A lazy image that records the size of every read (as zarr or a TIFF store would serve them)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.reads: list[int] = []

    def __getitem__(self, index):
        block = np.asarray(self.array[index])
        self.reads.append(block.size)
        return block


def test_a_lazy_source_is_read_one_window_at_a_time_for_every_item():
    """Cutting reads the item and the window in one read, never a whole item (a 16k image streams)."""
    rng = np.random.default_rng(3)
    image = rng.random((3, 120, 130), dtype=np.float32)
    source = _CountingArray(image)
    plan = plan_tiles((120, 130), "yx", tile={"y": 48, "x": 48}, halo={"y": 8, "x": 8}, align=False)
    largest_window = max(int(np.prod([s.stop - s.start for s in t.input_slices])) for t in plan.tiles)
    batches = list(iter_batches(plan, {"in": (source, "byx")}, 2))
    assert len(source.reads) == 3 * plan.n_tiles
    assert max(source.reads) <= largest_window < image[0].size
    eager = list(iter_batches(plan, {"in": (image, "byx")}, 2))
    for lazy, direct in zip(batches, eager):
        assert np.array_equal(lazy.arrays["in"], direct.arrays["in"])
