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
import functools
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from deepimagej import blocks, distributed, memory, ops, resample, stores, tiling
from deepimagej.audit import require_allowed
from deepimagej.bundle import load_bundle
from deepimagej.bundle.axes import image_axes
from deepimagej.bundle.spec import ModelSpec, TensorSpec
from deepimagej.bundle.validate import check_bundle, check_input
from deepimagej.engines import Engine, load_engine
from deepimagej.errors import BundleError, DeepImageJWarning, InputImageError
from deepimagej.io import NAN_POLICIES, ImageData, check_pixels
from deepimagej.layout import Layout, UserOrder, guess_axes, is_lazy

ProgressCallback = blocks.ProgressCallback

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


def bind_inputs(
    spec: ModelSpec,
    image: ImageLike | Mapping[str, ImageLike],
    axes: str | Mapping[str, str] | None = None,
    nan: str = "error",
) -> dict[str, ImageData]:
    """The user's image(s) as one :class:`~deepimagej.io.ImageData` per model input, with axes.

    Args:
        spec: the model.
        image: one image (a model with one input) or ``{input name: image}``; an image is a
            numpy array, an ``xarray.DataArray`` (its dims are its axes) or an ``ImageData``.
        axes: the image's axes (``"yx"``, ``"tzyx"``...), or ``{input name: axes}``; read from
            the image where it carries them, else guessed from its shape.
        nan: NaN/Inf pixels: ``"error"`` (refuse), ``"zero"`` or ``"mean"`` (replace them, with a
            :class:`~deepimagej.errors.DeepImageJWarning` saying how many); see :func:`deepimagej.io.check_pixels`.

    Raises:
        InputImageError: an input missing or unknown by name, axes that do not fit, complex
            pixels, or NaN/Inf pixels with ``nan="error"``.
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
        bound[tensor.name] = _image_data(spec, tensor, value, own_axes, nan)
    return bound


def _image_data(
    spec: ModelSpec, tensor: TensorSpec, value: ImageLike, axes: str | None, nan: str
) -> ImageData:
    if isinstance(value, ImageData):
        data, array, known = value, value.array, value.axes
    elif isinstance(value, stores.LazyImage):
        data = ImageData(
            value.array,
            value.axes,
            value.pixel_size,
            value.unit,
            {"path": str(value.path)} if value.path is not None else {},
        )
        array, known = value.array, value.axes
    elif hasattr(value, "dims") and hasattr(value, "data"):  # xarray.DataArray (numpy- or dask-backed)
        array = value.data
        known = "".join(str(d).lower()[:1] for d in value.dims)
        data = ImageData(array, known)
    else:
        array, known = (value if is_lazy(value) else np.asarray(value)), None
        data = ImageData(array, "")
    name = f"input '{tensor.name}'" if len(spec.inputs) > 1 else "image"
    if is_lazy(array):  # read block by block: the pixel check runs on each block as it is read
        array = _checked_lazily(array, nan, name)
    else:
        array, replaced = check_pixels(
            array, nan, name=name
        )  # complex and NaN/Inf pixels: refused or replaced
        if replaced:
            warnings.warn(
                f"{replaced} NaN/infinite pixel(s) of the {name} replaced by the {nan} value",
                DeepImageJWarning,
                stacklevel=4,
            )
    ndim = len(array.shape)
    given = axes or known
    user_axes = image_axes(given, ndim, required="yx") if given else guess_axes(array.shape, spec, tensor)
    check_input(spec, tuple(array.shape), user_axes, tensor)
    if is_lazy(array):
        return dataclasses.replace(data, array=array, axes=user_axes, metadata={**data.metadata, "nan": nan})
    return dataclasses.replace(data, array=array, axes=user_axes)


def _checked_lazily(array: Any, nan: str, name: str) -> Any:
    """The checks of :func:`~deepimagej.io.check_pixels` that need no pixel; NaN/Inf are looked
    for in each block as it is read (:func:`deepimagej.blocks.finite_then`)."""
    kind = np.dtype(array.dtype).kind
    if kind == "c":
        raise InputImageError(
            f"{name} has complex pixels ({array.dtype}); models run on real values: "
            "take the magnitude or the real part first"
        )
    if kind not in "biuf":
        raise InputImageError(f"{name} has non-numeric pixels ({array.dtype}); give a numeric image")
    if nan not in NAN_POLICIES:
        raise InputImageError(f"nan={nan!r}: use one of {', '.join(NAN_POLICIES)}")
    if nan == "mean" and kind == "f":
        raise InputImageError(
            f"{name} is read block by block: nan='mean' needs a pass over the whole image; "
            "use nan='zero' (--nan=zero) or clean the image first"
        )
    return array


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------


class PlanOptions(TypedDict):
    """The options of :func:`plan_run` that :func:`predict` passes on (to every pass of a run)."""

    weights_format: str
    tile: dict[str, int] | None
    batch_size: int | None
    max_memory: int | str | None
    trust_code: bool
    extra_bytes: int
    streamed: bool


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


def _spatial_shape(
    spec: ModelSpec, tensors: Mapping[str, tuple[np.ndarray, str]], spatial: str
) -> dict[str, int]:
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


def _items(tensors: Mapping[str, tuple[Any, str]]) -> int:
    try:
        return tiling.item_count(tensors)
    except tiling.TilingError:
        detail = ", ".join(f"'{k}' {a.shape[x.index('b')]}" for k, (a, x) in tensors.items())
        raise InputImageError(
            f"the inputs hold different numbers of images along their stack/time axes ({detail})"
        ) from None


def _output_bytes(
    spec: ModelSpec, geometry: tiling.ModelGeometry, shape: Mapping[str, int], n_items: int
) -> int:
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
    streamed: bool = False,
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
        streamed: the outputs go to a store block by block (they take no memory).
    """
    geometry = tiling.model_geometry(spec)
    shape = _spatial_shape(spec, tensors, geometry.spatial_axes)
    n_items = _items(tensors)
    weights = spec.weights[weights_format]
    strict = max_memory is not None
    budget = memory.parse_size(max_memory) if max_memory is not None else memory.default_budget()
    inputs_bytes = sum(array.nbytes for array, _ in tensors.values() if not is_lazy(array))
    model = memory.estimate(spec, weights)
    if model.source != "measured" and (strict or measure):
        model = memory.measure(spec, weights, trust_code=trust_code)
    # without a loaded engine (planning only), a run's process holds the loaded model and the inputs
    resident = (
        memory.rss_bytes()
        if engine is not None
        else max(memory.rss_bytes(), int(model.loaded) + inputs_bytes)
    )
    outputs_bytes = 0 if streamed else _output_bytes(spec, geometry, shape, n_items)
    baseline = resident + outputs_bytes + extra_bytes
    # what earlier runs of this engine left resident is its runtime's pool, reused by this run's calls
    # (not the inputs, which the user may have loaded since)
    held = resident - inputs_bytes
    reusable = max(0, held - engine.resident_bytes) if engine is not None and engine.resident_bytes else 0
    fixed = blocks.fixed_batch(spec, engine) if engine is not None else None

    def decide(model: memory.MemoryModel) -> memory.Choice:
        return memory.choose(
            spec,
            shape,
            model,
            budget=budget,
            baseline=baseline,
            reusable=reusable,
            call_limit=None if strict else memory.DEFAULT_CALL_BYTES,
            n_items=n_items,
            fixed_batch=fixed,
            tile=tile,
            batch_size=batch_size,
            strict=strict,
            geometry=geometry,
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
    trust: bool = False,
    nan: str = "error",
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
        trust_code: the former name of ``trust``.
        trust: run even what the bundle's audit refuses (file, network or process access, Python
            code shipped in the bundle such as ``pytorch_state_dict``); without it, a bundle whose
            audit refuses something runs only when the user trusts it (``deepimagej trust``).
        nan: NaN/Inf pixels in the image: ``"error"`` (refuse), ``"zero"`` or ``"mean"`` (replace
            them, with a warning saying how many).
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
        InputImageError: the image does not fit the model, or has complex or NaN/Inf pixels.
        UntrustedBundleError: the bundle's audit refused something and the bundle is not trusted.
        EngineError: the weights cannot be loaded or run.
    """
    spec = as_spec(bundle)
    result = predict(
        spec,
        bind_inputs(spec, image, axes, nan=nan),
        tile=tile,
        weights_format=weights_format,
        batch_size=batch_size,
        max_memory=max_memory,
        apply_preprocessing=apply_preprocessing,
        apply_postprocessing=apply_postprocessing,
        progress=progress,
        trust_code=trust_code,
        trust=trust,
        pixel_size=pixel_size,
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
    trust: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    scheduler: Any = None,
    pixel_size: Mapping[str, float] | None = None,
) -> Prediction:
    """Run ``spec`` on named images (see :func:`bind_inputs`); every output comes back with its axes.

    Args:
        out: stream every output to this store (``*.ome.zarr``, ``*.zarr``, ``*.tif``) block by
            block instead of holding it in memory; the returned images then read from it.
        overwrite: replace an existing ``out``.
        scheduler: run the blocks on a Dask cluster: a ``distributed.Client``, a scheduler
            address (``"tcp://host:8786"``) or a number of local worker processes; needs ``out``
            (the workers write into it).
        others: as for :func:`run`.
    """
    _refuse_macro_only(spec, apply_preprocessing, apply_postprocessing)
    weights = check_bundle(spec, weights_format)
    trusted = require_allowed(
        spec, weights, trust or trust_code
    )  # the audit: refuses file/process access unless trusted
    engine = load_engine(
        weights, [t.name for t in spec.inputs], [t.name for t in spec.outputs], trust_code=trusted
    )
    if engine.resident_bytes is None:
        engine.resident_bytes = memory.rss_bytes()
    layouts = {t.name: Layout.of(inputs[t.name].axes, t) for t in spec.inputs}
    raw = {
        t.name: (layouts[t.name].to_model(inputs[t.name].array), layouts[t.name].model_axes)
        for t in spec.inputs
    }
    # element size: the model runs at its own pixel size; pre/post-processing at the image's
    rescaling = resample.rescale_factors(pixel_size, resample.model_pixel_size(spec))
    if rescaling and (out is not None or any(is_lazy(a) for a, _ in raw.values())):
        raise InputImageError(
            f"{spec.name}: the image's element size differs from the model's, and resampling needs the whole image "
            "in memory; run it in memory (a .tif/.npy output), or resample the image first"
        )
    image_sizes = {name: dict(zip(axes, array.shape)) for name, (array, axes) in raw.items()}
    raw = {name: (resample.rescale(array, axes, rescaling), axes) for name, (array, axes) in raw.items()}
    references = dict(raw)
    geometry_axes = tiling.model_geometry(spec).spatial_axes
    sources: dict[str, tuple[Any, str]] = {}
    transforms: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {}
    extra = 0
    for t in spec.inputs:
        array, model_axes = raw[t.name]
        steps = t.processing if apply_preprocessing else ()
        pipeline = ops.fit(steps, array, model_axes, references=references)
        if any(pipeline.varies_along(a) for a in geometry_axes):  # statistics per pixel: not blockwise
            if is_lazy(array):
                raise InputImageError(
                    f"{spec.name}: the pre-processing of input '{t.name}' has statistics per pixel, so it needs the "
                    "whole image in memory; read the image whole (not from a zarr/dask array)"
                )
            array = pipeline.apply(array)
            extra += array.nbytes
            pipeline = ops.fit((), array, model_axes)
        sources[t.name] = (array, model_axes)
        nan = inputs[t.name].metadata.get("nan")  # a lazy input's pixels are checked block by block
        if nan is not None and np.dtype(array.dtype).kind == "f":
            if nan == "zero" and any(ops.needs_statistics(step) for step in steps):
                raise InputImageError(
                    f"{spec.name}: replacing NaN pixels (nan='zero') of an image read block by block cannot go "
                    f"with the whole-image statistics of input '{t.name}''s pre-processing; clean the image first"
                )
            transforms[t.name] = functools.partial(blocks.finite_then, nan, pipeline)
        else:
            transforms[t.name] = functools.partial(blocks.apply_to_item, pipeline)
    start = time.perf_counter()
    plan_kwargs: PlanOptions = {
        "weights_format": weights.format,
        "tile": tile,
        "batch_size": batch_size,
        "max_memory": max_memory,
        "trust_code": trusted,
        "extra_bytes": extra,
        "streamed": out is not None,
    }
    if scheduler is not None and out is None:
        raise InputImageError(
            "running on a Dask cluster writes the outputs to a store: give out='result.ome.zarr'"
        )
    if out is not None:
        client, own = _client(scheduler)
        try:
            return _predict_streamed(
                spec,
                engine,
                inputs,
                layouts,
                sources,
                transforms,
                plan_kwargs,
                progress,
                Path(out),
                overwrite,
                apply_postprocessing,
                start,
                client,
            )
        finally:
            if own:
                client.close()
                cluster = getattr(client, "cluster", None)
                if cluster is not None:
                    cluster.close()
    if spec.test_time_augmentation:
        stitched, run_plan = _dihedral_mean(spec, engine, sources, transforms, plan_kwargs, progress)
    else:
        run_plan = plan_run(spec, sources, engine, **plan_kwargs)
        stitched = blocks.run_blocks(
            spec,
            engine,
            run_plan.plan,
            run_plan.geometry,
            run_plan.n_items,
            run_plan.choice.batch,
            sources,
            transforms,
            progress,
        )
    seconds = time.perf_counter() - start
    outputs = {}
    for t in spec.outputs:
        array, out_axes = stitched[t.name]
        array = resample.rescale_back(array, out_axes, rescaling, image_sizes[_followed_input(spec, t)])
        if apply_postprocessing and t.processing:
            refs = {**references, **stitched}
            array = ops.apply_processing(array, out_axes, t.processing, references=refs)
        follow = _followed_input(spec, t)
        image = inputs[follow]
        out_array, axes = layouts[follow].from_model(array, out_axes, image.array.shape)
        outputs[t.name] = ImageData(out_array, axes, _output_pixel_size(image, run_plan, t), image.unit)
    return Prediction(outputs, run_plan, seconds, memory.peak_rss_bytes())


def _predict_streamed(
    spec: ModelSpec,
    engine: Engine,
    inputs: Mapping[str, ImageData],
    layouts: Mapping[str, Layout],
    sources: Mapping[str, tuple[Any, str]],
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]],
    plan_kwargs: PlanOptions,
    progress: ProgressCallback | None,
    out: Path,
    overwrite: bool,
    apply_postprocessing: bool,
    start: float,
    client: Any = None,
) -> Prediction:
    """:func:`predict` writing every output block by block into ``out`` (see :mod:`deepimagej.stores`),
    in this process or, with a ``client``, on a Dask cluster (:mod:`deepimagej.distributed`)."""
    if spec.test_time_augmentation:
        raise InputImageError(
            f"{spec.name}: test-time augmentation averages 8 whole outputs; write the result to a .tif/.npy "
            "(in memory) instead of streaming it"
        )
    post: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for t in spec.outputs:
        steps = t.processing if apply_postprocessing else ()
        # applied to each kept block of one item: the output's axes without b
        pipeline = ops.Pipeline(tuple(steps), tuple({} for _ in steps), t.axis_names.replace("b", ""))
        if any(ops.needs_statistics(step) for step in steps):
            raise InputImageError(
                f"{spec.name}: the post-processing of output '{t.name}' needs statistics of the whole output; "
                "streaming supports point-wise post-processing only (write a .tif/.npy instead)"
            )
        post[t.name] = pipeline.apply
    paths = tuple(image.metadata["path"] for image in inputs.values() if image.metadata.get("path"))
    store = stores.OutputStore(out, len(spec.outputs), overwrite=overwrite, inputs=paths)
    try:
        run_plan = plan_run(spec, sources, engine, **plan_kwargs)
    except BaseException:
        store.abort()
        raise
    chunks = _block_shape(run_plan.plan)

    def allocate(
        name: str, first: np.ndarray, out_axes: str, maps: Mapping[str, tiling.AxisMap | None]
    ) -> Any:
        return create(name, first, out_axes, maps)[0]

    def create(
        name: str, first: np.ndarray, out_axes: str, maps: Mapping[str, tiling.AxisMap | None]
    ) -> tuple[UserOrder, distributed.OutputRef]:
        tensor = next(t for t in spec.outputs if t.name == name)
        follow = _followed_input(spec, tensor)
        layout = layouts[follow]
        model_shape = list(first.shape)
        for i, a in enumerate(out_axes):
            if a == "b":
                model_shape[i] = run_plan.n_items
            elif a in run_plan.plan.spatial_axes and maps.get(a) is not None:
                model_shape[i] = run_plan.plan.output_size(a, maps[a])  # type: ignore[arg-type]
        mapping = layout.output_axes(out_axes, tuple(model_shape))
        mapping = dataclasses.replace(mapping, final=stores.storage_order(store.kind, mapping.final))
        image = inputs[follow]
        batch_shape = tuple(image.array.shape[layout.user_axes.index(a)] for a in layout.batch_axes)
        final_shape = mapping.final_shape(tuple(model_shape), batch_shape)
        block = []
        for a, n in zip(mapping.final, final_shape):
            amap = maps.get(a)
            if a in chunks and amap is not None:
                block.append(max(1, int(chunks[a] * amap.scale)))
            elif a in mapping.batch_axes:
                block.append(1)
            else:
                block.append(n)
        sample = first[tuple(0 if a == "b" else slice(0, 1) for a in out_axes)]
        dtype = post[name](sample).dtype  # what the post-processing makes
        array = store.create(
            name,
            final_shape,
            dtype,
            mapping.final,
            tuple(block),
            _output_pixel_size(image, run_plan, tensor),
            image.unit,
        )
        ref = distributed.OutputRef(
            store.array_path(name), mapping, tuple(model_shape), batch_shape, dict(maps), post[name]
        )
        return UserOrder(array, mapping, tuple(model_shape), batch_shape), ref

    def make_outputs(results: Mapping[str, tuple[np.ndarray, str]]) -> dict[str, Any]:
        made = {}
        for name, (first, out_axes) in results.items():
            maps = run_plan.geometry.outputs.get(name, {})
            target, ref = create(name, first, out_axes, maps)
            made[name] = (ref, tiling.Stitcher(run_plan.plan, target, out_axes, maps, post[name]))
        return made

    try:
        if client is None:
            blocks.run_blocks(
                spec,
                engine,
                run_plan.plan,
                run_plan.geometry,
                run_plan.n_items,
                run_plan.choice.batch,
                sources,
                transforms,
                progress,
                allocate=allocate,
                post=post,
            )
        else:
            run = distributed.RunSpec(
                spec,
                run_plan.weights_format,
                bool(plan_kwargs["trust_code"]),
                run_plan.plan,
                blocks.fixed_batch(spec, engine),
                dict(transforms),
            )
            refs = {
                t.name: _input_ref(inputs[t.name], layouts[t.name], sources[t.name][0]) for t in spec.inputs
            }
            jobs = tiling.batches(run_plan.plan, run_plan.n_items, run_plan.choice.batch)
            distributed.run_distributed(client, run, refs, jobs, make_outputs, progress)
        store.commit()
    except BaseException:
        store.abort()
        raise
    seconds = time.perf_counter() - start
    opened = stores.open_outputs(out, [t.name for t in spec.outputs])
    outputs = {name: ImageData(img.array, img.axes, img.pixel_size, img.unit) for name, img in opened.items()}
    return Prediction(outputs, run_plan, seconds, memory.peak_rss_bytes())


def _client(scheduler: Any) -> tuple[Any, bool]:
    """(a distributed client or None, whether this run made it and must close it)."""
    if scheduler is None:
        return None, False
    if isinstance(scheduler, (str, int)):
        address = scheduler if isinstance(scheduler, str) else None
        workers = scheduler if isinstance(scheduler, int) else None
        return distributed.connect(address, workers), True
    return scheduler, False


def _input_ref(image: ImageData, layout: Layout, model_array: Any) -> distributed.InputRef:
    """How Dask workers get an input: the file it was opened from, else the (model-layout) array itself."""
    path = image.metadata.get("path")
    if path is not None:
        return distributed.InputRef(layout, image.axes, Path(path))
    return distributed.InputRef(layout, image.axes, None, model_array)


def _block_shape(plan: tiling.TilePlan) -> dict[str, int]:
    """The size of the kept blocks along each tiled axis (the chunks of a streamed output)."""
    first = plan.tiles[0]
    return {a: s.stop - s.start for a, s in zip(plan.spatial_axes, first.target_slices)}


#: The 8 rotations/reflections of the y-x plane: (quarter turns, then mirrored along x).
DIHEDRAL = tuple((turns, mirrored) for turns in range(4) for mirrored in (False, True))


def _dihedral_mean(
    spec: ModelSpec,
    engine: Engine,
    sources: Mapping[str, tuple[np.ndarray, str]],
    transforms: Mapping[str, Callable[[np.ndarray, int], np.ndarray]],
    plan_kwargs: PlanOptions,
    progress: ProgressCallback | None,
) -> tuple[dict[str, tuple[np.ndarray, str]], RunPlan]:
    """Test-time augmentation: every output is the mean over the 8 rotations/reflections of the y-x plane.

    Each transformed input is predicted as usual (tiles, borders) and the transformation is
    undone on the outputs before averaging. Progress counts the tiles of all 8 passes.
    """
    for t in (*spec.inputs, *spec.outputs):
        if not (t.has_axis("y") and t.has_axis("x")):
            raise BundleError(
                f"{spec.source.name}: test-time augmentation needs y and x axes in every tensor"
            )
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
        moved_kwargs: PlanOptions = {**plan_kwargs, "tile": moved_tile}
        run_plan = plan_run(spec, moved, engine, **moved_kwargs)
        first_plan = first_plan or run_plan

        def report(done: int, count: int, n: int = n) -> None:
            if progress is not None:
                progress(
                    n * count + done,
                    len(DIHEDRAL) * count,
                    time.perf_counter() - start,
                    memory.peak_rss_bytes(),
                )

        outs = blocks.run_blocks(
            spec,
            engine,
            run_plan.plan,
            run_plan.geometry,
            run_plan.n_items,
            run_plan.choice.batch,
            moved,
            transforms,
            None,
            report,
        )
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


def macro_only_stages(
    spec: ModelSpec, pre: bool = True, post: bool = True
) -> list[tuple[str, tuple[Path, ...]]]:
    """The stages (``"pre-processing"``, ``"post-processing"``) that only an ImageJ macro of the
    bundle does (no bioimage.io operation stands in for it), with their macro files."""
    stages = []
    if pre and spec.preprocessing_macros and not any(t.processing for t in spec.inputs):
        stages.append(("pre-processing", tuple(Path(p) for p in spec.preprocessing_macros)))
    if post and spec.postprocessing_macros and not any(t.processing for t in spec.outputs):
        stages.append(("post-processing", tuple(Path(p) for p in spec.postprocessing_macros)))
    return stages


def _refuse_macro_only(spec: ModelSpec, pre: bool, post: bool) -> None:
    stages = macro_only_stages(spec, pre, post)
    if stages:
        what, files = stages[0]
        names = ", ".join(p.name for p in files)
        raise BundleError(
            f"{spec.source.name}: the {what} of this bundle is an ImageJ macro ({names}); run it through ImageJ "
            "(`deepimagej run` does, `deepimagej macro`, the DeepImageJ Run command or deepimagej.imagej), or skip "
            "it explicitly (--no-preprocessing / --no-postprocessing, apply_preprocessing=False)"
        )
