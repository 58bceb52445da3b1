"""From U-Net class probabilities to what a biologist wants: instance labels, a class map or detections.

The exported U-Net bundles output soft-max probabilities (channels last, channel 1 =
foreground, or one channel per class). In Python these functions do the post-processing; in
ImageJ the bundle carries the equivalent macro, which DeepImageJ Run executes after the model.

The macros are ``.ijm`` files shipped with the package (``deepimagej/unet/macros/``, see
:data:`MACRO_FILES`), runnable in ImageJ as they are. The detection macro's settings are plain
assignments at its top (``threshold = 0.5;``...): :func:`detection_macro` rewrites those lines
with a bundle's values, so the file stays a valid macro with its defaults and a bundle's copy
shows its settings where a biologist reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from scipy import ndimage as ndi

from deepimagej.predict import as_spec


class DetectionSettings(TypedDict, total=False):
    """Detection post-processing settings: the keyword arguments of :func:`to_detections`."""

    threshold: float
    smooth_sigma: float
    min_distance: int
    cell_threshold: float
    min_cell_area: float
    min_solidity: float


#: Detection post-processing settings used when a bundle does not set its own
#: (``config.deepimagej_py.detection`` in its rdf.yaml; see :func:`detection_settings`).
DETECTION_DEFAULTS: DetectionSettings = {"threshold": 0.5, "smooth_sigma": 1.0, "min_distance": 3}

#: Settings of the cell head of a two-head detection model (:func:`solid_cells`); a bundle that
#: sets ``cell_threshold`` in ``config.deepimagej_py.detection`` uses its cell head.
CELL_DEFAULTS: DetectionSettings = {"cell_threshold": 0.8, "min_cell_area": 1000, "min_solidity": 0.65}

#: The ImageJ post-processing macro of each kind of bundle: a file in ``deepimagej/unet/macros/``
#: (package data), written into the bundle under the same name by :func:`write_macro`.
MACRO_FILES = {
    "segmentation": "postprocessing_instances.ijm",  # instance labels, as to_instances
    "classes": "postprocessing_classes.ijm",  # the class map of several classes, as to_classes
    "detection": "postprocessing_detection.ijm",  # points, as to_detections; settings at its top
}


def foreground(prob: np.ndarray, channel_axis: int | None = -1) -> np.ndarray:
    """Foreground probability: channel 1 of a K-class output (K <= 8 on ``channel_axis``).

    An array whose ``channel_axis`` is not a small class axis (or ``channel_axis=None``) is
    taken to be the foreground probability map already.
    """
    prob = np.asarray(prob)
    if channel_axis is not None and prob.ndim >= 3 and 2 <= prob.shape[channel_axis] <= 8:
        return np.take(prob, 1, axis=channel_axis)
    return prob


def to_instances(
    prob: np.ndarray, threshold: float = 0.5, *, min_size: int = 0, channel_axis: int | None = -1
) -> np.ndarray:
    """Instance labels: connected components (8-connected in 2D, 26 in 3D) of foreground > ``threshold``.

    Args:
        prob: U-Net output (``..., K`` probabilities) or a foreground probability map.
        threshold: probability above which a pixel is foreground.
        min_size: drop objects smaller than this many pixels.

    Returns:
        ``int32`` labels, 0 = background, objects numbered 1..N.
    """
    fg = foreground(prob, channel_axis) > threshold
    labels, n = ndi.label(fg, structure=np.ones((3,) * fg.ndim, bool))
    if min_size > 0 and n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
        labels, _, _ = _relabel(labels)
    return labels.astype(np.int32)


def to_classes(prob: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Class map: the class of highest probability at every pixel (ties: the lower class), ``uint8``."""
    return np.argmax(np.asarray(prob), axis=channel_axis).astype(np.uint8)


def _relabel(labels: np.ndarray):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)


def imagej_disk(radius: float, ndim: int = 2) -> np.ndarray:
    """The neighbourhood of ImageJ's ``Maximum...`` filter: offsets with ``d^2 <= radius^2 + 1``."""
    r = int(np.floor(np.sqrt(radius * radius + 1)))
    grids = np.meshgrid(*[np.arange(-r, r + 1)] * ndim, indexing="ij")
    return np.asarray(sum(g * g for g in grids) <= radius * radius + 1)


