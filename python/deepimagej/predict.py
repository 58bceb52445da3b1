"""The pipeline: inputs -> whole-image statistics -> block plan -> engine -> stitching -> outputs.

Every front door (CLI, Python API, ImageJ command, notebook) calls :func:`run` (arrays in,
arrays out) or :func:`predict` (named images with their axes in and out). This module only
orchestrates: :mod:`~deepimagej.tiling` plans, cuts and stitches, :mod:`~deepimagej.ops`
normalises, :mod:`~deepimagej.memory` sizes tiles and batches, :mod:`~deepimagej.engines` run
the model.

A model has named inputs and outputs, each with its own axes. The user's image for an input
comes with its own axes (``"yx"``, ``"yxc"``, ``"zyx"``, ``"tczyx"``...); they are mapped once onto
the input's axes (:class:`Layout`): axes the model does not have (``t``, ``z`` for a 2D model,
``b``) become *items* of the batch, a missing channel axis becomes a channel of size 1. Each
output comes back in the axis order of the input it follows.

Pre-processing is split in two: its statistics (percentiles, mean, std) are computed on the
whole image first, then it is applied to each tile as the tile is cut, so the run never holds a
padded or normalised copy of the whole image.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej import memory, ops, resample, tiling
from deepimagej.bundle import load_bundle
from deepimagej.bundle.spec import ModelSpec, TensorSpec
from deepimagej.bundle.validate import check_bundle, check_input
from deepimagej.engines import Engine, load_engine
from deepimagej.errors import BundleError, InputImageError
from deepimagej.io import ImageData

#: progress(done_tiles, total_tiles, elapsed_seconds, peak_rss_bytes)
ProgressCallback = Callable[[int, int, float, int], None]

ImageLike = Any  # numpy array, xarray.DataArray or io.ImageData

__all__ = [
    "Layout",
    "Prediction",
    "ProgressCallback",
    "RunPlan",
    "as_spec",
    "bind_inputs",
    "guess_axes",
    "plan_run",
    "predict",
    "run",
]


def as_spec(bundle: str | Path | ModelSpec) -> ModelSpec:
    """Accept a bundle folder, descriptor path or an already loaded spec."""
    return bundle if isinstance(bundle, ModelSpec) else load_bundle(bundle)


# --------------------------------------------------------------------------------------------
# axes: the user's image <-> the model's tensor
# --------------------------------------------------------------------------------------------


def guess_axes(shape: tuple[int, ...], spec: ModelSpec, tensor: TensorSpec | None = None) -> str:
    """Guess the axes of an image from its shape and the model input it is for.

    2D -> ``yx``; 3D -> ``yxc``/``cyx`` when one end matches the model's channel count,
    else ``zyx`` (3D model) or a stack of 2D slices (``byx``); 4D -> ``zyxc``/``czyx``/``bzyx``.
    """
    tensor = spec.inputs[0] if tensor is None else tensor
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
class Layout:
    """How the user's image maps onto a model tensor (computed once per run).

    Attributes:
        user_axes: the user's axes, e.g. ``"tyx"``.
        batch_axes: user axes folded into the model batch (items), in user order, e.g. ``"t"``.
        model_axes: the tensor's axes, with ``b`` in front when the model has no batch axis
            (a model without one is called one item at a time).
    """

    user_axes: str
    batch_axes: str
    model_axes: str

    @classmethod
    def of(cls, user_axes: str, tensor: TensorSpec) -> Layout:
        model_axes = tensor.axis_names
        if "b" not in model_axes:
            model_axes = "b" + model_axes
        batch = "".join(a for a in user_axes if a not in model_axes or a == "b")
        return cls(user_axes, batch, model_axes)

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """Reorder the user's image into the model axes, folding extra axes into ``b`` (a view where possible)."""
        user = self.user_axes
        order = [user.index(a) for a in self.batch_axes]
        rest = [a for a in self.model_axes if a != "b"]
        order += [user.index(a) for a in rest if a in user]
        arr = np.transpose(image, order)
        n_batch = int(np.prod([image.shape[user.index(a)] for a in self.batch_axes])) if self.batch_axes else 1
        inner = [image.shape[user.index(a)] if a in user else 1 for a in rest]
        arr = arr.reshape([n_batch, *inner])
        current = "b" + "".join(rest)
        return np.transpose(arr, [current.index(a) for a in self.model_axes])

    def from_model(self, output: np.ndarray, out_axes: str, image_shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
        """Inverse of :meth:`to_model` for a model output (axes ``out_axes``, with ``b``).

        Returns:
            The output in the user's axis order, and its axes: the user's axes (their size where
            the model changed it), plus output axes the image did not have (``c`` when the
            model returns several channels, an index axis...) at the end; output axes of size 1
            that the image did not have are dropped.
        """
        user = self.user_axes
        target = [a for a in user if a not in self.batch_axes]
        for i, a in enumerate(out_axes):
            if a != "b" and a not in target and output.shape[i] > 1:
                target.append(a)
        for a in [a for a in out_axes if a not in target and a != "b"]:  # size 1: dropped
            output = output.take(0, axis=out_axes.index(a))
            out_axes = out_axes.replace(a, "")
        for a in [a for a in target if a not in out_axes]:  # e.g. the image had c, the output lacks it
            output = output[..., np.newaxis]
            out_axes += a
        output = np.transpose(output, [out_axes.index(a) for a in "b" + "".join(target)])
        batch_shape = [image_shape[user.index(a)] for a in self.batch_axes]
        output = output.reshape(batch_shape + list(output.shape[1:]))
        current = self.batch_axes + "".join(target)
        final = [a for a in user if a in current] + [a for a in target if a not in user]
        return np.transpose(output, [current.index(a) for a in final]), "".join(final)


def bind_inputs(
    spec: ModelSpec, image: ImageLike | Mapping[str, ImageLike], axes: str | Mapping[str, str] | None = None
) -> dict[str, ImageData]:
    """The user's image(s) as one :class:`~deepimagej.io.ImageData` per model input, with axes.

    Args:
        spec: the model.
        image: one image (a model with one input) or ``{input name: image}``; an image is a
            numpy array, an ``xarray.DataArray`` (its dims are its axes) or an ``ImageData``.
        axes: the image's axes (``"yx"``, ``"tzyx"``...), or ``{input name: axes}``; read from
            the image where it carries them, else guessed from its shape.

    Raises:
        InputImageError: an input missing or unknown by name, or axes that do not fit.
    """
    names = [t.name for t in spec.inputs]
    if isinstance(image, Mapping) and not isinstance(image, ImageData):
        unknown = [k for k in image if k not in names]
        if unknown:
            raise InputImageError(
                f"{spec.name}: unknown input '{unknown[0]}'; the model's inputs are: {', '.join(names)}"
            )
        missing = [n for n in names if n not in image]
        if missing:
            raise InputImageError(
                f"{spec.name}: input '{missing[0]}' is missing; the model needs {', '.join(names)} "
                "(CLI: --input NAME=PATH for each)"
            )
        given = dict(image)
    elif len(names) > 1:
        raise InputImageError(
            f"{spec.name}: the model has {len(names)} inputs ({', '.join(names)}); pass one image per input, "
            "e.g. run(bundle, {'" + names[0] + "': a, ...}) or --input NAME=PATH"
        )
    else:
        given = {names[0]: image}
    bound = {}
    for tensor in spec.inputs:
        value = given[tensor.name]
        own_axes = axes.get(tensor.name) if isinstance(axes, Mapping) else axes
        bound[tensor.name] = _image_data(spec, tensor, value, own_axes)
    return bound


def _image_data(spec: ModelSpec, tensor: TensorSpec, value: ImageLike, axes: str | None) -> ImageData:
    if isinstance(value, ImageData):
        data = value
        array, known = np.asarray(value.array), value.axes
    elif hasattr(value, "dims") and hasattr(value, "values"):  # xarray.DataArray
        array = np.asarray(value.values)
        known = "".join(str(d).lower()[:1] for d in value.dims)
        data = ImageData(array, known)
    else:
        array, known = np.asarray(value), None
        data = ImageData(array, "")
    if np.iscomplexobj(array):
        raise InputImageError(f"input '{tensor.name}': complex-valued images are not supported; pass the real part")
    user_axes = _check_axes_string(axes or known, array.ndim) if (axes or known) else guess_axes(array.shape, spec, tensor)
    check_input(spec, array.shape, user_axes, tensor)
    return dataclasses.replace(data, array=array, axes=user_axes)


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """How a run will go: the block plan and the memory decision behind it.

    Attributes:
        plan: the tile plan (every input is cut, every output stitched with it).
        choice: tile size, batch and estimated peak memory (:func:`deepimagej.memory.choose`).
        n_items: batch items (slices of a stack run by a 2D model, time points...).
        weights_format: the weights that run.
        geometry: the model's geometry (:func:`deepimagej.tiling.model_geometry`).
    """

    plan: tiling.TilePlan
    choice: memory.Choice
    n_items: int
    weights_format: str
    geometry: tiling.ModelGeometry

    def describe(self) -> list[str]:
        """One line per fact, for ``info --image`` and verbose runs."""
        p, c = self.plan, self.choice
        tile = " x ".join(f"{a}={q}" for a, q in zip(p.spatial_axes, p.tile_shape))
        grid = " x ".join(str(n) for n in p.grid_shape)
        return [
            f"plan        : {p.n_tiles} tile(s) ({grid}) of {tile} per item, {self.n_items} item(s), "
            f"batch {c.batch}, halo {', '.join(f'{a}={h}' for a, h in zip(p.spatial_axes, p.halo))} ({p.rule} rule)",
            f"memory      : estimated peak {memory.format_bytes(c.estimated_peak)} of a budget of "
            f"{memory.format_bytes(c.budget)} ({c.model.per_pixel:.0f} bytes per pixel, {c.model.source})",
        ]


def _spatial_shape(spec: ModelSpec, tensors: Mapping[str, tuple[np.ndarray, str]], spatial: str) -> dict[str, int]:
    """Size of each tiled axis, checked to be the same in every input that has it."""
    shape: dict[str, int] = {}
    first: dict[str, str] = {}
    for name, (array, axes) in tensors.items():
        for a in spatial:
            if a not in axes:
                continue
            n = int(array.shape[axes.index(a)])
            if a in shape and shape[a] != n:
                raise InputImageError(
                    f"{spec.name}: input '{name}' is {n} pixels along {a} but input '{first[a]}' is {shape[a]}; "
                    "the inputs must have the same size"
                )
            shape.setdefault(a, n)
            first.setdefault(a, name)
    for a in spatial:
        shape.setdefault(a, 1)
    return shape


def _items(tensors: Mapping[str, tuple[np.ndarray, str]]) -> int:
    counts = {name: int(array.shape[axes.index("b")]) for name, (array, axes) in tensors.items()}
    many = {n for n in counts.values() if n > 1}
    if len(many) > 1:
        detail = ", ".join(f"'{k}' {v}" for k, v in counts.items())
        raise InputImageError(f"the inputs hold different numbers of images along their stack/time axes ({detail})")
    return max(counts.values(), default=1)


def _fixed_batch(spec: ModelSpec, engine: Engine) -> int | None:
    for t in spec.inputs:
        if not t.has_axis("b"):
            return 1
        size = t.axis("b").size
        if size is not None:
            return size
    return engine.fixed_batch_size


def _output_bytes(spec: ModelSpec, geometry: tiling.ModelGeometry, shape: Mapping[str, int], n_items: int) -> int:
    """Bytes of the stitched outputs (float32; channels as the descriptor says, else 1)."""
    total = 0
    for t in spec.outputs:
        n = n_items * 4
        for ax in t.axes:
            amap = geometry.outputs.get(t.name, {}).get(ax.name)
            if ax.name in shape and amap is not None:
                n *= max(1, int(amap.size(shape[ax.name])))
            elif ax.name != "b":
                n *= ax.size or ax.min or 1
        total += n
    return total


def plan_run(
    spec: ModelSpec,
    tensors: Mapping[str, tuple[np.ndarray, str]],
    engine: Engine | None,
    *,
    weights_format: str,
    tile: dict[str, int] | None = None,
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    trust_code: bool = False,
    extra_bytes: int = 0,
    measure: bool = False,
) -> RunPlan:
    """Plan a run: tile size and batch under the memory budget, then the block plan.

    Args:
        spec: the model.
        tensors: input name -> (array in the model's layout, its axes).
        engine: the loaded engine (its fixed batch size), or ``None`` when only planning.
        weights_format: the weights that will run.
        tile: the user's tile size.
        batch_size: the user's batch size.
        max_memory: the budget (bytes or ``"1.5G"``); measured memory model, strict. ``None``:
            :func:`deepimagej.memory.default_budget` with the best known model.
        trust_code: the bundle's code is trusted (for the memory probe of code-carrying weights).
        extra_bytes: memory the run allocates besides the outputs (whole-image copies).
        measure: measure the model's memory (once, cached) even without ``max_memory``.
    """
    geometry = tiling.model_geometry(spec)
    shape = _spatial_shape(spec, tensors, geometry.spatial_axes)
    n_items = _items(tensors)
    weights = spec.weights[weights_format]
    strict = max_memory is not None
    budget = memory.parse_size(max_memory) if strict else memory.default_budget()
    inputs_bytes = sum(array.nbytes for array, _ in tensors.values())
    model = memory.estimate(spec, weights)
    if model.source != "measured" and (strict or measure):
        model = memory.measure(spec, weights, trust_code=trust_code)
    # without a loaded engine (planning only), a run's process holds the loaded model and the inputs
    resident = memory.rss_bytes() if engine is not None else max(memory.rss_bytes(), int(model.loaded) + inputs_bytes)
    baseline = resident + _output_bytes(spec, geometry, shape, n_items) + extra_bytes
    # what earlier runs of this engine left resident is its runtime's pool, reused by this run's calls
    # (not the inputs, which the user may have loaded since)
    held = resident - inputs_bytes
    reusable = max(0, held - engine.resident_bytes) if engine is not None and engine.resident_bytes else 0
    fixed = _fixed_batch(spec, engine) if engine is not None else None

    def decide(model: memory.MemoryModel) -> memory.Choice:
        return memory.choose(
            spec, shape, model, budget=budget, baseline=baseline, reusable=reusable,
            call_limit=None if strict else memory.DEFAULT_CALL_BYTES, n_items=n_items, fixed_batch=fixed,
            tile=tile, batch_size=batch_size, strict=strict, geometry=geometry,
        )

    choice = decide(model)
    # the tiles depend on the model's memory: measure it (once per weights file) unless it is known or
    # the image fits one call even by the conservative estimate
    if model.source != "measured" and choice.n_tiles > 1 and not tile:
        model = memory.measure(spec, weights, trust_code=trust_code)
        choice = decide(model)
    plan = tiling.plan_for_spec(spec, shape, choice.tile, geometry=geometry)
    return RunPlan(plan, choice, n_items, weights_format, geometry)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """The result of :func:`predict`.

    Attributes:
        outputs: output name -> image, in the axis order of the input it follows.
        run_plan: how the run went (tiles, batch, memory decision).
        seconds: wall time of the model part (tiles, engine, stitching).
        peak_rss: peak resident memory of the process at the end, in bytes.
    """

    outputs: dict[str, ImageData]
    run_plan: RunPlan
    seconds: float
    peak_rss: int


def run(
    bundle: str | Path | ModelSpec,
    image: ImageLike | Mapping[str, ImageLike],
    *,
    axes: str | Mapping[str, str] | None = None,
    tile: dict[str, int] | None = None,
    weights_format: str | None = None,
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    apply_preprocessing: bool = True,
    apply_postprocessing: bool = True,
    progress: ProgressCallback | None = None,
    trust_code: bool = False,
    pixel_size: Mapping[str, float] | None = None,
) -> np.ndarray | dict[str, np.ndarray]:
    """Run a model bundle on an image (or one image per input).

    Args:
        bundle: bundle folder, descriptor file (``rdf.yaml``/``config.xml``) or a loaded spec.
        image: the image (a model with one input), or ``{input name: image}``; numpy arrays,
            ``xarray.DataArray`` s or :class:`~deepimagej.io.ImageData`. Never modified.
        axes: the image's axes, e.g. ``"yx"``, ``"yxc"``, ``"zyx"``, ``"tyx"``, or
            ``{input name: axes}``; guessed when omitted.
        tile: model input size per spatial axis, e.g. ``{"y": 256, "x": 256}`` (halo included);
            ``None`` lets the memory budget and the bundle's rules choose.
        weights_format: run these weights (``onnx``, ``torchscript``, ...) instead of the first runnable.
        batch_size: tiles per model call; chosen from the memory budget when omitted.
        max_memory: memory budget of the whole process (bytes, or ``"1.5G"``): tiles and batch
            are sized so that the estimated peak stays below it (the model's memory is measured
            once and cached); default: half of the memory available.
        apply_preprocessing / apply_postprocessing: apply the bundle's bioimage.io operations.
            The ImageJ front end passes ``False`` for a stage whose ImageJ macros it runs itself.
        progress: called after each batch with (tiles done, tiles total, seconds, peak RSS bytes).
        trust_code: allow weights that run Python code shipped in the bundle
            (``pytorch_state_dict``).
        pixel_size: the image's element size in micrometres per spatial axis (its calibration,
            :func:`deepimagej.resample.image_pixel_size`). When the bundle declares another element
            size (:func:`deepimagej.resample.model_pixel_size`), the inputs are resampled to the
            model's before pre-processing and the outputs back to the image's grid before
            post-processing, as the U-Net plugin does; ``None`` runs the image as it is.

    Returns:
        The output in the image's axis order (plus a trailing ``c`` if the image had none and
        the model returns several channels), or ``{output name: array}`` for a model with
        several outputs. :func:`predict` also returns each output's axes.

    Raises:
        BundleError: broken bundle, or macro-only processing requested without ImageJ.
        InputImageError: the image does not fit the model.
        EngineError: the weights cannot be loaded or run.
    """
    spec = as_spec(bundle)
    result = predict(
        spec, bind_inputs(spec, image, axes), tile=tile, weights_format=weights_format, batch_size=batch_size,
        max_memory=max_memory, apply_preprocessing=apply_preprocessing, apply_postprocessing=apply_postprocessing,
        progress=progress, trust_code=trust_code, pixel_size=pixel_size,
    )
    arrays = {name: out.array for name, out in result.outputs.items()}
    return arrays if len(arrays) > 1 else next(iter(arrays.values()))


def predict(
    spec: ModelSpec,
    inputs: Mapping[str, ImageData],
    *,
    tile: dict[str, int] | None = None,
    weights_format: str | None = None,
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    apply_preprocessing: bool = True,
    apply_postprocessing: bool = True,
    progress: ProgressCallback | None = None,
    trust_code: bool = False,
    pixel_size: Mapping[str, float] | None = None,
) -> Prediction:
    """Run ``spec`` on named images (see :func:`bind_inputs`); every output comes back with its axes.

    Arguments as for :func:`run`.
    """
    _refuse_macro_only(spec, apply_preprocessing, apply_postprocessing)
    weights = check_bundle(spec, weights_format)
    engine = load_engine(weights, [t.name for t in spec.inputs], [t.name for t in spec.outputs], trust_code=trust_code)
    if engine.resident_bytes is None:
        engine.resident_bytes = memory.rss_bytes()
    layouts = {t.name: Layout.of(inputs[t.name].axes, t) for t in spec.inputs}
    raw = {t.name: (layouts[t.name].to_model(inputs[t.name].array), layouts[t.name].model_axes) for t in spec.inputs}
    # element size: the model runs at its own pixel size; pre/post-processing at the image's
    rescaling = resample.rescale_factors(pixel_size, resample.model_pixel_size(spec))
    image_sizes = {name: dict(zip(axes, array.shape)) for name, (array, axes) in raw.items()}
    raw = {name: (resample.rescale(array, axes, rescaling), axes) for name, (array, axes) in raw.items()}
    references = dict(raw)
    geometry_axes = tiling.model_geometry(spec).spatial_axes
    sources: dict[str, tuple[np.ndarray, str]] = {}
    transforms: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {}
    extra = 0
    for t in spec.inputs:
        array, model_axes = raw[t.name]
        steps = t.processing if apply_preprocessing else ()
        pipeline = ops.fit(steps, array, model_axes, references=references)
        if any(pipeline.varies_along(a) for a in geometry_axes):  # statistics per pixel: not blockwise
            array = pipeline.apply(array)
            extra += array.nbytes
            pipeline = ops.fit((), array, model_axes)
        sources[t.name] = (array, model_axes)
        transforms[t.name] = pipeline.apply
    start = time.perf_counter()
    plan_kwargs = {"weights_format": weights.format, "tile": tile, "batch_size": batch_size,
                   "max_memory": max_memory, "trust_code": trust_code, "extra_bytes": extra}
    if spec.test_time_augmentation:
        stitched, run_plan = _dihedral_mean(spec, engine, sources, transforms, plan_kwargs, progress)
    else:
        run_plan = plan_run(spec, sources, engine, **plan_kwargs)
        stitched = _run_blocks(spec, engine, run_plan, sources, transforms, progress)
    seconds = time.perf_counter() - start
    outputs = {}
    for t in spec.outputs:
        array, out_axes = stitched[t.name]
        array = resample.rescale_back(array, out_axes, rescaling, image_sizes[_followed_input(spec, t)])
        if apply_postprocessing and t.processing:
            refs = {**references, **{name: value for name, value in stitched.items()}}
            array = ops.apply_processing(array, out_axes, t.processing, references=refs)
        follow = _followed_input(spec, t)
        image = inputs[follow]
        out, axes = layouts[follow].from_model(array, out_axes, image.array.shape)
        outputs[t.name] = ImageData(out, axes, _output_pixel_size(image, run_plan, t), image.unit)
    return Prediction(outputs, run_plan, seconds, memory.peak_rss_bytes())


def _run_blocks(
    spec: ModelSpec,
    engine: Engine,
    run_plan: RunPlan,
    sources: Mapping[str, tuple[np.ndarray, str]],
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]],
    progress: ProgressCallback | None,
    report: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[np.ndarray, str]]:
    """Cut every input, call the engine batch by batch and stitch every output (model axes, with ``b``)."""
    plan, batch_size, geometry = run_plan.plan, run_plan.choice.batch, run_plan.geometry
    fixed = _fixed_batch(spec, engine)
    stitchers: dict[str, tiling.Stitcher] = {}
    total = plan.n_tiles * run_plan.n_items
    done = 0
    start = time.perf_counter()
    for batch in tiling.iter_batches(plan, sources, batch_size, fill_to=fixed, transforms=transforms):
        feed = {}
        for t in spec.inputs:
            array = batch.arrays[t.name]
            feed[t.name] = array if t.has_axis("b") else array[0]
        results = engine(feed)
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
            if t.name not in stitchers:
                stitchers[t.name] = _allocate(plan, geometry, t.name, result, out_axes, run_plan.n_items)
            b = out_axes.index("b")
            for k, (item, tile) in enumerate(batch.jobs):
                stitchers[t.name].write(tile, result.take(k, axis=b), {"b": item})
        done += len(batch.jobs)
        if report is not None:
            report(done, total)
        elif progress is not None:
            progress(done, total, time.perf_counter() - start, memory.peak_rss_bytes())
    return {name: (s.out, s.axes) for name, s in stitchers.items()}


