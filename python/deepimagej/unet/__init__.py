"""The U-Net plugin (Falk et al., "U-Net: deep learning for cell counting, detection, and
morphometry", Nature Methods 16, 67-70, 2019).

Submodules (importing this package does not import TensorFlow):

* :mod:`deepimagej.unet.weights` - ridges between touching objects, loss weight maps (M2)
* :mod:`deepimagej.unet.augment` - tile sampling, rotation, elastic deformation, intensity curves (M3)
* :mod:`deepimagej.unet.files` - images (through :func:`deepimagej.io.read_image`), image/annotation
  pairs, validation split
* :mod:`deepimagej.unet.targets` - label masks and ImageJ ROIs (classes, ``ignore``) to labels
* :mod:`deepimagej.unet.points` - detection points (ROIs, centroids) and their disk targets
* :mod:`deepimagej.unet.samples` - training samples: classes, weights, sampling pdf
* :mod:`deepimagej.unet.config` - :class:`~deepimagej.unet.config.TrainingConfig`, the settings of a run
* :mod:`deepimagej.unet.metrics` - object IoU, detection F1, SEG, pixel measures (M6)
* :mod:`deepimagej.unet.postprocess` - probabilities to instance labels, class maps or detections (and
  the equivalent ImageJ macros shipped in bundles)
* :mod:`deepimagej.unet.model`, ``loss``, ``dataset``, ``callbacks``, ``train``, ``export``,
  ``evaluate``, ``cli`` - the Keras half (TensorFlow is imported there)
"""

from __future__ import annotations

import importlib

_LAZY = {
    "insert_ridges": "weights",
    "labels_to_classes": "weights",
    "class_balance_weights": "weights",
    "separation_weights": "weights",
    "weight_map": "weights",
    "augment_sample": "augment",
    "Augmenter": "augment",
    "TrainingSample": "samples",
    "prepare_sample": "samples",
    "load_samples": "samples",
    "TrainingConfig": "config",
    "load_image": "files",
    "load_folder_pairs": "files",
    "split_validation": "files",
    "Annotation": "targets",
    "load_mask": "targets",
    "mask_annotation": "targets",
    "roi_annotation": "targets",
    "rois_to_labels": "targets",
    "link_slice_rois": "targets",
    "points_from_rois": "points",
    "write_point_rois": "points",
    "detection_targets": "points",
    "centroids": "points",
    "object_iou": "metrics",
    "detection_f1": "metrics",
    "match_points": "metrics",
    "seg_measure": "metrics",
    "evaluate_segmentation": "metrics",
    "peaks_to_points": "postprocess",
    "solid_cells": "postprocess",
    "to_classes": "postprocess",
    "to_detections": "postprocess",
    "to_instances": "postprocess",
}

__all__ = [  # noqa: RUF022 - same order as _LAZY
    "insert_ridges",
    "labels_to_classes",
    "class_balance_weights",
    "separation_weights",
    "weight_map",
    "augment_sample",
    "Augmenter",
    "TrainingSample",
    "prepare_sample",
    "load_samples",
    "TrainingConfig",
    "load_image",
    "load_folder_pairs",
    "split_validation",
    "Annotation",
    "load_mask",
    "mask_annotation",
    "roi_annotation",
    "rois_to_labels",
    "link_slice_rois",
    "points_from_rois",
    "write_point_rois",
    "detection_targets",
    "centroids",
    "object_iou",
    "detection_f1",
    "match_points",
    "seg_measure",
    "evaluate_segmentation",
    "peaks_to_points",
    "solid_cells",
    "to_classes",
    "to_detections",
    "to_instances",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepimagej.unet' has no attribute {name!r}")
    return getattr(importlib.import_module(f"deepimagej.unet.{module}"), name)
