"""The pipeline: bundle -> pre-processing -> tiling -> engine -> stitching -> post-processing.

Every front door (CLI, Python API, ImageJ command, notebook) calls :func:`run`.

Axes are named with bioimage.io letters. The user's image comes with its own axes
(``"yx"``, ``"yxc"``, ``"zyx"``, ``"tczyx"``...); they are mapped once onto the model's
input axes: axes the model does not have (``t``, ``z`` for a 2D model, ``b``) become the
batch, a missing channel axis becomes a channel of size 1. The output comes back in the
user's axis order.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepimagej import ops, tiling
from deepimagej.bundle import load_bundle
from deepimagej.bundle.spec import ModelSpec, TensorSpec
from deepimagej.bundle.validate import check_bundle, check_input
from deepimagej.engines import load_engine
from deepimagej.errors import BundleError, InputImageError

#: progress(done_tiles, total_tiles, elapsed_seconds, peak_rss_bytes)
ProgressCallback = Callable[[int, int, float, int], None]

#: Upper bound on the memory one batch of tiles may take (input + output, float32).
BATCH_MEMORY_BYTES = 256 * 2**20
MAX_BATCH = 16
#: Largest default tile side (model input, halo included) per number of spatial axes, when the
#: caller gives no tile: bounds the memory of the network's activations (a 2D U-Net on a
#: 1280 x 1280 tile needs about 1-2 GB) while keeping the halo's recomputation small.
DEFAULT_MAX_TILE = {1: 65536, 2: 1280, 3: 192}


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, in bytes (0 where unknown)."""
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):  # Windows
        try:
            import psutil

            return int(psutil.Process().memory_info().peak_wset)
        except Exception:  # noqa: BLE001 - memory reporting must never break a run
            return 0


def as_spec(bundle: str | Path | ModelSpec) -> ModelSpec:
    """Accept a bundle folder, descriptor path or an already loaded spec."""
    return bundle if isinstance(bundle, ModelSpec) else load_bundle(bundle)


def guess_axes(shape: tuple[int, ...], spec: ModelSpec) -> str:
    """Guess the axes of an image from its shape and the model's input.

    2D -> ``yx``; 3D -> ``yxc``/``cyx`` when one end matches the model's channel count,
    else ``zyx`` (3D model) or a stack of 2D slices (``byx``); 4D -> ``zyxc``/``czyx``/``bzyx``.
    """
    tensor = spec.inputs[0]
    n_channels = _channel_count(tensor)
    has_z = tensor.has_axis("z")
    stack = "z" if has_z else "b"
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3:
        if n_channels and n_channels > 1 and shape[-1] == n_channels:
            return "yxc"
        if n_channels and n_channels > 1 and shape[0] == n_channels:
            return "cyx"
        if shape[-1] in (3, 4) and n_channels == shape[-1]:
            return "yxc"
        return stack + "yx"
    if len(shape) == 4:
        if n_channels and shape[-1] == n_channels and shape[0] != n_channels:
            return stack + "yxc"
        if n_channels and shape[0] == n_channels:
            return "c" + stack + "yx"
        return "b" + ("zyx" if has_z else "cyx")
    if len(shape) == 5:
        return "bzyxc" if tensor.axis_names.endswith("c") else "bczyx"
    raise InputImageError(f"cannot guess the axes of an image with shape {shape}: pass axes, e.g. axes='tzyx'")


def _channel_count(tensor: TensorSpec) -> int | None:
    if not tensor.has_axis("c"):
        return None
    axis = tensor.axis("c")
    return axis.size if axis.size is not None else (axis.min if axis.step == 0 else None)


