"""Detection annotations: one point per object (Falk et al. 2019), and the targets the U-Net learns from them.

Points come from ImageJ multi-point ROIs (:func:`points_from_rois`, written back by
:func:`write_point_rois`) or from the objects of a label mask (:func:`centroids`,
:func:`write_centroid_rois`). :func:`detection_targets` turns them into what the network trains
on: a small disk per point and an ignore ring around it. Coordinates are array-ordered: ``(y, x)``
or ``(z, y, x)``, ``z`` the 0-based slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from deepimagej.errors import TrainingError
from deepimagej.unet.targets import is_ignore_roi, load_mask, read_rois, roi_slice

__all__ = ["centroids", "detection_targets", "points_from_rois", "write_centroid_rois", "write_point_rois"]


def centroids(labels: np.ndarray) -> np.ndarray:
    """Centroids (array order, ``(N, ndim)``) of the objects of a label image, in label order."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros((0, labels.ndim))
    return np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, ids), dtype=float).reshape(
        -1, labels.ndim
    )


def points_from_rois(roi_path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Points of the multi-point ROIs (ImageJ point tool / multi-point tool) in a ROI file.

    Area ROIs named ``ignore`` are allowed next to the points (see :func:`roi_annotation`); they
    are not points.

    Args:
        roi_path: ``.roi`` or ``RoiSet.zip`` holding one or more point ROIs.
        ndim: 2: return ``(y, x)``; 3: return ``(z, y, x)`` (slices from the per-point counter
            positions or the ROI's position, 0-based). ``None``: 3 when any slice information is
            present, else 2.

    Returns:
        ``float64`` array ``(N, ndim)`` in array order.

    Raises:
        TrainingError: not a ROI file, a non-point ROI, no point, or ``ndim=3`` for points
        without slice information.
    """
    from roifile import ROI_TYPE

    path = Path(roi_path)
    rows: list[np.ndarray] = []
    has_z = False
    for i, roi in enumerate(read_rois(path)):
        if is_ignore_roi(roi):
            continue
        if roi.roitype != ROI_TYPE.POINT:
            kind = getattr(roi.roitype, "name", str(roi.roitype)).lower()
            raise TrainingError(
                f"'{path.name}': ROI '{roi.name or i + 1}' is a {kind} ROI; detection expects point ROIs "
                "(one point per object)"
            )
        xy = np.asarray(roi.coordinates(), dtype=float).reshape(-1, 2)
        z = np.full(len(xy), -1.0)
        counters = roi.counter_positions
        if counters is not None and len(counters) == len(xy) and np.any(counters > 0):
            z = counters.astype(float) - 1
        elif roi_slice(roi) is not None:
            z[:] = roi_slice(roi)
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

    Args:
        points: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` points in array order (z
            0-based). Non-integer coordinates are stored with sub-pixel resolution.
        path: output ``.roi`` or ``.zip`` file (overwritten).
        name: ROI name.

    Returns:
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


def write_centroid_rois(
    masks: Sequence[str | Path], folder: str | Path, *, mode: str = "auto", prefix: str = "objects"
) -> list[Path]:
    """Detection annotations from segmentation masks: the centroid of every object, one point ROI file per mask.

    ``folder/<mask name>.roi`` holds one multi-point ROI named ``<prefix>-<mask name>``, as a user
    would click them in ImageJ (File > Open shows it on the image).

    Args:
        masks: label mask files (:func:`load_mask`).
        folder: where the ``.roi`` files go (created).
        mode: how the masks' values become objects (:func:`load_mask`).
        prefix: the start of the ROIs' names.

    Returns:
        The written files, in the order of ``masks``.
    """
    folder = Path(folder)
    paths = []
    for mask in map(Path, masks):
        points = centroids(load_mask(mask, mode=mode))
        paths.append(write_point_rois(points, folder / f"{mask.stem}.roi", name=f"{prefix}-{mask.stem}"))
    return paths


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
    :func:`deepimagej.unet.postprocess.peaks_to_points`).

    Args:
        points: ``(N, ndim)`` array-ordered points.
        shape: spatial shape of the image.
        radius: disk radius (pixels, or unit of ``element_size``).
        r_ign: outer radius of the ignore ring (>= ``radius``).
        element_size: pixel size per axis.

    Returns:
        ``(labels, ignore)``: ``int32`` instance labels (point ``i`` -> label ``i + 1``) and the
        boolean ignore mask (the rings).
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
