"""Element size (pixel size): what a model declares, what an image is calibrated with, and resampling between them.

A model is trained at one element size (the physical size of a pixel, e.g. 0.5 µm); an image
taken at another magnification shows its objects larger or smaller than the model learnt them.
The U-Net plugin (Falk et al. 2019) therefore runs a model at its own element size: the image is
resampled to the model's element size, the model runs, and its output is resampled back to the
image's grid. This module holds the pieces every front door uses for that:

* the model's element size, from the bundle: the pixel size fields of a ``config.xml``
  (``PixelSize``) and of an rdf 0.4 (``test_information``), and the spatial axes' ``scale`` of an
  rdf 0.5 (both read into :attr:`deepimagej.bundle.spec.ModelSpec.pixel_size`), parsed by
  :func:`parse_pixel_size` / :func:`model_pixel_size`;
* an image's element size from its calibration (:func:`image_pixel_size`);
* resampling of named axes (:func:`rescale`, :func:`rescale_back`), with scikit-image's
  ``resize``: linear interpolation for intensities (smoothed first when shrinking, against
  aliasing), nearest neighbour for labels.

Sizes are in micrometres, per spatial axis letter (``{"y": 0.5, "x": 0.5}``); a size given in
pixels only (``"1.00pixel x 1.00pixel"``) is no physical size and never triggers a rescaling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from deepimagej.bundle.spec import SPATIAL_AXES, ModelSpec
from deepimagej.errors import InputImageError
from deepimagej.io import ImageData

__all__ = [
    "format_pixel_size",
    "image_pixel_size",
    "model_pixel_size",
    "parse_pixel_size",
    "rescale",
    "rescale_back",
    "rescale_factors",
    "rescale_to_element_size",
    "to_micrometres",
]

#: Length units (as ImageJ, OME and bioimage.io write them) in micrometres.
MICROMETRES_PER_UNIT = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micrometers": 1.0,
    "micrometres": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nanometers": 1e-3,
    "nanometres": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "a": 1e-4,
    "å": 1e-4,
    "angstrom": 1e-4,
}
#: Element sizes closer than this (relative) are the same: no resampling.
SAME_SIZE = 1e-3

_SIZE = re.compile(r"([0-9]+(?:[.,][0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*([^\d\sx×*,;]*)")


def to_micrometres(value: float, unit: str | None) -> float | None:
    """``value`` in ``unit`` as micrometres; ``None`` for pixels, no unit or an unknown unit."""
    key = (unit or "").strip().lower().replace("^", "")
    factor = MICROMETRES_PER_UNIT.get(key)
    if factor is None or not math.isfinite(value) or value <= 0:
        return None
    return float(value) * factor


def parse_pixel_size(text: str | None, axes: str = "xyz") -> dict[str, float]:
    """A written pixel size in micrometres per axis: ``"1.30µm x 1.30µm"`` -> ``{"x": 1.3, "y": 1.3}``.

    Accepts what DeepImageJ and bioimage.io bundles hold: ``"0.16µmx0.16µm"``, ``"1.60E-04cmx1.60E-04cm"``,
    decimal commas (``"0,5 µm x 0,5 µm"``), one value for all axes (``"0.5 µm"``). The values are in
    ``axes`` order (x, y, then z, as DeepImageJ writes them). Sizes in pixels, or without a known
    unit, are left out: they say nothing about the physical scale.

    Args:
        text: the pixel size as written, or ``None``.
        axes: the axis of each value in turn.

    Returns:
        Micrometres per axis letter; empty when nothing physical is known.
    """
    if not text:
        return {}
    found = [(float(num.replace(",", ".")), unit) for num, unit in _SIZE.findall(str(text))]
    if not found:
        return {}
    if len(found) == 1:  # one size for every in-plane axis
        found = found * 2
    default_unit = next((unit for _, unit in reversed(found) if unit), None)  # "0.5 x 0.5 µm"
    sizes = {}
    for axis, (value, unit) in zip(axes, found):
        um = to_micrometres(value, unit or default_unit)
        if um is not None:
            sizes[axis] = um
    return sizes


def format_pixel_size(sizes: Mapping[str, float]) -> str | None:
    """Micrometres per axis as a bundle writes them: ``{"y": 0.5, "x": 0.5}`` -> ``"0.5µm x 0.5µm"`` (x, y, z)."""
    values = [f"{sizes[a]:.6g}µm" for a in "xyz" if a in sizes]
    return " x ".join(values) if values else None


def model_pixel_size(spec: ModelSpec) -> dict[str, float]:
    """The element size a model was trained at, in micrometres per spatial axis (empty when it declares none)."""
    return parse_pixel_size(spec.pixel_size)


def image_pixel_size(image: ImageData) -> dict[str, float]:
    """An image's calibration in micrometres per spatial axis (empty when uncalibrated or in pixels)."""
    sizes = {}
    for axis, value in image.pixel_size.items():
        um = to_micrometres(value, image.unit)
        if axis in SPATIAL_AXES and um is not None:
            sizes[axis] = um
    return sizes