def _allocate(
    plan: tiling.TilePlan, geometry: tiling.ModelGeometry, name: str, first: np.ndarray, axes: str, n_items: int
) -> tiling.Stitcher:
    maps = geometry.outputs.get(name, {})
    shape = list(first.shape)
    for i, a in enumerate(axes):
        if a == "b":
            shape[i] = n_items
        elif a in plan.spatial_axes and maps.get(a) is not None:
            shape[i] = plan.output_size(a, maps[a])  # type: ignore[arg-type]
    return tiling.Stitcher(plan, np.empty(shape, dtype=first.dtype), axes, maps)


#: The 8 rotations/reflections of the y-x plane: (quarter turns, then mirrored along x).
DIHEDRAL = tuple((turns, mirrored) for turns in range(4) for mirrored in (False, True))


def _dihedral_mean(
    spec: ModelSpec,
    engine: Engine,
    sources: Mapping[str, tuple[np.ndarray, str]],
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]],
    plan_kwargs: dict[str, Any],
    progress: ProgressCallback | None,
) -> tuple[dict[str, tuple[np.ndarray, str]], RunPlan]:
    """Test-time augmentation: every output is the mean over the 8 rotations/reflections of the y-x plane.

    Each transformed input is predicted as usual (tiles, borders) and the transformation is
    undone on the outputs before averaging. Progress counts the tiles of all 8 passes.
    """
    for t in (*spec.inputs, *spec.outputs):
        if not (t.has_axis("y") and t.has_axis("x")):
            raise BundleError(f"{spec.source.name}: test-time augmentation needs y and x axes in every tensor")
    tile = plan_kwargs.get("tile")
    start = time.perf_counter()
    totals: dict[str, tuple[np.ndarray, str]] = {}
    first_plan: RunPlan | None = None
    for n, (turns, mirrored) in enumerate(DIHEDRAL):
        moved = {}
        for name, (array, axes) in sources.items():
            a = np.rot90(array, turns, axes=(axes.index("y"), axes.index("x")))
            moved[name] = (np.flip(a, axis=axes.index("x")) if mirrored else a, axes)
        swapped = {"y": "x", "x": "y"}
        moved_tile = {swapped.get(a, a): s for a, s in tile.items()} if tile and turns % 2 else tile
        run_plan = plan_run(spec, moved, engine, **{**plan_kwargs, "tile": moved_tile})
        first_plan = first_plan or run_plan

        def report(done: int, count: int, n: int = n) -> None:
            if progress is not None:
                progress(n * count + done, len(DIHEDRAL) * count, time.perf_counter() - start, memory.peak_rss_bytes())

        outs = _run_blocks(spec, engine, run_plan, moved, transforms, None, report)
        for name, (out, axes) in outs.items():
            iy, ix = axes.index("y"), axes.index("x")
            if mirrored:
                out = np.flip(out, axis=ix)
            out = np.rot90(out, -turns, axes=(iy, ix)).astype(np.float32)
            totals[name] = (out, axes) if name not in totals else (totals[name][0] + out, axes)
    assert first_plan is not None
    return {name: (total / len(DIHEDRAL), axes) for name, (total, axes) in totals.items()}, first_plan