def peaks_to_points(
    prob_map: np.ndarray,
    threshold: float = DETECTION_DEFAULTS["threshold"],
    min_distance: int = DETECTION_DEFAULTS["min_distance"],
    smooth_sigma: float = DETECTION_DEFAULTS["smooth_sigma"],
) -> np.ndarray:
    """Detections: local maxima of a (smoothed) foreground probability map.

    The same steps as the ImageJ macro ``postprocessing_detection.ijm`` (Gaussian Blur, Maximum filter,
    threshold), so that Python and ImageJ find the same points: the map is smoothed with a
    Gaussian of ``smooth_sigma`` (edges extended with the nearest pixel, as ImageJ does); a pixel
    is a peak when it equals the maximum over the disk ``d^2 <= min_distance^2 + 1`` around it
    (ImageJ's ``Maximum...`` neighbourhood) and exceeds ``threshold``. Two such pixels closer than
    that are equal maxima (a plateau): the first in reading (raster) order is kept.

    Parameters
    ----------
    prob_map : numpy.ndarray
        2D or 3D foreground probability (e.g. soft-max channel 1 of a detection U-Net).
    threshold : float
        Smallest accepted (smoothed) probability at a peak.
    min_distance : int
        Radius of the neighbourhood a peak is the maximum of, pixels.
    smooth_sigma : float
        Gaussian smoothing before the peak search; 0 disables it.

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(N, ndim)`` array-ordered peak positions.
    """
    p = np.asarray(prob_map, dtype=np.float32)
    if smooth_sigma:
        p = ndi.gaussian_filter(p, smooth_sigma, mode="nearest")
    footprint = imagej_disk(max(1, int(min_distance)), p.ndim)
    peaks = (p == ndi.maximum_filter(p, footprint=footprint, mode="nearest")) & (p > threshold)
    limit = max(1, int(min_distance)) ** 2 + 1
    kept: list[np.ndarray] = []
    for candidate in np.argwhere(peaks):  # raster order
        if not kept or np.min(np.sum((np.asarray(kept) - candidate) ** 2, axis=1)) > limit:
            kept.append(candidate)
    return np.asarray(kept, dtype=np.float64).reshape(-1, p.ndim)


def solid_cells(
    cell_prob: np.ndarray,
    threshold: float = CELL_DEFAULTS["cell_threshold"],
    min_area: float = CELL_DEFAULTS["min_cell_area"],
    min_solidity: float = CELL_DEFAULTS["min_solidity"],
) -> tuple[np.ndarray, np.ndarray]:
    """The confidently segmented cells of a cell probability map, and their centroids (2D).

    A cell is an 8-connected component of ``cell_prob > threshold`` with its holes filled (as
    ImageJ's Analyze Particles with "include holes" traces it) that has at least ``min_area``
    pixels and a solidity of at least ``min_solidity``. Solidity is ImageJ's: the pixel count
    over the area of the convex hull of the traced outline (the hull of the pixels' corners);
    cells merged through a gap in their membrane are far from convex and fail it.

    Parameters
    ----------
    cell_prob : numpy.ndarray
        2D cell-interior probability (e.g. channel 1 of a segmentation U-Net).
    threshold : float
        Probability above which a pixel belongs to a cell.
    min_area : float
        Smallest accepted cell, pixels.
    min_solidity : float
        Smallest accepted solidity, 0-1.

    Returns
    -------
    labels : numpy.ndarray
        ``int32`` image, the accepted cells numbered 1..N in raster order of their first pixel.
    centroids : numpy.ndarray
        ``(N, 2)`` centroids (y, x) in array coordinates (pixel centres at integers).
    """
    from scipy.spatial import ConvexHull

    prob = np.asarray(cell_prob)
    if prob.ndim != 2:
        raise ValueError(f"solid_cells works on 2D cell probabilities, not shape {prob.shape}")
    components, _ = ndi.label(prob > threshold, structure=np.ones((3, 3), bool))
    labels = np.zeros(prob.shape, np.int32)
    inside_measured = np.zeros(prob.shape, bool)  # filled areas of the cells measured so far
    centroids: list[np.ndarray] = []
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    for index, box in enumerate(ndi.find_objects(components), start=1):  # raster order of first pixels
        if inside_measured[box][components[box] == index].any():
            continue  # in a hole of a cell measured before: part of that cell, as in ImageJ
        cell = ndi.binary_fill_holes(components[box] == index)
        area = int(cell.sum())
        if area < max(min_area, 1):
            continue
        inside_measured[box] |= cell
        pixels = np.argwhere(cell)
        hull = ConvexHull((pixels[:, None, :] + corners).reshape(-1, 2))
        if area / hull.volume < min_solidity:  # the 2D hull's "volume" is its area
            continue
        labels[box][cell] = len(centroids) + 1
        centroids.append(pixels.mean(axis=0) + [box[0].start, box[1].start])
    return labels, np.asarray(centroids, dtype=np.float64).reshape(-1, 2)


