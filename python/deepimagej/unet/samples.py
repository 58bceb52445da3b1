"""Training samples: an image with its classes, loss weights and tile-sampling pdf (Falk et al. 2019).

:func:`prepare_sample` turns an image and its annotation (instance labels, optionally the class of
each object and the pixels to ignore) into a :class:`TrainingSample`: ridges between touching
objects, the class image the network learns, the weight map of the paper
(:func:`deepimagej.unet.weights.weight_map`) and the pdf tiles are drawn from.
:func:`load_samples` does it for files (an image folder and an annotation folder, or one pair),
as :class:`~deepimagej.unet.config.TrainingConfig` says: label masks or ROIs, segmentation or
detection, classes, ignore regions, and the model's element size the images are resampled to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej import resample
from deepimagej.errors import TrainingError
from deepimagej.unet import points as detection
from deepimagej.unet import targets
from deepimagej.unet.config import TrainingConfig
from deepimagej.unet.files import ROI_SUFFIXES, load_folder_pairs, load_image_with_size
from deepimagej.unet.weights import SIGMA_BAL, V_BAL, class_balance_weights, insert_ridges, weight_map

__all__ = ["TrainingSample", "as_samples", "load_samples", "prepare_sample"]


@dataclass
class TrainingSample:
    """One annotated image, ready for tile sampling.

    Attributes:
        image: ``float32`` ``(Y, X[, C])`` or ``(Z, Y, X[, C])``, as read (the pre-processing of
            the config is applied when tiles are drawn).
        labels: ``int32`` instance labels as given (before ridges).
        ignore: boolean mask of ignored pixels.
        weights: ``float32`` loss weights ``w'_bal + lambda * w_sep`` (0 where ignored).
        classes: ``uint8`` classes after ridge insertion (0 background, 1 .. K-1 the objects' classes).
        pdf: tile-centre sampling pdf ``w'_bal`` (0 where ignored).
        name: where the sample came from (for messages).
        points: detection: the annotated points ``(N, ndim)`` the disks were drawn from (used to
            choose the peak-finding settings on validation images).
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
    classes: np.ndarray | None = None,
    image_name: str | None = None,
    labels_name: str | None = None,
    **weight_kwargs: Any,
) -> TrainingSample:
    """Check an image/annotation pair and compute classes, weights and sampling pdf.

    Args:
        image: ``(Y, X[, C])`` or ``(Z, Y, X[, C])``.
        labels: instance labels with the image's spatial shape.
        ignore: boolean mask of ignored pixels.
        classes: the class (1 .. K-1) of every labelled pixel, for several classes; ``None``: every
            object is class 1.
        image_name, labels_name: file names used in error messages.
        **weight_kwargs: ``v_bal``, ``sigma_bal``, ``lam``, ``sigma_sep``, ``element_size`` of
            :func:`deepimagej.unet.weights.weight_map`.

    Returns:
        The :class:`TrainingSample`.

    Raises:
        TrainingError: image and labels of different sizes; labels without any object; everything ignored.
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
            f"{iname} is {targets.image_size(img_sp)} but {lname} are {targets.image_size(labels.shape)}; "
            "they must have the same size"
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
                f"the ignore mask is {targets.image_size(ignore.shape)} but {lname} are {targets.image_size(labels.shape)}"
            )
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != labels.shape or np.any((classes > 0) != (labels > 0)):
            raise TrainingError(
                f"the classes of {lname} must give every object (and only objects) a class > 0"
            )
    if not np.any(labels[~ignore] > 0):
        raise TrainingError(f"{lname} contain no annotated object (empty annotation)")
    labels = labels.astype(np.int32)
    ridged = insert_ridges(labels, classes) > 0
    class_image = (ridged if classes is None else np.where(ridged, classes, 0)).astype(np.uint8)
    weights = weight_map(labels, ignore, classes=classes, **weight_kwargs)
    pdf = class_balance_weights(
        class_image,
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
        classes=class_image,
        pdf=pdf,
        name=image_name or "",
    )


def _rescaled(array: np.ndarray | None, axes: str, factors: dict[str, float]) -> np.ndarray | None:
    return None if array is None else resample.rescale(array, axes, factors, labels=True)


def _annotation(
    path: Path, shape: tuple[int, ...], factors: dict[str, float], config: TrainingConfig
) -> targets.Annotation:
    """The annotation of one image file, on the grid of the model's element size."""
    axes = config.spatial_axes
    is_roi = path.suffix.lower() in ROI_SUFFIXES
    if config.task == "detection":
        if is_roi:
            points = detection.points_from_rois(path, ndim=config.ndim)
            ignore = targets.ignore_rois(path, shape)
        else:
            mask = targets.mask_annotation(path, ignore_label=config.ignore_label)
            points, ignore = detection.centroids(mask.labels), mask.ignore
        scale = np.array([factors.get(a, 1.0) for a in axes])
        ignore = _rescaled(ignore, axes, factors)
        new_shape = tuple(max(1, round(n * s)) for n, s in zip(shape, scale))
        labels, rings = detection.detection_targets(points * scale, new_shape, config.radius, config.r_ign)
        return targets.Annotation(
            labels, rings if ignore is None else rings | (ignore & (labels == 0)), points=points * scale
        )
    if is_roi:
        found = targets.roi_annotation(path, shape, config.class_names if config.n_classes > 2 else ())
        if config.n_classes > 2 and not config.class_names:
            raise TrainingError(
                f"'{path.name}': ROIs give classes by their names; set the {config.n_classes - 1} class names"
            )
    else:
        found = targets.mask_annotation(path, n_classes=config.n_classes, ignore_label=config.ignore_label)
    return targets.Annotation(
        resample.rescale(found.labels, axes, factors, labels=True),
        _rescaled(found.ignore, axes, factors),
        _rescaled(found.classes, axes, factors),
    )


