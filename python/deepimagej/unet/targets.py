"""Annotations to labels: label masks and ImageJ ROIs as the U-Net's training targets.

Sources of annotations (Falk et al., Nature Methods 2019, and the U-Net plugin for ImageJ):

* label mask files: instance labels (one integer per object) or semantic binary masks
  (e.g. ISBI 2012: 255 = cell interior, 0 = membrane), turned into instances by
  4-connected components (:func:`load_mask`); or, for several classes, masks whose values are
  the classes (:func:`mask_annotation` with ``n_classes > 2``), with one value that marks
  regions to ignore;
* ImageJ ROI Manager files (``RoiSet.zip`` or ``.roi``) with one regional ROI per object
  (:func:`roi_annotation`): ROIs named ``ignore`` mark regions to ignore; with class names,
  each ROI's name (``nucleus``, or ``nucleus#3`` to tie the ROIs of one 3D object together)
  is its class;
* multi-point ROIs, one point per object, for detection: :mod:`deepimagej.unet.points`.

Everything becomes an :class:`Annotation`: instance labels, the class of each labelled pixel
and the pixels to ignore (weight 0 in the loss). Coordinates are array-ordered everywhere:
points are ``(y, x)`` or ``(z, y, x)``; ImageJ's ``x`` is the column and ``y`` the row (no
half-pixel shift), ``z`` the 0-based slice. Every user error is a
:class:`~deepimagej.errors.TrainingError` with a one-line message.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from deepimagej.errors import TrainingError
from deepimagej.unet.files import load_image

__all__ = [
    "IGNORE_ROI_NAME",
    "MIN_SLICE_OVERLAP",
    "Annotation",
    "ignore_rois",
    "image_size",
    "is_ignore_roi",
    "link_slice_rois",
    "load_mask",
    "mask_annotation",
    "read_rois",
    "roi_annotation",
    "roi_slice",
    "rois_to_labels",
]

#: ROIs with this name (any case) mark regions that do not count in training (weight 0).
IGNORE_ROI_NAME = "ignore"
#: ROIs on adjacent slices are one object when their overlap is at least this share of the smaller ROI
MIN_SLICE_OVERLAP = 0.5
_AUTO_ROI_NAME = re.compile(
    r"^\d+(-\d+)+$"
)  # the ROI Manager's "0003-0120-0045" (slice-y-x), "-1" for repeats


@dataclass
class Annotation:
    """What an annotation file says about an image.

    Attributes:
        labels: ``int32`` instance labels, 0 = background, one number per object.
        ignore: boolean mask of pixels that do not count (weight 0), or ``None``.
        classes: the class of every labelled pixel (``uint8``, 0 where ``labels`` is 0), or
            ``None`` when every object is of class 1 (foreground / background).
        points: detection: the annotated points ``(N, ndim)``, or ``None``.
    """

    labels: np.ndarray
    ignore: np.ndarray | None = None
    classes: np.ndarray | None = None
    points: np.ndarray | None = None


def image_size(shape: Sequence[int]) -> str:
    """ImageJ-style size: width x height [x depth]."""
    shape = tuple(shape)
    if len(shape) < 2:
        return "x".join(str(n) for n in shape)
    return "x".join(str(n) for n in (shape[-1], shape[-2], *shape[-3::-1]))


# ---------------------------------------------------------------------------------------------
# label masks


def _read_mask(path: Path) -> np.ndarray:
    """A grey-level mask file as non-negative integers."""
    mask = load_image(path)
    if mask.ndim == 3 and mask.shape[-1] == 3 and path.suffix.lower() not in (".tif", ".tiff"):
        if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
            raise TrainingError(
                f"label mask '{path.name}' is a colour image; save labels as a grey-level image"
            )
        mask = mask[..., 0]
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
    return mask


def _components(mask: np.ndarray) -> np.ndarray:
    labels, _ = ndi.label(mask)  # default structure: 4-connectivity (6 in 3D)
    return labels.astype(np.int32)


def load_mask(path: str | Path, mode: str = "auto") -> np.ndarray:
    """Read a label mask and return instance labels.

    Args:
        path: mask file (TIFF/PNG/...). An RGB mask must be grey (equal channels).
        mode: ``"semantic"``: a binary mask (non-zero = foreground, e.g. ISBI 2012 where 255 is
            the cell interior and 0 the membrane) whose 4-connected foreground components
            (6-connected in 3D) become instances. ``"instance"``: the values are object ids.
            ``"auto"``: semantic when the mask has at most one non-zero value (0/1, 0/255), else
            instance.

    Returns:
        ``int32`` instance labels, 0 = background.

    Raises:
        TrainingError: the file cannot be read or is a colour image.
    """
    return mask_annotation(path, mode=mode).labels


def mask_annotation(
    path: str | Path, *, mode: str = "auto", n_classes: int = 2, ignore_label: int | None = None
) -> Annotation:
    """A label mask file as an :class:`Annotation`.

    Args:
        path: mask file.
        mode: for two classes, how values become objects (see :func:`load_mask`).
        n_classes: more than 2: the values are classes (0 = background, 1 .. ``n_classes - 1``),
            as the U-Net plugin takes label images; the objects of each class are its 4-connected
            components (6-connected in 3D).
        ignore_label: pixels with this value are ignored (weight 0), e.g. an unannotated region.

    Returns:
        The annotation (``classes`` set when ``n_classes > 2``).

    Raises:
        TrainingError: unreadable or colour mask, negative values, or (classes) a value that is
        neither a class nor the ignore label.
    """
    if mode not in ("auto", "instance", "semantic"):
        raise ValueError(f"mode must be 'auto', 'instance' or 'semantic', got {mode!r}")
    path = Path(path)
    mask = _read_mask(path)
    ignore = None
    if ignore_label is not None:
        ignore = mask == ignore_label
        mask = np.where(ignore, 0, mask)
        ignore = ignore if ignore.any() else None
    if n_classes > 2:
        values = np.unique(mask)
        bad = values[values >= n_classes]
        if bad.size:
            extra = f" nor the ignore label {ignore_label}" if ignore_label is not None else ""
            raise TrainingError(
                f"label mask '{path.name}' has the value {int(bad[0])}, which is not a class (0-{n_classes - 1}){extra}; "
                f"set the number of classes or the ignore label"
            )
        labels = np.zeros(mask.shape, np.int32)
        for k in values[values > 0]:
            objects = _components(mask == k)
            labels[objects > 0] = objects[objects > 0] + labels.max()
        return Annotation(labels, ignore, mask.astype(np.uint8))
    semantic = mode == "semantic" or (mode == "auto" and np.unique(mask[mask != 0]).size <= 1)
    labels = _components(mask > 0) if semantic else mask.astype(np.int32)
    return Annotation(labels, ignore)


# ---------------------------------------------------------------------------------------------
# ImageJ ROIs


def read_rois(roi_path: str | Path) -> list:
    """The ROIs of a ``.roi`` or ``RoiSet.zip`` file (roifile objects), at least one.

    Raises:
        TrainingError: missing file, not a ROI file, or no ROI in it.
    """
    import roifile

    path = Path(roi_path)
    if not path.is_file():
        raise TrainingError(f"ROI file '{path}' does not exist")
    try:
        rois = roifile.roiread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the same user error
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingError(
            f"'{path.name}' is not an ImageJ ROI file (.roi or RoiSet.zip from the ROI Manager): {reason}"
        ) from None
    if not isinstance(rois, list):
        rois = [rois]
    if not rois:
        raise TrainingError(f"ROI file '{path.name}' contains no ROI")
    return rois


def roi_slice(roi: Any) -> int | None:
    """A ROI's 0-based slice in a stack (``z_position``, else ``position``), or ``None``."""
    if roi.z_position > 0:
        return int(roi.z_position) - 1
    if roi.position > 0:
        return int(roi.position) - 1
    return None


