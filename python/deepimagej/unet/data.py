"""Training data for the U-Net: images, label masks, ImageJ ROIs and point annotations.

Sources of annotations (Falk et al., Nature Methods 2019):

* label mask files: instance labels (one integer per object) or semantic binary masks
  (e.g. ISBI 2012: 255 = cell interior, 0 = membrane), turned into instances by
  4-connected components (:func:`load_mask`);
* ImageJ ROI Manager files (``RoiSet.zip`` or ``.roi``) with one regional ROI per object
  (:func:`rois_to_labels`);
* multi-point ROIs, one point per object, for detection (:func:`points_from_rois`,
  :func:`detection_targets`).

Coordinates are array-ordered everywhere: points are ``(y, x)`` or ``(z, y, x)``; ImageJ's
``x`` is the column and ``y`` the row (no half-pixel shift), ``z`` the 0-based slice.
Every user error is a :class:`~deepimagej.errors.TrainingError` with a one-line message.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from deepimagej.errors import TrainingError
from deepimagej.unet.weights import SIGMA_BAL, V_BAL, class_balance_weights, insert_ridges, weight_map

__all__ = [
    "IMAGE_SUFFIXES",
    "ROI_SUFFIXES",
    "TrainingSample",
    "detection_targets",
    "link_slice_rois",
    "load_folder_pairs",
    "load_image",
    "load_mask",
    "points_from_rois",
    "prepare_sample",
    "rescale_to_element_size",
    "rois_to_labels",
    "split_validation",
    "write_point_rois",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif")
ROI_SUFFIXES = (".zip", ".roi")
_LABEL_STEM_SUFFIXES = ("_labels", "_label", "_masks", "_mask", "_rois", "_roiset", "_roi", "_points", "_gt")


def _size(shape: Sequence[int]) -> str:
    """ImageJ-style size: width x height [x depth]."""
    shape = tuple(shape)
    if len(shape) < 2:
        return "x".join(str(n) for n in shape)
    return "x".join(str(n) for n in (shape[-1], shape[-2], *shape[-3::-1]))


# ---------------------------------------------------------------------------------------------
# images and masks


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file (TIFF with tifffile, PNG/JPEG/... with scikit-image).

    Parameters
    ----------
    path : str or pathlib.Path
        Image file.

    Returns
    -------
    numpy.ndarray
        The pixel array as stored (``(Y, X)``, ``(Y, X, C)`` for RGB, ``(Z, Y, X)`` for stacks).
        A constant alpha channel of an RGBA image is dropped.

    Raises
    ------
    TrainingError
        If the file does not exist or cannot be read as an image.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"image file '{path}' does not exist")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import skimage.io

            with warnings.catch_warnings():  # imageio's plugin probing warns on unreadable files
                warnings.simplefilter("ignore", DeprecationWarning)
                arr = skimage.io.imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the same user error
        raise TrainingError(
            f"'{path.name}' could not be read as an image: {str(exc).splitlines()[0]}"
        ) from None
    arr = np.asarray(arr)
    is_rgba = arr.ndim == 3 and arr.shape[-1] == 4 and path.suffix.lower() not in (".tif", ".tiff")
    if is_rgba and np.all(arr[..., 3] == arr[..., 3].flat[0]):
        arr = arr[..., :3]
    return arr


def load_mask(path: str | Path, mode: str = "auto") -> np.ndarray:
    """Read a label mask and return instance labels.

    Parameters
    ----------
    path : str or pathlib.Path
        Mask file (TIFF/PNG/...). An RGB mask must be grey (equal channels).
    mode : {"auto", "instance", "semantic"}
        ``"semantic"``: a binary mask (non-zero = foreground, e.g. ISBI 2012 where 255 is the
        cell interior and 0 the membrane) whose 4-connected foreground components
        (6-connected in 3D) become instances. ``"instance"``: the values are object ids.
        ``"auto"``: semantic when the mask has at most one non-zero value (0/1, 0/255), else
        instance.

    Returns
    -------
    numpy.ndarray
        ``int32`` instance labels, 0 = background.

    Raises
    ------
    TrainingError
        If the file cannot be read or is a colour image.
    """
    if mode not in ("auto", "instance", "semantic"):
        raise ValueError(f"mode must be 'auto', 'instance' or 'semantic', got {mode!r}")
    path = Path(path)
    mask = load_image(path)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and path.suffix.lower() not in (".tif", ".tiff"):
        rgb = mask[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise TrainingError(
                f"label mask '{path.name}' is a colour image; save labels as a grey-level image"
            )
        mask = rgb[..., 0]
    if mask.dtype.kind == "f":
        if not np.all(mask == np.round(mask)):
            raise TrainingError(
                f"label mask '{path.name}' has non-integer values; expected labels or a 0/255 mask"
            )
        mask = mask.astype(np.int64)
    if mask.dtype.kind == "b":
        mask = mask.astype(np.uint8)
    if mask.min() < 0:
        raise TrainingError(
            f"label mask '{path.name}' has negative values; expected 0 = background, > 0 = objects"
        )
    semantic = mode == "semantic" or (mode == "auto" and np.unique(mask[mask != 0]).size <= 1)
    if semantic:
        labels, _ = ndi.label(mask > 0)  # default structure: 4-connectivity (6 in 3D)
        return labels.astype(np.int32)
    return mask.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# ImageJ ROIs


def _read_rois(roi_path: str | Path) -> list:
    import roifile

    path = Path(roi_path)
    if not path.is_file():
        raise TrainingError(f"ROI file '{path}' does not exist")
    try:
        rois = roifile.roiread(path)
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingError(
            f"'{path.name}' is not an ImageJ ROI file (.roi or RoiSet.zip from the ROI Manager): {reason}"
        ) from None
    if not isinstance(rois, list):
        rois = [rois]
    if not rois:
        raise TrainingError(f"ROI file '{path.name}' contains no ROI")
    return rois


def _roi_slice(roi, name: str) -> int | None:
    if roi.z_position > 0:
        return int(roi.z_position) - 1
    if roi.position > 0:
        return int(roi.position) - 1
    return None


def _rasterize(roi, shape2d: tuple[int, int]) -> np.ndarray:
    """Mask of one regional ROI on a 2D grid (pixel centres inside the shape)."""
    from roifile import ROI_TYPE
    from skimage.draw import ellipse, polygon

    mask = np.zeros(shape2d, dtype=bool)
    if roi.roitype == ROI_TYPE.RECT and roi.multi_coordinates is None:
        mask[max(roi.top, 0) : max(roi.bottom, 0), max(roi.left, 0) : max(roi.right, 0)] = True
    elif roi.roitype == ROI_TYPE.OVAL and roi.multi_coordinates is None:
        h, w = roi.bottom - roi.top, roi.right - roi.left
        if h > 0 and w > 0:
            rr, cc = ellipse(roi.top + h / 2 - 0.5, roi.left + w / 2 - 0.5, h / 2, w / 2, shape=shape2d)
            mask[rr, cc] = True
    else:
        for xy in roi.coordinates(multi=True):
            xy = np.asarray(xy, dtype=float)
            if len(xy) < 3:
                continue
            # ImageJ polygon vertices lie on pixel corners; pixel (r, c) is inside when its
            # centre (r + 0.5, c + 0.5) is, i.e. integer point (r, c) of the shifted polygon.
            rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape2d)
            mask[rr, cc] ^= True
    return mask


def rois_to_labels(roi_path: str | Path, shape: Sequence[int]) -> np.ndarray:
    """Instance labels from ImageJ ROIs: one regional ROI per object.

    Parameters
    ----------
    roi_path : str or pathlib.Path
        ``RoiSet.zip`` (ROI Manager > More > Save) or a single ``.roi`` file. Polygon,
        rectangle, oval, freehand and traced ROIs (and composite shapes) are supported.
    shape : sequence of int
        Spatial shape of the image, ``(Y, X)`` or ``(Z, Y, X)``. In 3D each ROI labels its own
        slice (``z_position``, or ``position`` for plain stacks), and the ROIs drawn on
        consecutive slices of one object are one object (:func:`link_slice_rois`): ROIs with
        the same name (other than the ROI Manager's automatic ``"0003-0120-0045"`` names), and
        ROIs on adjacent slices that overlap by at least half of the smaller one.

    Returns
    -------
    numpy.ndarray
        ``int32`` labels: objects numbered ``1..N`` in the order of their first ROI (a later ROI
        overwrites an earlier one where they overlap).

    Raises
    ------
    TrainingError
        If the file is not a ROI file, holds no ROI, holds point or line ROIs, a 3D ROI has no
        slice, or no ROI covers any pixel of the image.
    """
    from roifile import ROI_TYPE

    path = Path(roi_path)
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (Y, X) or (Z, Y, X), got {shape}")
    rois = _read_rois(path)
    labels = np.zeros(shape, dtype=np.int32)
    regional = {ROI_TYPE.POLYGON, ROI_TYPE.RECT, ROI_TYPE.OVAL, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED}
    stack = labels.reshape((-1, *shape[-2:]))  # a 2D image is a stack of one slice
    masks, slices = [], []
    for i, roi in enumerate(rois):
        if roi.roitype == ROI_TYPE.POINT:
            raise TrainingError(
                f"'{path.name}' contains point ROIs; segmentation needs one area ROI per object "
                "(polygon, rectangle, oval, freehand) - use points for detection training"
            )
        if roi.roitype not in regional:
            kind = getattr(roi.roitype, "name", str(roi.roitype)).lower()
            raise TrainingError(
                f"'{path.name}': ROI '{roi.name or i + 1}' is a {kind} ROI; expected one area ROI per object "
                "(polygon, rectangle, oval, freehand)"
            )
        z = 0
        if len(shape) == 3:
            z = _roi_slice(roi, roi.name)
            if z is None:
                raise TrainingError(
                    f"'{path.name}': ROI '{roi.name or i + 1}' has no slice position, needed for a 3D image"
                )
        masks.append(_rasterize(roi, shape[-2:]) if 0 <= z < len(stack) else None)
        slices.append(z)
    objects = link_slice_rois(masks, slices, [roi.name for roi in rois]) if len(shape) == 3 else range(1, len(rois) + 1)
    n_drawn = 0
    for mask, z, obj in zip(masks, slices, objects):
        if mask is not None and mask.any():
            stack[z][mask] = obj
            n_drawn += 1
    if n_drawn == 0:
        raise TrainingError(
            f"the ROIs in '{path.name}' cover no pixel of the {_size(shape)} image (empty annotation)"
        )
    return labels


_AUTO_ROI_NAME = re.compile(r"^\d+(-\d+)+$")  # the ROI Manager's "0003-0120-0045" (slice-y-x), "-1" for repeats
#: ROIs on adjacent slices are one object when their overlap is at least this share of the smaller ROI
MIN_SLICE_OVERLAP = 0.5


def link_slice_rois(masks: Sequence[np.ndarray | None], slices: Sequence[int], names: Sequence[str]) -> list[int]:
    """Object numbers of 2D ROIs drawn slice by slice on a stack (one ROI per object and slice).

    Two ROIs belong to one object when they have the same name (a name given in the ROI
    Manager, not its automatic ``"0003-0120-0045"`` slice-y-x names), or when they lie on
    adjacent slices and overlap by at least :data:`MIN_SLICE_OVERLAP` of the smaller one; between
    two slices each ROI is linked to at most one other (the largest overlaps first, as a tracker
    would), and ROIs with two different given names are never linked. Without this each slice
    of an object would be an object of its own, and the one-pixel ridges between touching
    objects (:func:`~deepimagej.unet.weights.insert_ridges`) would cut it into slices.

    Args:
        masks: per ROI its 2D mask, or ``None`` for a ROI outside the stack.
        slices: per ROI its 0-based slice.
        names: per ROI its name (``""`` for none).

    Returns:
        Per ROI its object number, ``1..N`` in the order of each object's first ROI.
    """
    from scipy.cluster.hierarchy import DisjointSet

    objects = DisjointSet(range(len(masks)))
    given = [name if name and not _AUTO_ROI_NAME.match(name) else None for name in names]
    first_with_name: dict[str, int] = {}
    for i, name in enumerate(given):
        if name is not None:
            objects.merge(first_with_name.setdefault(name, i), i)
    boxes = [None if m is None else ndi.find_objects(m.astype(np.uint8)) for m in masks]  # [] when empty
    areas = [0 if m is None else int(np.count_nonzero(m)) for m in masks]
    by_slice: dict[int, list[int]] = {}
    for i, z in enumerate(slices):
        if boxes[i]:
            by_slice.setdefault(z, []).append(i)
    for z, here in sorted(by_slice.items()):
        pairs = []
        for i, j in itertools.product(here, by_slice.get(z + 1, [])):
            if given[i] is not None and given[j] is not None and given[i] != given[j]:
                continue
            both = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(boxes[i][0], boxes[j][0]))
            share = np.count_nonzero(masks[i][both] & masks[j][both]) / min(areas[i], areas[j])  # 0: boxes apart
            if share >= MIN_SLICE_OVERLAP:
                pairs.append((share, i, j))
        linked: set[int] = set()
        for _, i, j in sorted(pairs, reverse=True):
            if i not in linked and j not in linked:
                linked.update((i, j))
                objects.merge(i, j)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(objects[i], len(numbers) + 1) for i in range(len(masks))]


def points_from_rois(roi_path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Points of the multi-point ROIs (ImageJ point tool / multi-point tool) in a ROI file.

    Parameters
    ----------
    roi_path : str or pathlib.Path
        ``.roi`` or ``RoiSet.zip`` holding one or more point ROIs.
    ndim : {2, 3} or None
        2: return ``(y, x)``; 3: return ``(z, y, x)`` (slices from the per-point counter
        positions or the ROI's position, 0-based). None: 3 when any slice information is
        present, else 2.

    Returns
    -------
    numpy.ndarray
        ``float64`` array ``(N, ndim)`` in array order.

    Raises
    ------
    TrainingError
        If the file is not a ROI file, holds a non-point ROI, holds no point, or ``ndim=3`` is
        requested for points without slice information.
    """
    from roifile import ROI_TYPE

    path = Path(roi_path)
    rois = _read_rois(path)
    rows: list[np.ndarray] = []
    has_z = False
    for i, roi in enumerate(rois):
        if roi.roitype != ROI_TYPE.POINT:
            kind = getattr(roi.roitype, "name", str(roi.roitype)).lower()
            raise TrainingError(
                f"'{path.name}': ROI '{roi.name or i + 1}' is a {kind} ROI; detection expects point ROIs "
                "(one point per object)"
            )
        xy = np.asarray(roi.coordinates(), dtype=float).reshape(-1, 2)
        z = np.full(len(xy), -1.0)
        if (
            roi.counter_positions is not None
            and len(roi.counter_positions) == len(xy)
            and np.any(roi.counter_positions > 0)
        ):
            z = roi.counter_positions.astype(float) - 1
        elif _roi_slice(roi, roi.name) is not None:
            z[:] = _roi_slice(roi, roi.name)
        has_z = has_z or bool(np.any(z >= 0))
        rows.append(np.column_stack([z, xy[:, 1], xy[:, 0]]))
    pts = np.concatenate(rows) if rows else np.zeros((0, 3))
    if len(pts) == 0:
        raise TrainingError(f"'{path.name}' contains no point (empty annotation)")
    if ndim is None:
        ndim = 3 if has_z else 2
    if ndim == 2:
        return pts[:, 1:]
    if ndim == 3:
        if np.any(pts[:, 0] < 0):
            raise TrainingError(f"'{path.name}': some points have no slice position, needed for a 3D image")
        return pts
    raise ValueError(f"ndim must be 2, 3 or None, got {ndim}")


def write_point_rois(points: np.ndarray, path: str | Path, name: str = "points") -> Path:
    """Write points as one ImageJ multi-point ROI (``.roi``, or ``.zip`` for a RoiSet).

    The file opens in ImageJ/Fiji (File > Open, or ROI Manager > Open) as a multi-point
    selection; :func:`points_from_rois` reads it back.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` points in array order (z 0-based).
        Non-integer coordinates are stored with sub-pixel resolution.
    path : str or pathlib.Path
        Output ``.roi`` or ``.zip`` file (overwritten).
    name : str
        ROI name.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi, roiwrite

    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3) or len(pts) == 0:
        raise TrainingError(f"points must be a non-empty (N, 2) or (N, 3) array, got shape {pts.shape}")
    if pts.dtype.kind == "f" and np.all(pts == np.round(pts)):
        pts = pts.astype(np.int64)
    xy = pts[:, [-1, -2]]
    roi = ImagejRoi.frompoints(xy, name=name)
    roi.roitype = ROI_TYPE.POINT
    roi.options &= ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    if pts.shape[1] == 3:
        roi.counters = np.zeros(len(pts), dtype=np.uint8)
        roi.counter_positions = (np.round(pts[:, 0]).astype(np.uint32) + 1).astype(np.uint32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if path.suffix.lower() == ".zip":
        roiwrite(path, [roi], mode="w")
    else:
        roi.tofile(path)
    return path


def detection_targets(
    points: np.ndarray,
    shape: Sequence[int],
    radius: float = 3.0,
    r_ign: float = 6.0,
    element_size: Sequence[float] | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation targets for detection: a small disk per point and an ignore ring.

    Following the detection setup of Falk et al. 2019 (one point per object), every point
    becomes a disk (ball in 3D) of radius ``radius`` labelled as its own instance; pixels
    between ``radius`` and ``r_ign`` of any point are ignored (weight 0), so that the network is
    not punished for the exact extent of the blobs. Where disks would overlap, the nearest point
    wins. The values 3 and 6 px are this package's defaults (set them relative to the object
    size; detections are the peaks of the predicted foreground probability,
    :func:`deepimagej.unet.metrics.peaks_to_points`).

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, ndim)`` array-ordered points.
    shape : sequence of int
        Spatial shape of the image.
    radius : float
        Disk radius (pixels, or unit of ``element_size``).
    r_ign : float
        Outer radius of the ignore ring (>= ``radius``).
    element_size : float or sequence of float, optional
        Pixel size per axis.

    Returns
    -------
    labels : numpy.ndarray
        ``int32`` instance labels, point ``i`` -> label ``i + 1``.
    ignore : numpy.ndarray
        Boolean ignore mask (the rings).
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    pts = np.asarray(points, dtype=float).reshape(-1, ndim) if len(points) else np.zeros((0, ndim))
    if r_ign < radius:
        raise ValueError(f"r_ign ({r_ign}) must be >= radius ({radius})")
    spacing = (
        np.ones(ndim) if element_size is None else np.broadcast_to(np.asarray(element_size, float), (ndim,))
    )
    labels = np.zeros(shape, dtype=np.int32)
    best = np.full(shape, np.inf, dtype=np.float32)
    reach = np.ceil(r_ign / spacing).astype(int) + 1
    for i, p in enumerate(pts):
        c = np.round(p).astype(int)
        box = tuple(slice(max(0, ci - r), min(n, ci + r + 1)) for ci, r, n in zip(c, reach, shape))
        if any(b.start >= b.stop for b in box):
            continue
        grids = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
        d = np.sqrt(sum(((g - pi) * s) ** 2 for g, pi, s in zip(grids, p, spacing))).astype(np.float32)
        sub_best = best[box]
        closer = d < sub_best
        sub_best[closer] = d[closer]
        sub_lab = labels[box]
        sub_lab[closer & (d <= radius)] = i + 1
        sub_lab[closer & (d > radius)] = 0
    ignore = (best <= r_ign) & (labels == 0)
    return labels, ignore


def rescale_to_element_size(
    image: np.ndarray,
    labels: np.ndarray | None,
    from_size: Sequence[float] | float,
    to_size: Sequence[float] | float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample an image and its labels from one pixel size to another (the model's).

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X[, C])`` or ``(Z, Y, X[, C])``; a trailing channel axis is recognised when
        ``labels`` is given and has one axis less, otherwise all axes are spatial.
    labels : numpy.ndarray or None
        Label (or class, or ignore) image with the spatial shape; resampled by nearest
        neighbour.
    from_size, to_size : float or sequence of float
        Pixel size per spatial axis of the data and of the model (same unit).

    Returns
    -------
    image, labels : numpy.ndarray
        The image (linear interpolation, ``float32``) and labels (same dtype) on the new grid,
        ``round(shape * from_size / to_size)`` pixels.
    """
    image = np.asarray(image)
    spatial = labels.ndim if labels is not None else image.ndim
    if labels is not None and image.shape[:spatial] != np.shape(labels):
        raise TrainingError(
            f"image is {_size(image.shape[:spatial])} but labels are {_size(np.shape(labels))}; they must match"
        )
    f = np.broadcast_to(np.asarray(from_size, float), (spatial,)) / np.broadcast_to(
        np.asarray(to_size, float), (spatial,)
    )
    if np.allclose(f, 1.0):
        return image.astype(np.float32), labels
    zoom_img = tuple(f) + (1.0,) * (image.ndim - spatial)
    out_img = ndi.zoom(image.astype(np.float32), zoom_img, order=1, mode="grid-mirror", grid_mode=True)
    out_lab = None
    if labels is not None:
        out_lab = ndi.zoom(np.asarray(labels), tuple(f), order=0, mode="nearest", grid_mode=True)
    return out_img, out_lab


# ---------------------------------------------------------------------------------------------
# samples


@dataclass
class TrainingSample:
    """One annotated image, ready for tile sampling.

    Attributes
    ----------
    image : numpy.ndarray
        ``float32`` ``(Y, X[, C])`` or ``(Z, Y, X[, C])``.
    labels : numpy.ndarray
        ``int32`` instance labels as given (before ridges).
    ignore : numpy.ndarray
        Boolean mask of ignored pixels.
    weights : numpy.ndarray
        ``float32`` loss weights ``w'_bal + lambda * w_sep`` (0 where ignored).
    classes : numpy.ndarray
        ``uint8`` classes after ridge insertion (0 background, 1 foreground).
    pdf : numpy.ndarray or None
        Tile-centre sampling pdf ``w'_bal`` (0 where ignored).
    name : str
        Where the sample came from (for messages).
    points : numpy.ndarray or None
        Detection: the annotated points ``(N, ndim)`` the disks were drawn from (used to choose
        the peak-finding settings on validation images).
    """

    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    weights: np.ndarray
    classes: np.ndarray
    pdf: np.ndarray | None = None
    name: str = ""
    points: np.ndarray | None = None


def prepare_sample(
    image: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray | None = None,
    *,
    image_name: str | None = None,
    labels_name: str | None = None,
    **weight_kwargs,
) -> TrainingSample:
    """Check an image/annotation pair and compute classes, weights and sampling pdf.

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X[, C])`` or ``(Z, Y, X[, C])``.
    labels : numpy.ndarray
        Instance labels with the image's spatial shape.
    ignore : numpy.ndarray, optional
        Boolean mask of ignored pixels.
    image_name, labels_name : str, optional
        File names used in error messages.
    **weight_kwargs
        ``v_bal``, ``sigma_bal``, ``lam``, ``sigma_sep``, ``element_size`` of
        :func:`deepimagej.unet.weights.weight_map`.

    Returns
    -------
    TrainingSample

    Raises
    ------
    TrainingError
        Image and labels of different sizes; labels without any object; everything ignored.
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    iname = f"image '{image_name}'" if image_name else "the image"
    lname = f"labels '{labels_name}'" if labels_name else "the labels"
    spatial_ok = image.shape == labels.shape or (
        image.ndim == labels.ndim + 1 and image.shape[:-1] == labels.shape
    )
    if not spatial_ok:
        img_sp = image.shape if image.ndim <= labels.ndim else image.shape[: labels.ndim]
        if image.ndim == 3 and labels.ndim == 2 and image.shape[-1] > 4:
            img_sp = image.shape
        raise TrainingError(
            f"{iname} is {_size(img_sp)} but {lname} are {_size(labels.shape)}; they must have the same size"
        )
    if labels.dtype.kind == "b":
        labels = labels.astype(np.int32)
    if labels.dtype.kind not in "iu":
        raise TrainingError(
            f"{lname} must be integers (0 = background, 1, 2, ... = objects), got {labels.dtype}"
        )
    if labels.min() < 0:
        raise TrainingError(f"{lname} have negative values; expected 0 = background, 1, 2, ... = objects")
    if ignore is None:
        ignore = np.zeros(labels.shape, dtype=bool)
    else:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != labels.shape:
            raise TrainingError(
                f"the ignore mask is {_size(ignore.shape)} but {lname} are {_size(labels.shape)}"
            )
    if not np.any(labels[~ignore] > 0):
        raise TrainingError(f"{lname} contain no annotated object (empty annotation)")
    labels = labels.astype(np.int32)
    classes = (insert_ridges(labels) > 0).astype(np.uint8)
    weights = weight_map(labels, ignore, **weight_kwargs)
    pdf = class_balance_weights(
        classes,
        ignore,
        v_bal=weight_kwargs.get("v_bal", V_BAL),
        sigma_bal=weight_kwargs.get("sigma_bal", SIGMA_BAL),
        element_size=weight_kwargs.get("element_size"),
    )
    return TrainingSample(
        image=image.astype(np.float32),
        labels=labels,
        ignore=ignore,
        weights=weights,
        classes=classes,
        pdf=pdf,
        name=image_name or "",
    )


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.stem)]


def _label_key(stem: str) -> str:
    s = stem.lower()
    for suffix in _LABEL_STEM_SUFFIXES:
        if s.endswith(suffix) and len(s) > len(suffix):
            return s[: -len(suffix)]
    return s


def load_folder_pairs(images_dir: str | Path, labels_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pair image files with their annotation files by file name.

    An image ``cell_01.tif`` matches ``cell_01.png`` / ``cell_01.tif`` / ``cell_01.zip`` (ROIs) /
    ``cell_01.roi`` in ``labels_dir``, also with a suffix such as ``_mask``, ``_labels``,
    ``_rois`` (``cell_01_mask.png``). Matching ignores case.

    Parameters
    ----------
    images_dir, labels_dir : str or pathlib.Path
        Folders of images and of label masks / ROI files.

    Returns
    -------
    list of (pathlib.Path, pathlib.Path)
        ``(image, labels)`` pairs in natural order of the image names (2 before 10).

    Raises
    ------
    TrainingError
        Missing folder, no image, an image without labels, or ambiguous labels.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for what, d in (("images", images_dir), ("labels", labels_dir)):
        if not d.is_dir():
            raise TrainingError(f"{what} folder '{d}' does not exist")
    images = sorted(
        (p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=_natural_key,
    )
    if not images:
        raise TrainingError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in '{images_dir}'")
    by_key: dict[str, list[Path]] = {}
    for p in labels_dir.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + ROI_SUFFIXES:
            by_key.setdefault(_label_key(p.stem), []).append(p)
    pairs, missing = [], []
    for img in images:
        found = by_key.get(img.stem.lower()) or by_key.get(_label_key(img.stem))
        if not found:
            missing.append(img.name)
            continue
        if len(found) > 1:
            names = ", ".join(sorted(f"'{f.name}'" for f in found))
            raise TrainingError(f"image '{img.name}' has several label files in '{labels_dir}': {names}")
        pairs.append((img, found[0]))
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise TrainingError(
            f"no label file in '{labels_dir}' for image(s) {shown} (labels are matched by file name)"
        )
    return pairs


def split_validation(samples: Sequence, n_val: float = 0.2, *, seed: int | None = None) -> tuple[list, list]:
    """Split samples into training and validation sets.

    Parameters
    ----------
    samples : sequence
        Samples (or file pairs).
    n_val : int or float
        Number of validation samples (int >= 0), or a fraction in ``(0, 1)`` rounded to at least
        one sample. 0 gives no validation set.
    seed : int, optional
        Without a seed the *last* ``n_val`` samples are held out (reproducible, follows the
        given order); with a seed they are chosen at random.

    Returns
    -------
    train, val : list
        Both in the original order.

    Raises
    ------
    TrainingError
        If fewer than ``n_val + 1`` samples are given (at least one must remain for training).
    """
    samples = list(samples)
    n = len(samples)
    if isinstance(n_val, float) and not float(n_val).is_integer():
        if not 0 < n_val < 1:
            raise TrainingError(f"validation fraction must be between 0 and 1, got {n_val}")
        k = max(1, round(n_val * n))
    else:
        k = int(n_val)
        if k < 0:
            raise TrainingError(f"number of validation images must be >= 0, got {k}")
    if k == 0:
        return samples, []
    if n < k + 1:
        raise TrainingError(
            f"{n} image(s) are too few for a validation split of {k}: at least {k + 1} are needed "
            "(one for training), or train without validation"
        )
    if seed is None:
        val_idx = set(range(n - k, n))
    else:
        val_idx = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