def load_samples(
    images: str | Path, labels: str | Path, config: TrainingConfig | None = None
) -> list[TrainingSample]:
    """Training samples from files: an image folder and a folder of annotations (or one image + one file).

    Annotations are matched to images by file name (:func:`deepimagej.unet.files.load_folder_pairs`):
    label masks (instance or binary; with ``n_classes > 2`` values are classes), ImageJ ROI files
    (``.zip`` RoiSet / ``.roi``, one regional ROI per object; ``ignore`` ROIs; with several classes
    the ROI names are the classes) or, for detection, multi-point ROIs (one point per object; each
    becomes a disk of ``radius`` with an ignore ring up to ``r_ign``) or masks whose objects'
    centroids are the points. With an element size in the config, images with a calibration are
    resampled to it (annotations with them).

    Args:
        images: an image folder or one image file.
        labels: the annotation folder, or one annotation file for one image.
        config: the training settings (defaults when omitted).

    Returns:
        One :class:`TrainingSample` per image.

    Raises:
        TrainingError: unpaired files, unreadable annotations, a size mismatch.
    """
    config = config or TrainingConfig()
    images, labels = Path(images), Path(labels)
    if images.is_file():
        if not labels.is_file():
            raise TrainingError(f"{labels}: for a single image give a single label/ROI file")
        pairs = [(images, labels)]
    else:
        pairs = load_folder_pairs(images, labels)
    samples = []
    for img_path, lab_path in pairs:
        image, pixel_size = load_image_with_size(img_path)
        factors = resample.rescale_factors(pixel_size, config.element_sizes())
        shape = image.shape[: config.ndim]
        found = _annotation(lab_path, shape, factors, config)
        axes = config.spatial_axes + "c" * (image.ndim - config.ndim)
        if len(axes) == image.ndim:
            image = resample.rescale(image, axes, factors)
        sample = prepare_sample(
            image,
            found.labels,
            found.ignore,
            classes=found.classes,
            image_name=img_path.name,
            labels_name=lab_path.name,
            **config.weight_settings(),
        )
        sample.points = found.points
        samples.append(sample)
    return samples


def as_samples(data: Any, config: TrainingConfig) -> list[TrainingSample]:
    """Training samples from what :func:`deepimagej.unet.train.train` accepts.

    Args:
        data: a list of :class:`TrainingSample` or of ``(image, labels[, ignore])`` tuples, a pair
            ``(images_dir, labels_dir)``, or a folder with sub-folders ``images`` and ``labels``.
        config: the training settings (how files become samples, the network's dimension).

    Returns:
        The samples, checked against the config.

    Raises:
        TrainingError: nothing usable, a sample of the wrong dimension, classes beyond the config's.
    """
    if isinstance(data, (str, Path)):
        folder = Path(data)
        if not (folder / "images").is_dir() or not (folder / "labels").is_dir():
            raise TrainingError(
                f"{folder}: expected sub-folders 'images' and 'labels' (or pass both folders)"
            )
        data = (folder / "images", folder / "labels")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, (str, Path)) for d in data):
        samples = load_samples(data[0], data[1], config)
    else:
        samples = []
        for item in data:
            if isinstance(item, TrainingSample):
                samples.append(item)
            elif isinstance(item, tuple) and len(item) in (2, 3):
                samples.append(prepare_sample(*item, **config.weight_settings()))
            else:
                raise TrainingError(
                    f"training data item of type {type(item).__name__}: expected a TrainingSample or (image, labels) pair"
                )
    if not samples:
        raise TrainingError("no training images given")
    for s in samples:
        _check(s, config)
    return samples


def _check(sample: TrainingSample, config: TrainingConfig) -> None:
    if sample.classes.ndim != config.ndim:
        raise TrainingError(
            f"a {sample.classes.ndim}D annotation was given to a {config.ndim}D U-Net "
            f"(labels shape {sample.classes.shape}); use ndim={sample.classes.ndim} (--3d for volumes)"
        )
    if not np.any(sample.weights > 0):
        raise TrainingError("an annotation has no usable pixel (everything ignored)")
    top = int(sample.classes.max())
    if top >= config.n_classes:
        raise TrainingError(
            f"{sample.name or 'an annotation'} has class {top} but the network has {config.n_classes} classes "
            f"(0-{config.n_classes - 1}); set the number of classes"
        )


def image_channels(samples: Sequence[TrainingSample], ndim: int) -> int:
    """The channels of the samples' images (all must agree)."""
    counts = {1 if s.image.ndim == ndim else int(s.image.shape[-1]) for s in samples}
    if len(counts) != 1:
        raise TrainingError(
            f"the images have different numbers of channels ({', '.join(map(str, sorted(counts)))})"
        )
    return counts.pop()