def is_ignore_roi(roi: Any) -> bool:
    """Whether a ROI is named ``ignore``: a region that does not count in training."""
    return (roi.name or "").strip().lower() == IGNORE_ROI_NAME


def _rasterize(roi: Any, shape2d: tuple[int, ...]) -> np.ndarray:
    """Mask of one regional ROI on a 2D grid of shape ``(Y, X)`` (pixel centres inside the shape)."""
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


def _check_regional(roi: Any, index: int, path: Path) -> None:
    from roifile import ROI_TYPE

    if roi.roitype == ROI_TYPE.POINT:
        raise TrainingError(
            f"'{path.name}' contains point ROIs; segmentation needs one area ROI per object "
            "(polygon, rectangle, oval, freehand) - use points for detection training"
        )
    if roi.roitype not in (
        ROI_TYPE.POLYGON,
        ROI_TYPE.RECT,
        ROI_TYPE.OVAL,
        ROI_TYPE.FREEHAND,
        ROI_TYPE.TRACED,
    ):
        kind = getattr(roi.roitype, "name", str(roi.roitype)).lower()
        raise TrainingError(
            f"'{path.name}': ROI '{roi.name or index + 1}' is a {kind} ROI; expected one area ROI per object "
            "(polygon, rectangle, oval, freehand)"
        )


