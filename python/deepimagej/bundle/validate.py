"""Checks before a run: are the weights there and intact, does the image fit the model?

:func:`check_bundle` picks the weights to run and verifies the file (presence, SHA-256)
and the ImageJ macro files. :func:`check_input` compares an image's shape and axes with
the model's first input. Both raise one-line :class:`~deepimagej.errors.DeepImageJError`
subclasses that say what to do.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from deepimagej.bundle.axes import image_axes
from deepimagej.bundle.formats import RUNNABLE_WEIGHT_FORMATS, normalize_format
from deepimagej.bundle.spec import AxisSpec, ModelSpec, TensorSpec, WeightsSpec
from deepimagej.checksums import sha256_of
from deepimagej.errors import BundleError, DeepImageJWarning, InputImageError

#: Axes an image may have although the model lacks them: they are looped over like a batch.
BATCH_LIKE_AXES = "btz"


# --------------------------------------------------------------------------- bundle


def check_bundle(
    spec: ModelSpec,
    weights_format: str | None = None,
    check_sha256: bool = True,
    check_macros: bool = True,
) -> WeightsSpec:
    """Choose the weights to run and check that everything the run needs is on disk.

    Without ``weights_format`` the first runnable format (see
    :meth:`ModelSpec.runnable_weights`) whose file is present is chosen.

    Args:
        spec: the loaded bundle.
        weights_format: a format name (``onnx``, ``torchscript``, ``keras_hdf5``,
            ``tensorflow_saved_model_bundle``; short forms such as ``tensorflow`` work).
        check_sha256: compare the file with the descriptor's ``sha256`` (streamed, cached).
        check_macros: require the ImageJ macro files the descriptor lists.

    Returns:
        The chosen weights entry.

    Raises:
        BundleError: unknown / absent format, missing or remote file, checksum mismatch,
            missing macro file.
    """
    weights = _choose_weights(spec, weights_format)
    _check_weights_file(spec, weights, check_sha256)
    if check_macros:
        check_macro_files(spec)
    return weights


def _choose_weights(spec: ModelSpec, weights_format: str | None) -> WeightsSpec:
    src = spec.source.name
    available = ", ".join(spec.weights) or "none"
    if weights_format is not None:
        fmt = normalize_format(weights_format)
        if fmt not in spec.weights:
            raise BundleError(f"{src}: no weights of format '{fmt}' in this bundle (available: {available})")
        if fmt not in RUNNABLE_WEIGHT_FORMATS:
            raise BundleError(
                f"{src}: deepimagej cannot run '{fmt}' weights; use one of {', '.join(RUNNABLE_WEIGHT_FORMATS)}"
            )
        return spec.weights[fmt]
    runnable = spec.runnable_weights()
    if not runnable:
        raise BundleError(
            f"{src}: no weights deepimagej can run (has: {available}; runs: {', '.join(RUNNABLE_WEIGHT_FORMATS)})"
        )
    for w in runnable:
        if w.path is not None and w.path.exists():
            return w
    return runnable[0]  # none present: report the preferred one


def _check_weights_file(spec: ModelSpec, weights: WeightsSpec, check_sha256: bool) -> None:
    src = spec.source.name
    if weights.path is None:
        raise BundleError(
            f"{src}: weights '{weights.format}' are only available at {weights.source}; "
            f"download the file into {spec.root} and point the descriptor's source at it"
        )
    if not weights.path.exists():
        raise BundleError(
            f"{src}: weights '{weights.format}' file {_rel(weights.path, spec.root)} not found in {spec.root}"
        )
    if check_sha256 and weights.sha256 and weights.path.is_file():
        actual = sha256_of(weights.path)
        if actual.lower() != weights.sha256.lower():
            raise BundleError(
                f"{src}: weights '{weights.format}' file {weights.path.name} has sha256 {actual}, "
                f"expected {weights.sha256}: the file is damaged or not the one the descriptor describes"
            )


def check_macro_files(spec: ModelSpec) -> None:
    """Raise :class:`BundleError` when a listed ImageJ macro file is missing."""
    for stage, paths in (
        ("pre-processing", spec.preprocessing_macros),
        ("post-processing", spec.postprocessing_macros),
    ):
        for path in paths:
            if not Path(path).is_file():
                raise BundleError(
                    f"{spec.source.name}: {stage} macro {_rel(Path(path), spec.root)} not found in {spec.root}"
                )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- input image


def check_input(spec: ModelSpec, shape: tuple[int, ...], axes: str, tensor: TensorSpec | None = None) -> None:
    """Check that an image of ``shape`` with ``axes`` can be fed to an input of the model.

    Rules:

    - ``axes`` names every dimension once (letters among b, t, c, z, y, x; ``n`` = ``b``);
      every size is at least 1.
    - Axes the model lacks are allowed when they can be looped over (``b``, ``t``, and ``z``
      for a 2D model) or when they have size 1 (e.g. a single channel); others are an error.
    - Spatial axes the model needs (``y``, ``x``) must be present; a missing ``z`` counts as 1.
    - The channel count must be one the model accepts (fixed size, or ``min + n * step``).
    - Size: tiling (DeepImageJ and bioimage.io alike) mirror-pads small images up to a valid
      patch, so any size works when the model can be tiled. When tiling is disabled
      (``allow_tiling: false`` in the descriptor or the config), the whole image is one
      patch: it must be at least the model's minimum size and, for fixed-size axes, no larger
      than the fixed size.

    Args:
        spec: the model.
        shape: the image's shape.
        axes: the image's axes.
        tensor: the input it is for (default: the first).

    Raises:
        InputImageError: one line saying which axis is wrong and what the model expects (and
            which input, for a model with several).
    """
    tensor = spec.inputs[0] if tensor is None else tensor
    try:
        _check_input(spec, tensor, shape, axes)
    except InputImageError as exc:
        if len(spec.inputs) > 1:
            raise InputImageError(f"input '{tensor.name}': {exc}") from None
        raise


def _check_input(spec: ModelSpec, tensor: TensorSpec, shape: tuple[int, ...], axes: str) -> None:
    axes = image_axes(axes, len(shape))
    sizes = dict(zip(axes, (int(s) for s in shape)))
    for a, n in sizes.items():
        if n < 1:
            raise InputImageError(f"image axis '{a}' has size {n}; every axis needs at least 1 pixel")
    _check_extra_axes(tensor, sizes)
    _check_channels(tensor, sizes)
    tileable = allows_tiling(spec)
    for axis in tensor.axes:
        if not axis.is_spatial:
            continue
        if axis.name not in sizes and axis.name != "z":
            raise InputImageError(
                f"model '{spec.name}' needs an image with axis '{axis.name}' (model axes: {tensor.axis_names}), "
                f"image axes are '{axes}'"
            )
        _check_spatial(axis, sizes.get(axis.name, 1), tileable)
    _warn_halo(spec, tensor, sizes)


def _warn_halo(spec: ModelSpec, tensor: TensorSpec, sizes: dict[str, int]) -> None:
    """Tell the user when the model's halo is larger than the image (the result is all border)."""
    for name in "zyx":
        halo = max((a.halo for t in (tensor, *spec.outputs) for a in t.axes if a.name == name), default=0)
        size = sizes.get(name)
        if size is not None and halo > size:
            warnings.warn(
                f"the model's halo on axis {name} ({halo} px) is larger than the image ({size} px): every result "
                "pixel comes from mirrored borders and may be unreliable; use a larger image",
                DeepImageJWarning,
                stacklevel=3,
            )
            return