def _check_axes_string(axes: str, ndim: int) -> str:
    axes = axes.lower().replace(",", "").replace(" ", "")
    axes = "".join({"n": "b"}.get(a, a) for a in axes)
    if len(axes) != ndim:
        raise InputImageError(f"axes '{axes}' name {len(axes)} dimensions but the image has {ndim}")
    if len(set(axes)) != len(axes) or not set(axes) <= set("bczyxt"):
        raise InputImageError(f"axes '{axes}' must be distinct letters among b, t, c, z, y, x")
    if "y" not in axes or "x" not in axes:
        raise InputImageError(f"axes '{axes}' must include y and x")
    return axes


@dataclass(frozen=True)
class _Layout:
    """How the user's image maps onto the model input (computed once per run)."""

    user_axes: str  # the user's axes, e.g. "tyx"
    batch_axes: str  # user axes folded into the model batch, in user order, e.g. "t"
    model_axes: str  # the model input axes, e.g. "byxc"


def _layout(user_axes: str, tensor: TensorSpec) -> _Layout:
    model_axes = tensor.axis_names
    if "b" not in model_axes:
        model_axes = "b" + model_axes  # a model without batch axis still sees one item at a time
    batch = "".join(a for a in user_axes if a not in model_axes or a == "b")
    return _Layout(user_axes, batch, model_axes)


def to_model_layout(image: np.ndarray, layout: _Layout) -> np.ndarray:
    """Reorder the user's image into the model's input axes, folding extra axes into the batch."""
    user = layout.user_axes
    order = [user.index(a) for a in layout.batch_axes]
    rest = [a for a in layout.model_axes if a != "b"]
    order += [user.index(a) for a in rest if a in user]
    arr = np.transpose(image, order)
    n_batch = int(np.prod([image.shape[user.index(a)] for a in layout.batch_axes])) if layout.batch_axes else 1
    inner = [image.shape[user.index(a)] if a in user else 1 for a in rest]
    arr = arr.reshape([n_batch, *inner])
    # arr axes are now "b" + rest; put b where the model wants it
    current = "b" + "".join(rest)
    return np.transpose(arr, [current.index(a) for a in layout.model_axes])