def _ignore_mask(rois: list, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    """The pixels of the ROIs named ``ignore`` (a 3D ignore ROI without a slice covers every slice)."""
    ignore = np.zeros(shape, dtype=bool)
    stack = ignore.reshape((-1, *shape[-2:]))
    for i, roi in enumerate(rois):
        if not is_ignore_roi(roi):
            continue
        _check_regional(roi, i, path)
        z = roi_slice(roi) if len(shape) == 3 else 0
        mask = _rasterize(roi, shape[-2:])
        if z is None:
            stack[:] |= mask
        elif 0 <= z < len(stack):
            stack[z] |= mask
    return ignore if ignore.any() else None


def _roi_class(name: str, class_names: Sequence[str], path: Path) -> tuple[int, str]:
    """Class number (1-based) and 3D object key of a ROI named ``class`` or ``class#id``."""
    base, _, _ = name.partition("#")
    lookup = {c.lower(): k for k, c in enumerate(class_names, start=1)}
    k = lookup.get(base.strip().lower())
    if k is None:
        shown = name if name else "(no name)"
        raise TrainingError(
            f"'{path.name}': ROI '{shown}' is not named after a class ({', '.join(class_names)}) nor '{IGNORE_ROI_NAME}'; "
            "rename it in the ROI Manager (Rename...)"
        )
    return k, (name if "#" in name else "")


def ignore_rois(roi_path: str | Path, shape: Sequence[int]) -> np.ndarray | None:
    """The pixels of the ROIs named ``ignore`` in a ROI file (``None`` when it has none).

    A ROI on a slice of a stack ignores that slice; one without a slice position ignores every slice.
    """
    return _ignore_mask(read_rois(roi_path), tuple(int(n) for n in shape), Path(roi_path))


def roi_annotation(roi_path: str | Path, shape: Sequence[int], class_names: Sequence[str] = ()) -> Annotation:
    """Labels from ImageJ ROIs: one regional ROI per object, ROIs named ``ignore`` as regions to ignore.

    Args:
        roi_path: ``RoiSet.zip`` (ROI Manager > More > Save) or a single ``.roi`` file. Polygon,
            rectangle, oval, freehand and traced ROIs (and composite shapes) are supported.
        shape: spatial shape of the image, ``(Y, X)`` or ``(Z, Y, X)``. In 3D each ROI labels its own
            slice (``z_position``, or ``position`` for plain stacks), and the ROIs drawn on
            consecutive slices of one object are one object (:func:`link_slice_rois`).
        class_names: the foreground classes (class 1, 2, ...): each ROI's name is its class, as in
            the U-Net plugin (``nucleus``; ``nucleus#3`` names object 3 of that class, so that its
            ROIs on several slices are one object). Empty: every object is of class 1 and a ROI's
            name only ties the ROIs of a 3D object together.

    Returns:
        An :class:`Annotation`: objects numbered ``1..N`` in the order of their first ROI (a later
        ROI overwrites an earlier one where they overlap), the ``ignore`` ROIs' pixels and, with
        class names, the class of every labelled pixel.

    Raises:
        TrainingError: not a ROI file, no ROI, point or line ROIs, a 3D ROI without a slice, a ROI
        not named after a class, or no object ROI covering any pixel of the image.
    """
    path = Path(roi_path)
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (Y, X) or (Z, Y, X), got {shape}")
    all_rois = read_rois(path)
    ignore = _ignore_mask(all_rois, shape, path)
    rois = [roi for roi in all_rois if not is_ignore_roi(roi)]
    labels = np.zeros(shape, dtype=np.int32)
    stack = labels.reshape((-1, *shape[-2:]))  # a 2D image is a stack of one slice
    masks, slices, kinds, keys = [], [], [], []
    for i, roi in enumerate(rois):
        _check_regional(roi, i, path)
        z = roi_slice(roi) if len(shape) == 3 else 0
        if z is None:
            raise TrainingError(
                f"'{path.name}': ROI '{roi.name or i + 1}' has no slice position, needed for a 3D image"
            )
        masks.append(_rasterize(roi, shape[-2:]) if 0 <= z < len(stack) else None)
        slices.append(z)
        kind, key = _roi_class(roi.name or "", class_names, path) if class_names else (1, roi.name or "")
        kinds.append(kind)
        keys.append(key)
    if len(shape) == 3:
        objects = link_slice_rois(masks, slices, keys, kinds)
    else:
        objects = list(range(1, len(rois) + 1))
    classes = np.zeros(shape, dtype=np.uint8) if class_names else None
    class_stack = None if classes is None else classes.reshape(stack.shape)
    n_drawn = 0
    for mask, z, obj, kind in zip(masks, slices, objects, kinds):
        if mask is not None and mask.any():
            stack[z][mask] = obj
            if class_stack is not None:
                class_stack[z][mask] = kind
            n_drawn += 1
    if n_drawn == 0:
        raise TrainingError(
            f"the ROIs in '{path.name}' cover no pixel of the {image_size(shape)} image (empty annotation)"
        )
    return Annotation(labels, ignore, classes)


def rois_to_labels(roi_path: str | Path, shape: Sequence[int]) -> np.ndarray:
    """Instance labels from ImageJ ROIs, one regional ROI per object (see :func:`roi_annotation`)."""
    return roi_annotation(roi_path, shape).labels


def link_slice_rois(
    masks: Sequence[np.ndarray | None],
    slices: Sequence[int],
    names: Sequence[str],
    classes: Sequence[int] | None = None,
) -> list[int]:
    """Object numbers of 2D ROIs drawn slice by slice on a stack (one ROI per object and slice).

    Two ROIs belong to one object when they have the same name (a name given in the ROI
    Manager, not its automatic ``"0003-0120-0045"`` slice-y-x names), or when they lie on
    adjacent slices and overlap by at least :data:`MIN_SLICE_OVERLAP` of the smaller one; between
    two slices each ROI is linked to at most one other (the largest overlaps first, as a tracker
    would), and ROIs with two different given names, or of two different classes, are never
    linked. Without this each slice of an object would be an object of its own, and the one-pixel
    ridges between touching objects (:func:`~deepimagej.unet.weights.insert_ridges`) would cut it
    into slices.

    Args:
        masks: per ROI its 2D mask, or ``None`` for a ROI outside the stack.
        slices: per ROI its 0-based slice.
        names: per ROI its name (``""`` for none).
        classes: per ROI its class (``None``: all the same).

    Returns:
        Per ROI its object number, ``1..N`` in the order of each object's first ROI.
    """
    from scipy.cluster.hierarchy import DisjointSet

    kinds = list(classes) if classes is not None else [1] * len(masks)
    objects = DisjointSet(range(len(masks)))
    given = [name if name and not _AUTO_ROI_NAME.match(name) else None for name in names]
    first_with_name: dict[tuple[int, str], int] = {}
    for i, name in enumerate(given):
        if name is not None:
            objects.merge(first_with_name.setdefault((kinds[i], name), i), i)
    boxed: dict[int, tuple[np.ndarray, tuple[slice, ...]]] = {}  # per ROI with pixels: its mask and box
    for i, m in enumerate(masks):
        if m is None:
            continue
        boxes = ndi.find_objects(m.astype(np.uint8))  # [] when empty
        if boxes:
            boxed[i] = (m, boxes[0])
    areas = [0 if m is None else int(np.count_nonzero(m)) for m in masks]
    by_slice: dict[int, list[int]] = {}
    for i, z in enumerate(slices):
        if i in boxed:
            by_slice.setdefault(z, []).append(i)
    for z, here in sorted(by_slice.items()):
        pairs = []
        for i, j in itertools.product(here, by_slice.get(z + 1, [])):
            if kinds[i] != kinds[j] or (
                given[i] is not None and given[j] is not None and given[i] != given[j]
            ):
                continue
            (mask_i, box_i), (mask_j, box_j) = boxed[i], boxed[j]
            both = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(box_i, box_j))
            share = np.count_nonzero(mask_i[both] & mask_j[both]) / min(areas[i], areas[j])  # 0: boxes apart
            if share >= MIN_SLICE_OVERLAP:
                pairs.append((share, i, j))
        linked: set[int] = set()
        for _, i, j in sorted(pairs, reverse=True):
            if i not in linked and j not in linked:
                linked.update((i, j))
                objects.merge(i, j)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(objects[i], len(numbers) + 1) for i in range(len(masks))]