def rescale_factors(
    image_size: Mapping[str, float] | None, model_size: Mapping[str, float]
) -> dict[str, float]:
    """Zoom per spatial axis that brings an image of ``image_size`` to the model's ``model_size``.

    ``image / model``: an image with 0.25 µm pixels for a 0.5 µm model is shrunk by 2 (factor 0.5).
    Axes that either side does not know, or where the sizes agree, are left out; an empty result
    means "run as is". An in-plane axis known on one side only (``x`` but not ``y``) takes the
    other in-plane axis' size, as ImageJ calibrations are square unless they say otherwise.
    """
    if not image_size or not model_size:
        return {}
    image, model = dict(image_size), dict(model_size)
    for a, b in (("x", "y"), ("y", "x")):
        for sizes in (image, model):
            if a not in sizes and b in sizes:
                sizes[a] = sizes[b]
    factors = {}
    for axis in SPATIAL_AXES:
        if axis in image and axis in model and model[axis] > 0:
            f = float(image[axis]) / float(model[axis])
            if abs(f - 1.0) > SAME_SIZE:
                factors[axis] = f
    return factors


def _resize(array: np.ndarray, shape: Sequence[int], *, labels: bool) -> np.ndarray:
    from skimage.transform import resize

    if tuple(shape) == array.shape:
        return array
    shrinking = any(n < m for n, m in zip(shape, array.shape))
    if labels:
        return resize(array, shape, order=0, mode="edge", anti_aliasing=False, preserve_range=True).astype(
            array.dtype
        )
    out = resize(
        array.astype(np.float32, copy=False),
        shape,
        order=1,
        mode="reflect",
        anti_aliasing=shrinking,
        preserve_range=True,
    )
    return out.astype(np.float32, copy=False)


def _scaled(n: int, factor: float) -> int:
    return max(1, round(n * factor))


def rescale(
    array: np.ndarray, axes: str, factors: Mapping[str, float], *, labels: bool = False
) -> np.ndarray:
    """Resample the spatial axes of ``array`` (named by ``axes``) by ``factors``; other axes are kept.

    Args:
        array: the image (any axes; ``b``, ``c``, ``t`` are left alone).
        axes: one letter per dimension of ``array``.
        factors: zoom per spatial axis (:func:`rescale_factors`); axes without one keep their size.
        labels: nearest-neighbour resampling that keeps the values and the dtype (labels, classes,
            masks); otherwise linear interpolation to float32, smoothed first along shrunk axes.

    Returns:
        ``array`` itself when there is nothing to do, else a new array of
        ``round(size * factor)`` pixels along each rescaled axis.
    """
    if len(axes) != array.ndim:
        raise InputImageError(f"axes '{axes}' name {len(axes)} dimensions but the image has {array.ndim}")
    if not factors:
        return array
    shape = [_scaled(n, factors[a]) if a in factors else n for a, n in zip(axes, array.shape)]
    return _resize(array, shape, labels=labels)


def rescale_back(
    array: np.ndarray,
    axes: str,
    factors: Mapping[str, float],
    image_sizes: Mapping[str, int],
    *,
    labels: bool = False,
) -> np.ndarray:
    """Undo :func:`rescale` on a model output: back to the image's grid.

    Args:
        array: the model's output on the rescaled image.
        axes: one letter per dimension of ``array``.
        factors: the factors the input was rescaled with.
        image_sizes: the input's sizes before rescaling, per axis letter.
        labels: nearest neighbour (labels) instead of linear interpolation.

    Returns:
        ``array`` resampled so that each rescaled spatial axis has the input's size again (for
        outputs the size of their input) or, for an output whose size is a multiple of its
        input's, that multiple of the image's size.
    """
    if not factors:
        return array
    shape = []
    for a, n in zip(axes, array.shape):
        if a in factors and a in image_sizes:
            scaled_in = _scaled(image_sizes[a], factors[a])
            shape.append(max(1, round(n * image_sizes[a] / scaled_in)))
        else:
            shape.append(n)
    return _resize(array, shape, labels=labels)


def rescale_to_element_size(
    image: np.ndarray,
    labels: np.ndarray | None,
    from_size: Sequence[float] | float,
    to_size: Sequence[float] | float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample an image and its labels from one pixel size to another (training data to the model's).

    Args:
        image: ``(Y, X[, C])`` or ``(Z, Y, X[, C])``; a trailing channel axis is recognised when
            ``labels`` is given and has one axis less, otherwise all axes are spatial.
        labels: label (or class, or ignore) image with the spatial shape, resampled by nearest
            neighbour; or ``None``.
        from_size, to_size: pixel size per spatial axis (array order) of the data and of the
            model, in the same unit; one number for all axes.

    Returns:
        ``(image, labels)`` on the new grid, ``round(shape * from_size / to_size)`` pixels: the
        image as float32, the labels with their dtype.
    """
    image = np.asarray(image)
    spatial = np.ndim(labels) if labels is not None else image.ndim
    if labels is not None and image.shape[:spatial] != np.shape(labels):
        raise InputImageError(
            f"image is {'x'.join(map(str, image.shape[:spatial]))} but labels are "
            f"{'x'.join(map(str, np.shape(labels)))}; they must match"
        )
    src = np.broadcast_to(np.asarray(from_size, float), (spatial,))
    dst = np.broadcast_to(np.asarray(to_size, float), (spatial,))
    axes = {2: "yx", 3: "zyx"}.get(spatial)
    if axes is None:
        raise InputImageError(f"labels with {spatial} axes: expected (Y, X) or (Z, Y, X)")
    factors = rescale_factors(dict(zip(axes, src)), dict(zip(axes, dst)))
    all_axes = axes + "c" * (image.ndim - spatial)
    out_image = rescale(image.astype(np.float32, copy=False), all_axes, factors)
    out_labels = None if labels is None else rescale(np.asarray(labels), axes, factors, labels=True)
    return out_image, out_labels
