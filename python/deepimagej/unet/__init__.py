"""The U-Net plugin (Falk et al., "U-Net: deep learning for cell counting, detection, and
morphometry", Nature Methods 16, 67-70, 2019).

Submodules (importing this package does not import TensorFlow):

* :mod:`deepimagej.unet.weights` - ridges between touching objects, loss weight maps (M2)
* :mod:`deepimagej.unet.augment` - tile sampling, rotation, elastic deformation, intensity curves (M3)
* :mod:`deepimagej.unet.data` - images, label masks, ImageJ ROIs, detection points, samples
* :mod:`deepimagej.unet.metrics` - object IoU, detection F1, SEG, pixel measures (M6)
* :mod:`deepimagej.unet.postprocess` - probabilities to instance labels or detections (and the
  equivalent ImageJ macros shipped in bundles)
* :mod:`deepimagej.unet.model`, ``train``, ``export``, ``cli`` - the Keras half (TensorFlow
  is imported there)
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
    "TrainingSample": "data",
    "prepare_sample": "data",
    "load_image": "data",
    "load_mask": "data",
    "rois_to_labels": "data",
    "link_slice_rois": "data",
    "points_from_rois": "data",
    "write_point_rois": "data",
    "detection_targets": "data",
    "load_folder_pairs": "data",
    "split_validation": "data",
    "object_iou": "metrics",
    "detection_f1": "metrics",
    "match_points": "metrics",
    "seg_measure": "metrics",
    "evaluate_segmentation": "metrics",
    "peaks_to_points": "postprocess",
    "solid_cells": "postprocess",
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
    "load_image",
    "load_mask",
    "rois_to_labels",
    "link_slice_rois",
    "points_from_rois",
    "write_point_rois",
    "detection_targets",
    "load_folder_pairs",
    "split_validation",
    "object_iou",
    "detection_f1",
    "match_points",
    "seg_measure",
    "evaluate_segmentation",
    "peaks_to_points",
    "solid_cells",
    "to_detections",
    "to_instances",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepimagej.unet' has no attribute {name!r}")
    return getattr(importlib.import_module(f"deepimagej.unet.{module}"), name)