def _followed_input(spec: ModelSpec, output: TensorSpec) -> str:
    """The input whose axis order an output comes back in: the one its sizes refer to, else the first."""
    names = {t.name for t in spec.inputs}
    for ax in output.axes:
        if ax.reference is not None and ax.reference[0] in names:
            return ax.reference[0]
    return spec.inputs[0].name


def _output_pixel_size(image: ImageData, run_plan: RunPlan, output: TensorSpec) -> dict[str, float]:
    """The input's pixel size, divided by the output's scale along each axis it follows."""
    maps = run_plan.geometry.outputs.get(output.name, {})
    sizes = {}
    for a, size in image.pixel_size.items():
        amap = maps.get(a)
        if a in maps and amap is None:
            continue
        sizes[a] = size / float(amap.scale) if amap is not None else size
    return sizes


def _refuse_macro_only(spec: ModelSpec, pre: bool, post: bool) -> None:
    stages = []
    if pre and spec.preprocessing_macros and not any(t.processing for t in spec.inputs):
        stages.append(("pre-processing", spec.preprocessing_macros))
    if post and spec.postprocessing_macros and not any(t.processing for t in spec.outputs):
        stages.append(("post-processing", spec.postprocessing_macros))
    if stages:
        what, files = stages[0]
        names = ", ".join(p.name for p in files)
        raise BundleError(
            f"{spec.source.name}: the {what} of this bundle is an ImageJ macro ({names}); run it through ImageJ "
            "(`deepimagej macro`, the DeepImageJ Run command or deepimagej.imagej), or skip it explicitly "
            "(--no-preprocessing / --no-postprocessing, apply_preprocessing=False)"
        )