def from_model_layout(output: np.ndarray, out_axes: str, layout: _Layout, image_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_model_layout` for the model output (axes ``out_axes``)."""
    user = layout.user_axes
    if "b" not in out_axes:
        out_axes = "b" + out_axes
        output = output[np.newaxis]
    keep_channel = "c" in user or ("c" in out_axes and output.shape[out_axes.index("c")] > 1)
    # bring to b + (user non-batch axes order) [+ c if added]
    target = [a for a in user if a not in layout.batch_axes]
    if "c" in out_axes and "c" not in target and keep_channel:
        target.append("c")
    squeeze = [a for a in out_axes if a not in target and a != "b"]
    for a in squeeze:
        if output.shape[out_axes.index(a)] != 1:
            raise BundleError(f"model output axis '{a}' has size {output.shape[out_axes.index(a)]}; cannot map it to image axes '{user}'")
        output = output.take(0, axis=out_axes.index(a))
        out_axes = out_axes.replace(a, "")
    missing = [a for a in target if a not in out_axes]
    for a in missing:  # e.g. user had 'c' but model output lacks it
        output = output[..., np.newaxis]
        out_axes += a
    output = np.transpose(output, [out_axes.index(a) for a in "b" + "".join(target)])
    batch_shape = [image_shape[user.index(a)] for a in layout.batch_axes]
    output = output.reshape(batch_shape + list(output.shape[1:]))
    # now axes: batch axes (user order) + target; put batch axes back into user positions
    current = layout.batch_axes + "".join(target)
    final = [a for a in user] + [a for a in target if a not in user]
    return np.transpose(output, [current.index(a) for a in final])


def output_axes(spec: ModelSpec, input_axes: str) -> str:
    """Axes of the array :func:`run` returns for an image with ``input_axes``."""
    out = spec.outputs[0]
    user = _check_axes_string(input_axes, len(input_axes))
    n_out_channels = _channel_count(out) if out.has_axis("c") else None
    if "c" not in user and out.has_axis("c") and (n_out_channels is None or n_out_channels > 1):
        return user + "c"
    return user


def _spatial_axes(model_axes: str) -> str:
    return "".join(a for a in model_axes if a in "zyx")


def _batch_size(tile_shape: dict[str, int], n_channels: int, n_tiles: int, requested: int | None) -> int:
    if requested:
        return max(1, requested)
    per_tile = 8 * math.prod(tile_shape.values()) * max(1, n_channels)
    return int(max(1, min(MAX_BATCH, n_tiles, BATCH_MEMORY_BYTES // max(per_tile, 1))))


def default_max_tile(spatial: str) -> dict[str, int]:
    """Default bound on the tile size per spatial axis (see :data:`DEFAULT_MAX_TILE`)."""
    side = DEFAULT_MAX_TILE.get(len(spatial), 192)
    return {a: side for a in spatial}


def predict_tensor(
    spec: ModelSpec,
    tensor: np.ndarray,
    *,
    tile: dict[str, int] | None = None,
    weights_format: str | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Run the model (no pre/post-processing) on a tensor already in the model's input axes.

    The tensor's spatial axes are tiled as the bundle prescribes (DeepImageJ Eq. 2-4 or
    bioimage.io min/step/halo), mirror-padded at the borders (zero-padded for a model with
    ``border == "zeros"``, :func:`deepimagej.tiling.zero_border`), run in batches and stitched.
    A model with ``test_time_augmentation`` runs on the 8 rotations/reflections of the tensor
    (:func:`_dihedral_mean`). Returns the first output in the model's output axes.
    """
    if spec.test_time_augmentation:
        return _dihedral_mean(spec, tensor, tile=tile, weights_format=weights_format, batch_size=batch_size,
                              progress=progress)
    weights = check_bundle(spec, weights_format)
    engine = load_engine(weights)
    tensor_spec = spec.inputs[0]
    model_axes = tensor_spec.axis_names
    if "b" not in model_axes:
        raise BundleError(f"{spec.source.name}: input '{tensor_spec.name}' has no batch axis; deepimagej needs one")
    out_spec = spec.outputs[0]
    out_axes = out_spec.axis_names
    spatial = _spatial_axes(model_axes)
    border = tiling.zero_border(spec)
    if border:
        tensor = np.pad(tensor, [(border.get(a, 0),) * 2 for a in model_axes])
    image_shape = {a: tensor.shape[model_axes.index(a)] for a in spatial}
    plan = tiling.plan_for_spec(spec, image_shape, tile, max_tile=default_max_tile(spatial))
    pad = [(0, 0)] * tensor.ndim
    for i, a in enumerate(plan.spatial_axes):
        pad[model_axes.index(a)] = (plan.pad_before[i], plan.pad_after[i])
    padded = tiling.mirror_pad(tensor, pad) if any(p != (0, 0) for p in pad) else tensor

    b_index = model_axes.index("b")
    fixed_batch = engine.fixed_batch_size
    tile_shape = dict(zip(plan.spatial_axes, plan.tile_shape))
    n_channels = tensor.shape[model_axes.index("c")] if "c" in model_axes else 1
    bs = fixed_batch or _batch_size(tile_shape, n_channels, plan.n_tiles * tensor.shape[b_index], batch_size)

    out_b = out_axes.index("b") if "b" in out_axes else None
    output: np.ndarray | None = None
    jobs = [(item, t) for item in range(tensor.shape[b_index]) for t in plan.tiles]
    total = len(jobs)
    start = time.perf_counter()
    for first in range(0, total, bs):
        chunk = jobs[first : first + bs]
        tiles_in = []
        for item, t in chunk:
            index: list[slice | int] = [slice(None)] * tensor.ndim
            index[b_index] = slice(item, item + 1)
            for a, s in zip(plan.spatial_axes, t.input_slices):
                index[model_axes.index(a)] = s
            tiles_in.append(padded[tuple(index)])
        batch = np.concatenate(tiles_in, axis=b_index)
        n_real = batch.shape[b_index]
        if fixed_batch and n_real < fixed_batch:  # fill a fixed-size batch with copies
            reps = [batch.take([-1], axis=b_index)] * (fixed_batch - n_real)
            batch = np.concatenate([batch, *reps], axis=b_index)
        result = np.asarray(engine(batch))
        if output is None:
            output = _allocate_output(result, out_axes, tensor, model_axes, plan.spatial_axes)
        for k, (item, t) in enumerate(chunk):
            src: list[slice | int] = [slice(None)] * result.ndim
            dst: list[slice | int] = [slice(None)] * output.ndim
            if out_b is not None:
                src[out_b] = k
                dst[out_b] = item
            for a, s_out, s_tgt in zip(plan.spatial_axes, t.output_slices, t.target_slices):
                if a in out_axes:
                    src[out_axes.index(a)] = s_out
                    dst[out_axes.index(a)] = s_tgt
            output[tuple(dst)] = result[tuple(src)]
        if progress is not None:
            progress(min(first + bs, total), total, time.perf_counter() - start, peak_rss_bytes())
    assert output is not None
    if border:
        output = output[
            tuple(slice(border[a], output.shape[i] - border[a]) if a in border else slice(None) for i, a in enumerate(out_axes))
        ]
    return output


#: The 8 rotations/reflections of the y-x plane: (quarter turns, then mirrored along x).
DIHEDRAL = tuple((turns, mirrored) for turns in range(4) for mirrored in (False, True))
_SWAP_YX = {"y": "x", "x": "y"}


def _dihedral_mean(spec: ModelSpec, tensor: np.ndarray, *, tile: dict[str, int] | None,
                   progress: ProgressCallback | None, **kwargs) -> np.ndarray:
    """Test-time augmentation: the mean output over the 8 rotations/reflections of the y-x plane.

    Each transformed tensor is predicted as usual (tiles, borders) and the transformation is
    undone on the output before averaging. Progress counts the tiles of all 8 passes.
    """
    in_axes, out_axes = spec.inputs[0].axis_names, spec.outputs[0].axis_names
    if not all(a in in_axes and a in out_axes for a in "yx"):
        raise BundleError(f"{spec.source.name}: test-time augmentation needs y and x axes in the input and output")
    plain = dataclasses.replace(spec, test_time_augmentation=False)
    iy, ix, oy, ox = in_axes.index("y"), in_axes.index("x"), out_axes.index("y"), out_axes.index("x")
    start = time.perf_counter()
    total: np.ndarray | None = None
    for n, (turns, mirrored) in enumerate(DIHEDRAL):
        moved = np.rot90(tensor, turns, axes=(iy, ix))
        if mirrored:
            moved = np.flip(moved, axis=ix)
        # a quarter turn swaps y and x: so do the tile sizes
        moved_tile = {_SWAP_YX.get(a, a): s for a, s in tile.items()} if tile and turns % 2 else tile

        def report(done: int, count: int, _elapsed: float, rss: int, n: int = n) -> None:
            if progress is not None:
                progress(n * count + done, len(DIHEDRAL) * count, time.perf_counter() - start, rss)

        out = predict_tensor(plain, np.ascontiguousarray(moved), tile=moved_tile, progress=report, **kwargs)
        if mirrored:
            out = np.flip(out, axis=ox)
        out = np.rot90(out, -turns, axes=(oy, ox)).astype(np.float32)
        total = out if total is None else total + out
    assert total is not None
    return total / len(DIHEDRAL)


def _allocate_output(
    first: np.ndarray, out_axes: str, tensor: np.ndarray, model_axes: str, spatial: str
) -> np.ndarray:
    shape = list(first.shape)
    for i, a in enumerate(out_axes):
        if a == "b":
            shape[i] = tensor.shape[model_axes.index("b")]
        elif a in spatial:
            shape[i] = tensor.shape[model_axes.index(a)]
    return np.empty(shape, dtype=first.dtype)


def run(
    bundle: str | Path | ModelSpec,
    image: np.ndarray,
    *,
    axes: str | None = None,
    tile: dict[str, int] | None = None,
    weights_format: str | None = None,
    batch_size: int | None = None,
    apply_preprocessing: bool = True,
    apply_postprocessing: bool = True,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Run a model bundle on an image.

    Args:
        bundle: bundle folder, descriptor file (``rdf.yaml``/``config.xml``) or a loaded spec.
        image: the image; it is never modified.
        axes: the image's axes, e.g. ``"yx"``, ``"yxc"``, ``"zyx"``, ``"tyx"``; guessed when omitted.
        tile: model input size per spatial axis, e.g. ``{"y": 256, "x": 256}`` (halo included);
            ``None`` lets the bundle's rules choose (one tile where the model allows it).
        weights_format: run these weights (``onnx``, ``torchscript``, ...) instead of the first runnable.
        batch_size: tiles per model call; chosen from the tile size when omitted.
        apply_preprocessing / apply_postprocessing: apply the bundle's bioimage.io operations.
            The ImageJ front end passes ``False`` for a stage whose ImageJ macros it runs itself.
        progress: called after each batch with (tiles done, tiles total, seconds, peak RSS bytes).

    Returns:
        The first output, with the image's axes in the same order (plus a trailing ``c`` if the
        image had none and the model returns several channels); see :func:`output_axes`.

    Raises:
        BundleError: broken bundle, or macro-only processing requested without ImageJ.
        InputImageError: the image does not fit the model.
        EngineError: the weights cannot be loaded or run.
    """
    spec = as_spec(bundle)
    image = np.asarray(image)
    user_axes = _check_axes_string(axes, image.ndim) if axes else guess_axes(image.shape, spec)
    check_input(spec, image.shape, user_axes)
    _refuse_macro_only(spec, apply_preprocessing, apply_postprocessing)
    tensor_spec = spec.inputs[0]
    layout = _layout(user_axes, tensor_spec)
    tensor = to_model_layout(image, layout)
    if apply_preprocessing and tensor_spec.processing:
        tensor = ops.apply_processing(tensor, layout.model_axes, tensor_spec.processing)
    tensor = np.ascontiguousarray(tensor, dtype=np.float32) if tensor.dtype != np.float32 else tensor
    if "b" not in tensor_spec.axis_names:
        raise BundleError(f"{spec.source.name}: input '{tensor_spec.name}' has no batch axis; deepimagej needs one")
    output = predict_tensor(spec, tensor, tile=tile, weights_format=weights_format, batch_size=batch_size, progress=progress)
    out_spec = spec.outputs[0]
    if apply_postprocessing and out_spec.processing:
        output = ops.apply_processing(output, out_spec.axis_names, out_spec.processing)
    return from_model_layout(output, out_spec.axis_names, layout, image.shape)


def _refuse_macro_only(spec: ModelSpec, pre: bool, post: bool) -> None:
    stages = []
    if pre and spec.preprocessing_macros and not spec.inputs[0].processing:
        stages.append(("pre-processing", spec.preprocessing_macros))
    if post and spec.postprocessing_macros and not spec.outputs[0].processing:
        stages.append(("post-processing", spec.postprocessing_macros))
    if stages:
        what, files = stages[0]
        names = ", ".join(p.name for p in files)
        raise BundleError(
            f"{spec.source.name}: the {what} of this bundle is an ImageJ macro ({names}); run it through ImageJ "
            "(`deepimagej macro`, the DeepImageJ Run command or deepimagej.imagej), or skip it explicitly "
            "(--no-preprocessing / --no-postprocessing, apply_preprocessing=False)"
        )