def allows_tiling(spec: ModelSpec) -> bool:
    """Whether the bundle lets deepimagej cut the image into patches."""
    if spec.deepimagej_tiling is not None and not spec.deepimagej_tiling.allow_tiling:
        return False
    return bool(spec.extra.get("allow_tiling", True))


def _check_extra_axes(tensor: TensorSpec, sizes: dict[str, int]) -> None:
    for a, n in sizes.items():
        if tensor.has_axis(a) or n == 1:
            continue
        if a in BATCH_LIKE_AXES and not (a == "z" and tensor.has_axis("z")):
            continue
        raise InputImageError(
            f"image has axis '{a}' (size {n}) which the model lacks (model axes: {tensor.axis_names})"
        )


def _channel_options(axis: AxisSpec) -> str:
    if axis.size is not None:
        return str(axis.size)
    if axis.step == 0:
        return str(axis.min)
    return f"{axis.min} + n*{axis.step}"


def _check_channels(tensor: TensorSpec, sizes: dict[str, int]) -> None:
    if not tensor.has_axis("c"):
        return
    axis = tensor.axis("c")
    n = sizes.get("c", 1)
    if axis.reference is None and not axis.valid_size(n):
        raise InputImageError(f"model expects {_channel_options(axis)} channel(s) on axis c, image has {n}")


def _check_spatial(axis: AxisSpec, n: int, tileable: bool) -> None:
    if tileable or axis.reference is not None:
        return
    fixed = axis.size if axis.size is not None else (axis.min if axis.step == 0 else None)
    if n < axis.min:
        raise InputImageError(
            f"image is {n} pixel(s) on axis {axis.name}, smaller than the model's minimum {axis.min} "
            "(this model cannot be tiled); enlarge or pad the image"
        )
    if fixed is not None and n > fixed:
        raise InputImageError(
            f"image is {n} pixel(s) on axis {axis.name}, larger than the model's fixed size {fixed} "
            "(this model cannot be tiled); crop or resize the image"
        )
