"""Evaluation measures of the U-Net (Falk et al., Nature Methods 2019, Methods M6).

* :func:`object_iou`: objects are 8-connected components (of binary inputs; label images are
  used as they are); predicted and ground-truth objects are matched one-to-one by the Hungarian
  algorithm on their intersection over union; the IoU is averaged over the ground-truth
  objects, an unmatched ground-truth object counting 0.
* :func:`detection_f1`: predicted and ground-truth points are matched one-to-one by the
  Hungarian algorithm on their distances, a match only counting within ``d_match``.
* :func:`seg_measure`: the Cell Tracking Challenge SEG measure: for each ground-truth object
  the predicted object covering more than half of it, their Jaccard index, averaged over the
  ground-truth objects (0 when there is none).

Conventions for empty inputs: with no ground-truth object a measure is 1.0 when nothing was
predicted either and 0.0 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

__all__ = [
    "as_instances",
    "detection_f1",
    "evaluate_segmentation",
    "foreground_iou",
    "match_points",
    "object_iou",
    "pixel_accuracy",
    "seg_measure",
]


def as_instances(labels: np.ndarray) -> np.ndarray:
    """Instance labels: binary inputs -> 8-connected (26 in 3D) components, labels unchanged.

    An array is treated as binary when it is boolean or has at most one non-zero value
    (e.g. 0/1, 0/255).

    Parameters
    ----------
    labels : numpy.ndarray
        Binary mask or instance label image (0 = background).

    Returns
    -------
    numpy.ndarray
        ``int64`` instance labels.
    """
    a = np.asarray(labels)
    if a.dtype.kind == "b" or np.unique(a[a != 0]).size <= 1:
        out, _ = ndi.label(a > 0, structure=np.ones((3,) * a.ndim, dtype=bool))
        return out.astype(np.int64)
    if a.dtype.kind == "f":
        a = np.round(a)
    return a.astype(np.int64)


def _overlaps(pred: np.ndarray, gt: np.ndarray):
    """Intersections and areas of all (gt, pred) object pairs with compact indices."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must have the same shape")
    g_ids, g_inv = np.unique(gt, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    g_inv, p_inv = g_inv.ravel(), p_inv.ravel()
    table = np.bincount(g_inv * p_ids.size + p_inv, minlength=g_ids.size * p_ids.size)
    table = table.reshape(g_ids.size, p_ids.size)
    g_area = table.sum(axis=1)
    p_area = table.sum(axis=0)
    gsel = g_ids != 0
    psel = p_ids != 0
    inter = table[np.ix_(gsel, psel)]
    return inter, g_area[gsel], p_area[psel]


def _empty_score(n_gt: int, n_pred: int) -> float | None:
    if n_gt == 0:
        return 1.0 if n_pred == 0 else 0.0
    return None


def object_iou(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Mean object IoU with Hungarian matching (Falk et al. 2019, M6).

    Parameters
    ----------
    pred_labels, gt_labels : numpy.ndarray
        Predicted and ground-truth instance labels or binary masks (then 8-connected
        components), same shape.

    Returns
    -------
    float
        Sum of the IoUs of the matched pairs divided by the number of ground-truth objects.
    """
    pred, gt = as_instances(pred_labels), as_instances(gt_labels)
    inter, g_area, p_area = _overlaps(pred, gt)
    empty = _empty_score(len(g_area), len(p_area))
    if empty is not None:
        return empty
    if len(p_area) == 0:
        return 0.0
    iou = inter / (g_area[:, None] + p_area[None, :] - inter)
    rows, cols = linear_sum_assignment(-iou)
    return float(iou[rows, cols].sum() / len(g_area))


def seg_measure(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Cell Tracking Challenge SEG measure.

    For each ground-truth object ``G`` the predicted object ``P`` with ``|P & G| > 0.5 |G|``
    (at most one can exist) gives the Jaccard index ``|P & G| / |P | G|``; no such object gives
    0. SEG is the mean over the ground-truth objects.

    Parameters
    ----------
    pred_labels, gt_labels : numpy.ndarray
        Instance labels or binary masks (then 8-connected components), same shape.

    Returns
    -------
    float
    """
    pred, gt = as_instances(pred_labels), as_instances(gt_labels)
    inter, g_area, p_area = _overlaps(pred, gt)
    empty = _empty_score(len(g_area), len(p_area))
    if empty is not None:
        return empty
    if len(p_area) == 0:
        return 0.0
    jac = inter / (g_area[:, None] + p_area[None, :] - inter)
    covering = inter > 0.5 * g_area[:, None]
    return float(np.where(covering, jac, 0.0).max(axis=1).mean())


def match_points(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    d_match: float = 5.0,
    element_size: Sequence[float] | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Match predicted to ground-truth points one-to-one (Hungarian algorithm on distances).

    The matching maximises the number of pairs closer than ``d_match`` and, among such
    matchings, minimises their total distance.

    Parameters
    ----------
    pred_points, gt_points : numpy.ndarray
        ``(N, ndim)`` and ``(M, ndim)`` array-ordered points.
    d_match : float
        Largest distance of a match (default 5 px), pixels or unit of ``element_size``.
    element_size : float or sequence of float, optional
        Pixel size per axis.

    Returns
    -------
    pred_index, gt_index : numpy.ndarray
        Indices of the matched pairs (``pred_points[pred_index[k]]`` matches
        ``gt_points[gt_index[k]]``), each within ``d_match``.
    """
    pred, gt = _as_points(pred_points, gt_points)
    if not (len(pred) and len(gt)):
        return np.zeros(0, int), np.zeros(0, int)
    ndim = pred.shape[1]
    s = np.ones(ndim) if element_size is None else np.broadcast_to(np.asarray(element_size, float), (ndim,))
    d = np.sqrt((((pred[:, None, :] - gt[None, :, :]) * s) ** 2).sum(-1))
    big = d_match * (min(d.shape) + 1) + 1.0
    rows, cols = linear_sum_assignment(np.where(d <= d_match, d, big))
    close = d[rows, cols] <= d_match
    return rows[close], cols[close]


def detection_f1(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    d_match: float = 5.0,
    element_size: Sequence[float] | float | None = None,
) -> dict:
    """Detection precision, recall and F1 with Hungarian matching (Falk et al. 2019, M6).

    Points are matched by :func:`match_points` (same parameters): one-to-one, so that the
    number of pairs closer than ``d_match`` is maximal and, among such matchings, their total
    distance is minimal.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (floats; 1.0 when their denominators are 0) and
        ``tp``, ``fp``, ``fn`` (ints).
    """
    pred, gt = _as_points(pred_points, gt_points)
    tp = len(match_points(pred, gt, d_match, element_size)[0])
    return detection_scores(tp, len(pred) - tp, len(gt) - tp)


def _as_points(pred_points: np.ndarray, gt_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both point sets as float ``(N, ndim)`` arrays (an empty set takes the other's ``ndim``, else 2)."""
    pred = np.asarray(pred_points, dtype=float)
    gt = np.asarray(gt_points, dtype=float)
    ndim = pred.shape[-1] if pred.size else (gt.shape[-1] if gt.size else 2)
    return pred.reshape(-1, ndim), gt.reshape(-1, ndim)


def detection_scores(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 from match counts (e.g. summed over images: pooled scores).

    Returns:
        ``precision``, ``recall``, ``f1`` (floats; 1.0 when their denominators are 0) and the
        counts ``tp``, ``fp``, ``fn`` (ints).
    """
    tp, fp, fn = int(tp), int(fp), int(fn)
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Fraction of pixels whose foreground/background class (``> 0``) agrees.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Label, class or binary images (any value > 0 is foreground), same shape.
    ignore : numpy.ndarray, optional
        Pixels left out.

    Returns
    -------
    float
    """
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} must have the same shape")
    ok = p == g
    if ignore is not None:
        ok = ok[~np.asarray(ignore, dtype=bool)]
    return float(ok.mean()) if ok.size else 1.0


def foreground_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of the foregrounds (``> 0``); 1.0 when both are empty.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Label, class or binary images, same shape.

    Returns
    -------
    float
    """
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} must have the same shape")
    union = np.logical_or(p, g).sum()
    return float(np.logical_and(p, g).sum() / union) if union else 1.0


def evaluate_segmentation(pred_labels: np.ndarray, gt_labels: np.ndarray) -> dict:
    """All segmentation measures of one image.

    Parameters
    ----------
    pred_labels, gt_labels : numpy.ndarray
        Instance labels or binary masks, same shape.

    Returns
    -------
    dict
        ``pixel_accuracy``, ``foreground_iou``, ``object_iou``, ``seg`` (floats) and ``n_gt``,
        ``n_pred`` (numbers of objects).
    """
    pred, gt = as_instances(pred_labels), as_instances(gt_labels)
    return {
        "pixel_accuracy": pixel_accuracy(pred, gt),
        "foreground_iou": foreground_iou(pred, gt),
        "object_iou": object_iou(pred, gt),
        "seg": seg_measure(pred, gt),
        "n_gt": int(np.unique(gt[gt > 0]).size),
        "n_pred": int(np.unique(pred[pred > 0]).size),
    }
