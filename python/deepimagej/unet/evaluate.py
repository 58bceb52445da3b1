"""Evaluate a U-Net bundle on annotated images (Falk et al. 2019, Methods M6).

Segmentation: the bundle's foreground probability -> instance labels
(:func:`deepimagej.unet.postprocess.to_instances`) compared with the ground-truth labels:
pixel accuracy, foreground IoU, object IoU (Hungarian matching of 8-connected components),
the Cell Tracking Challenge SEG measure. Detection: peaks of the foreground probability
(:func:`~deepimagej.unet.postprocess.to_detections`) against the annotated points:
precision, recall, F1 with matching tolerance ``d_match``.
"""

from __future__ import annotations

import csv as csv_module
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from deepimagej import predict
from deepimagej.errors import TrainingError
from deepimagej.unet import metrics
from deepimagej.unet.files import ROI_SUFFIXES, load_folder_pairs, load_image
from deepimagej.unet.points import centroids, points_from_rois
from deepimagej.unet.postprocess import DetectionSettings, detection_settings, to_detections, to_instances
from deepimagej.unet.targets import load_mask, rois_to_labels

SEGMENTATION_COLUMNS = ("pixel_accuracy", "foreground_iou", "object_iou", "seg")
DETECTION_COLUMNS = ("precision", "recall", "f1")


def predict_probabilities(bundle: Any, image: np.ndarray, *, ndim: int | None = None) -> np.ndarray:
    """Class probabilities (spatial..., K) of a U-Net bundle for one raw image (no macros)."""
    spec = predict.as_spec(bundle)
    if ndim is None:
        ndim = sum(1 for a in spec.inputs[0].axis_names if a in "zyx")
    axes = "yx" if ndim == 2 else "zyx"
    image = np.asarray(image)
    if image.ndim == ndim + 1:
        axes += "c"
    probs = predict.run(spec, image, axes=axes, apply_postprocessing=False)
    if isinstance(probs, dict):
        raise TrainingError(
            f"{spec.name}: a U-Net bundle has one output, this one has {len(probs)} ({', '.join(probs)})"
        )
    return probs