def detection_settings(bundle: Any = None) -> DetectionSettings:
    """Peak-finding settings of a detection bundle (``config.deepimagej_py.detection``), else the defaults.

    Args:
        bundle: a bundle folder/descriptor, a :class:`~deepimagej.bundle.spec.ModelSpec`, or ``None``.

    Returns:
        ``{"threshold", "smooth_sigma", "min_distance"}`` (:data:`DETECTION_DEFAULTS` for what is not set),
        plus the bundle's cell-head settings (``cell_threshold``, ``min_cell_area``, ``min_solidity``;
        :data:`CELL_DEFAULTS`) when it has them: pass them all to :func:`to_detections`.
    """
    settings = DETECTION_DEFAULTS.copy()
    if bundle is not None:
        settings.update(as_spec(bundle).extra.get("detection") or DetectionSettings())
    return settings


def to_detections(
    prob: np.ndarray,
    threshold: float = DETECTION_DEFAULTS["threshold"],
    *,
    min_distance: int = DETECTION_DEFAULTS["min_distance"],
    smooth_sigma: float = DETECTION_DEFAULTS["smooth_sigma"],
    cell_threshold: float | None = None,
    min_cell_area: float = CELL_DEFAULTS["min_cell_area"],
    min_solidity: float = CELL_DEFAULTS["min_solidity"],
    channel_axis: int | None = -1,
) -> np.ndarray:
    """Detections: :func:`peaks_to_points` of the centre probability (channel 1 of a K-class output).

    With ``cell_threshold`` (a two-head detection model, 2D, 4 channels: the centre soft-max
    and the cell soft-max, :func:`deepimagej.unet.model.with_cell_head`), every confidently
    segmented cell (:func:`solid_cells` of channel 3) gives its centroid instead of the peaks
    inside it: a peak must be sharp to be found, and the centre of a large cell is far from
    anything the centre head sees, while its outline is what the cell head sees best.

    Returns:
        ``(N, ndim)`` array-ordered point coordinates (y, x) or (z, y, x): the peaks (outside the
        solid cells) first, then the cell centroids.
    """
    points = peaks_to_points(foreground(prob, channel_axis), threshold, min_distance, smooth_sigma)
    if cell_threshold is None:
        return points
    heads = np.asarray(prob) if channel_axis is None else np.moveaxis(np.asarray(prob), channel_axis, -1)
    if heads.ndim != 3 or heads.shape[-1] != 4:
        raise ValueError(
            f"cell_threshold needs the 2D output of a two-head detection model (y, x, 4 channels), not shape {heads.shape}"
        )
    cells, centroids = solid_cells(heads[..., 3], cell_threshold, min_cell_area, min_solidity)
    outside = cells[tuple(np.round(points).astype(int).T)] == 0
    return np.concatenate([points[outside], centroids])


def shipped_macro(kind: str) -> str:
    """The text of the post-processing macro of ``kind`` as shipped (the detection macro with its defaults).

    Args:
        kind: ``segmentation``, ``classes`` or ``detection`` (:data:`MACRO_FILES`).
    """
    if kind not in MACRO_FILES:
        raise ValueError(f"no post-processing macro of kind {kind!r}: one of {', '.join(MACRO_FILES)}")
    return (resources.files("deepimagej.unet") / "macros" / MACRO_FILES[kind]).read_text(encoding="utf-8")


def set_macro_parameters(text: str, values: Mapping[str, object]) -> str:
    """``text`` with the first top-level assignment ``name = ...;`` of each ``values`` key set to its value.

    Raises:
        ValueError: the macro has no such assignment (a parameter the macro does not read).
    """
    for name, value in values.items():
        text, found = re.subn(
            rf"^{re.escape(name)} = [^;\n]*;", f"{name} = {value};", text, count=1, flags=re.M
        )
        if not found:
            raise ValueError(f"the macro has no line '{name} = ...;' to set")
    return text


def detection_macro(
    threshold: float,
    smooth_sigma: float,
    min_distance: int,
    cell_threshold: float | None = None,
    min_cell_area: float = CELL_DEFAULTS["min_cell_area"],
    min_solidity: float = CELL_DEFAULTS["min_solidity"],
) -> str:
    """The ImageJ detection macro with these settings (the same as :func:`to_detections`)."""
    return set_macro_parameters(
        shipped_macro("detection"),
        {
            "threshold": float(threshold),
            "sigma": float(smooth_sigma),
            "radius": int(min_distance),
            "cell_threshold": -1.0 if cell_threshold is None else float(cell_threshold),
            "min_cell_area": int(min_cell_area),
            "min_solidity": float(min_solidity),
        },
    )


def write_macro(kind: str, path: str | Path, settings: DetectionSettings | None = None) -> None:
    """Write the post-processing macro of ``kind`` (``segmentation``, ``classes`` or ``detection``) to ``path``.

    ``settings``: detection peak-finding settings (:data:`DETECTION_DEFAULTS` when omitted).
    """
    if kind == "detection":
        merged = DETECTION_DEFAULTS.copy()
        merged.update(settings or DetectionSettings())
        text = detection_macro(**merged)
    else:
        text = shipped_macro(kind)
    Path(path).write_text(text, encoding="utf-8")