def evaluate_pairs(
    bundle: Any,
    pairs: Sequence[tuple[Path, Path]],
    *,
    detection: bool = False,
    threshold: float | None = None,
    d_match: float = 5.0,
    progress: Callable[[str, dict], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per image (name + measures); ``pairs`` are (image, labels/points file).

    ``threshold``: foreground probability threshold; ``None`` = 0.5 for segmentation and the
    bundle's own setting for detection (:func:`~deepimagej.unet.postprocess.detection_settings`).
    """
    spec = predict.as_spec(bundle)
    peaks = detection_settings(spec)
    if threshold is not None:
        peaks["threshold"] = threshold
    ndim = sum(1 for a in spec.inputs[0].axis_names if a in "zyx")
    rows = []
    for img_path, lab_path in pairs:
        image = load_image(img_path)
        prob = predict_probabilities(spec, image, ndim=ndim)
        shape = prob.shape[:ndim]
        row: dict[str, Any] = {"image": Path(img_path).name}
        if detection:
            if Path(lab_path).suffix.lower() in ROI_SUFFIXES:
                gt_points = points_from_rois(lab_path, ndim=ndim)
            else:
                gt_points = centroids(load_mask(lab_path))
            points = to_detections(prob, **peaks)
            res = metrics.detection_f1(points, gt_points, d_match=d_match)
            row.update({k: res[k] for k in (*DETECTION_COLUMNS, "tp", "fp", "fn")})
        else:
            if Path(lab_path).suffix.lower() in ROI_SUFFIXES:
                gt = rois_to_labels(lab_path, shape)
            else:
                gt = load_mask(lab_path)
            if gt.shape != shape:
                raise TrainingError(
                    f"labels '{Path(lab_path).name}' are {gt.shape} but image '{Path(img_path).name}' is {shape}"
                )
            pred = to_instances(prob, 0.5 if threshold is None else threshold)
            res = metrics.evaluate_segmentation(pred, gt)
            row.update({k: res[k] for k in (*SEGMENTATION_COLUMNS, "n_gt", "n_pred")})
        rows.append(row)
        if progress is not None:
            progress(row["image"], row)
    return rows


#: Peak-finding settings tried by :func:`tune_detection`.
DETECTION_GRID = {
    "threshold": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "smooth_sigma": (0.0, 1.0, 2.0, 3.0, 4.0),
    "min_distance": (2, 3, 5, 7),
}
#: Cell-head settings tried by :func:`tune_detection` for a two-head model (after the peak settings).
CELL_GRID = {
    "cell_threshold": (0.5, 0.7, 0.8, 0.9, 0.95),
    "min_cell_area": (300, 1000, 3000),
    "min_solidity": (0.6, 0.65, 0.7, 0.75, 0.8, 0.9),
}


def tune_detection(
    bundle: Any,
    images: Sequence[np.ndarray],
    points: Sequence[np.ndarray],
    *,
    d_match: float = 5.0,
    grid: dict[str, Sequence[float]] | None = None,
) -> tuple[DetectionSettings, dict[str, Any]]:
    """Choose the peak-finding settings of a detection bundle on annotated (validation) images.

    Every combination of ``grid`` (default :data:`DETECTION_GRID`) is scored by the detection F1
    summed over the images (all true/false positives and misses pooled); the best one wins (the
    first of equals, in grid order). For a two-head bundle (centres + cells, 4 output channels)
    the cell settings (:data:`CELL_GRID`) are then chosen the same way, with those peak settings.

    Args:
        bundle: the detection bundle (folder or spec).
        images: raw images (as the bundle takes them).
        points: the annotated points of each image, ``(N, ndim)`` array order.
        d_match: matching tolerance of the F1 (pixels).

    Returns:
        ``(settings, score)``: ``{"threshold", "smooth_sigma", "min_distance"}`` (and, for a
        two-head bundle, ``{"cell_threshold", "min_cell_area", "min_solidity"}``) and the pooled
        ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn`` they reach.
    """
    if not images or len(images) != len(points):
        raise TrainingError("tune_detection: give one array of points per image (at least one image)")
    spec = predict.as_spec(bundle)
    probs = [predict_probabilities(spec, image) for image in images]
    settings, score = _grid_search(probs, points, grid or DETECTION_GRID, {}, d_match)
    if all(p.ndim == 3 and p.shape[-1] == 4 for p in probs):  # two heads: centres + cells
        settings, score = _grid_search(probs, points, CELL_GRID, settings, d_match)
    return settings, score


def _grid_search(
    probs: Sequence[np.ndarray],
    points: Sequence[np.ndarray],
    grid: Mapping[str, Sequence[float]],
    fixed: DetectionSettings,
    d_match: float,
) -> tuple[DetectionSettings, dict[str, Any]]:
    """The combination of ``grid`` (added to ``fixed`` settings) with the best pooled F1 of :func:`to_detections`."""
    best: tuple[DetectionSettings, dict[str, Any]] | None = None
    for values in itertools.product(*grid.values()):
        # the grid's keys are names of settings (a caller's grid is checked by to_detections' keywords)
        settings = cast(DetectionSettings, {**fixed, **dict(zip(grid, values))})
        tp = fp = fn = 0
        for prob, gt in zip(probs, points):
            r = metrics.detection_f1(to_detections(prob, **settings), gt, d_match=d_match)
            tp, fp, fn = tp + r["tp"], fp + r["fp"], fn + r["fn"]
        score = metrics.detection_scores(tp, fp, fn)
        if best is None or score["f1"] > best[1]["f1"]:
            best = (settings, score)
    assert best is not None
    return best


def mean_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric column (the 'mean' row of the table)."""
    if not rows:
        raise TrainingError("nothing to evaluate")
    out: dict[str, Any] = {"image": "mean"}
    for key, value in rows[0].items():
        if key != "image" and isinstance(value, (int, float)):
            vals = [r[key] for r in rows if r.get(key) is not None]
            out[key] = float(np.mean(vals)) if vals else None
    return out


def evaluate_bundle(
    bundle: Any,
    images: str | Path,
    labels: str | Path,
    *,
    detection: bool = False,
    threshold: float | None = None,
    d_match: float = 5.0,
    csv: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``bundle`` on an image folder (or file) and its annotations; rows + a final mean row."""
    images, labels = Path(images), Path(labels)
    pairs = [(images, labels)] if images.is_file() else load_folder_pairs(images, labels)
    rows = evaluate_pairs(bundle, pairs, detection=detection, threshold=threshold, d_match=d_match)
    rows.append(mean_row(rows))
    if csv is not None:
        write_csv(rows, csv)
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write the rows (one per image, plus the mean) as CSV, floats with 4 decimals."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0].keys())
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv_module.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def append_to_readme(bundle: str | Path, rows: Sequence[dict[str, Any]], title: str, note: str = "") -> None:
    """Append an evaluation table (markdown) to the bundle's README.md."""
    path = Path(bundle) / "README.md"
    if not path.is_file():
        return
    keys = [k for k in rows[0] if k != "image"]
    lines = ["", f"## {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| image | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
