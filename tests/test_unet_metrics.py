"""Evaluation measures (Falk et al. 2019, M6) on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej.unet.metrics import (
    as_instances,
    detection_f1,
    evaluate_segmentation,
    foreground_iou,
    match_points,
    object_iou,
    pixel_accuracy,
    seg_measure,
)
from deepimagej.unet.postprocess import peaks_to_points


def squares():
    gt = np.zeros((20, 20), np.int32)
    gt[2:6, 2:6] = 1  # 16 px
    gt[10:14, 10:14] = 2  # 16 px
    return gt


def test_perfect_segmentation():
    gt = squares()
    pred = (gt > 0).astype(np.uint8) * 255  # binary prediction -> components
    assert object_iou(pred, gt) == 1.0
    assert seg_measure(pred, gt) == 1.0
    r = evaluate_segmentation(pred, gt)
    assert r == {
        "pixel_accuracy": 1.0,
        "foreground_iou": 1.0,
        "object_iou": 1.0,
        "seg": 1.0,
        "n_gt": 2,
        "n_pred": 2,
    }


def test_one_missed_object_counts_zero():
    gt = squares()
    pred = np.where(gt == 1, 7, 0)
    assert object_iou(pred, gt) == 0.5
    assert seg_measure(pred, gt) == 0.5
    assert foreground_iou(pred, gt) == 0.5
    assert pixel_accuracy(pred, gt) == pytest.approx(1 - 16 / 400)


def test_half_overlapping_squares_known_iou():
    gt = np.zeros((10, 20), np.int32)
    gt[0:4, 0:4] = 1
    pred = np.zeros_like(gt)
    pred[0:4, 2:6] = 1  # shifted by half: intersection 8, union 24
    assert object_iou(pred, gt) == pytest.approx(1 / 3)
    assert seg_measure(pred, gt) == 0.0  # covers exactly 50 %, not more
    pred2 = np.zeros_like(gt)
    pred2[0:4, 1:5] = 1  # intersection 12 > 8, union 20
    assert seg_measure(pred2, gt) == pytest.approx(12 / 20)
    assert object_iou(pred2, gt) == pytest.approx(12 / 20)


def test_split_object():
    gt = np.zeros((10, 10), np.int32)
    gt[0:4, 0:8] = 1  # 32 px
    pred = np.zeros_like(gt)
    pred[0:4, 0:5] = 1  # 20 px, IoU 20/32
    pred[0:4, 5:8] = 2  # 12 px, IoU 12/32
    # Hungarian: one-to-one, the better half is matched
    assert object_iou(pred, gt) == pytest.approx(20 / 32)
    assert seg_measure(pred, gt) == pytest.approx(20 / 32)  # covers 62.5 % > 50 %
    # merged prediction of two gt objects: only one gt object can be matched
    gt2 = np.zeros((10, 10), np.int32)
    gt2[0:4, 0:4] = 1
    gt2[0:4, 4:8] = 2
    merged = (gt2 > 0).astype(np.int32) * 3
    assert object_iou(merged, gt2) == pytest.approx((16 / 32) / 2)
    assert seg_measure(merged, gt2) == pytest.approx(0.5)  # both covered entirely, Jaccard 1/2 each


def test_hungarian_beats_greedy():
    # the best single pair is A-X, but X is B's only partner: the optimal assignment is A-Y, B-X
    gt = np.zeros((4, 12), np.int32)
    gt[:, 0:6] = 1  # A, 24 px
    gt[:, 6:9] = 2  # B, 12 px
    pred = np.zeros_like(gt)
    pred[:, 2:9] = 1  # X, 28 px: with A 16 / 36 = 0.444; with B 12 / 28 = 0.429
    pred[:, 0:2] = 2  # Y, 8 px: with A 8 / 24 = 0.333
    iou_ax, iou_bx, iou_ay = 16 / 36, 12 / 28, 8 / 24
    assert iou_ax > iou_bx and iou_bx + iou_ay > iou_ax
    assert object_iou(pred, gt) == pytest.approx((iou_bx + iou_ay) / 2)


def test_eight_connectivity_of_binary_inputs():
    m = np.zeros((5, 5), np.uint8)
    m[1, 1] = m[2, 2] = 1  # diagonal neighbours: one object
    assert as_instances(m).max() == 1
    lab = np.zeros((5, 5), np.int32)
    lab[1, 1], lab[2, 2] = 1, 2  # label image is kept
    assert as_instances(lab).max() == 2


def test_empty_cases():
    z = np.zeros((5, 5), np.int32)
    assert object_iou(z, z) == 1.0 and seg_measure(z, z) == 1.0
    one = z.copy()
    one[1, 1] = 1
    assert object_iou(one, z) == 0.0 and object_iou(z, one) == 0.0
    assert seg_measure(z, one) == 0.0
    assert foreground_iou(z, z) == 1.0


def test_detection_f1():
    gt = np.array([[10, 10], [20, 20], [40, 40]])
    assert detection_f1(gt.astype(float), gt)["f1"] == 1.0
    pred = np.array([[12, 13], [20, 26], [70, 70], [41, 40]])  # 3.6 px ok, 6 px too far, fp, 1 px ok
    r = detection_f1(pred, gt, d_match=5.0)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1)
    assert r["precision"] == 0.5 and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # one-to-one: two predictions near one gt point give one tp and one fp
    r2 = detection_f1(np.array([[10, 10], [10, 11]]), np.array([[10, 10]]))
    assert (r2["tp"], r2["fp"], r2["fn"]) == (1, 1, 0)
    # Hungarian maximises the number of matches: greedy nearest would pair p0-g1 and lose g0
    g = np.array([[0.0, 0.0], [0.0, 4.0]])
    p = np.array([[0.0, 3.9], [0.0, 8.5]])
    r3 = detection_f1(p, g, d_match=5.0)
    assert r3["tp"] == 2
    pred_index, gt_index = match_points(p, g, d_match=5.0)
    assert sorted(zip(pred_index.tolist(), gt_index.tolist())) == [(0, 0), (1, 1)]  # not the nearer p0-g1
    pred_index, gt_index = match_points(pred, gt, d_match=5.0)
    assert sorted(zip(pred_index.tolist(), gt_index.tolist())) == [(0, 0), (3, 2)]
    assert [len(a) for a in match_points(np.zeros((0, 2)), g)] == [0, 0]
    r4 = detection_f1(np.zeros((0, 2)), g)
    assert (r4["tp"], r4["fn"], r4["f1"], r4["precision"]) == (0, 2, 0.0, 1.0)
    assert detection_f1(np.zeros((0, 2)), np.zeros((0, 2)))["f1"] == 1.0
    # anisotropic 3D: 2 slices apart at 3 um per slice is 6 um > 5
    r5 = detection_f1(np.array([[2, 5, 5]]), np.array([[0, 5, 5]]), element_size=(3.0, 1.0, 1.0))
    assert r5["tp"] == 0


def test_peaks_to_points_on_plateaus():
    prob = np.zeros((40, 40), np.float32)
    yy, xx = np.mgrid[:40, :40]
    centres = [(10, 10), (10, 22), (30, 30)]
    for cy, cx in centres:
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = 1.0  # saturated disks (flat tops)
    prob[35, 5] = 0.3  # below threshold
    pts = peaks_to_points(prob, threshold=0.5, min_distance=3)
    assert len(pts) == 3
    r = detection_f1(pts, np.array(centres), d_match=1.0)
    assert r["tp"] == 3


def test_solid_cells_area_solidity_holes_and_centroids():
    """Hand-computed: ImageJ's solidity = pixel count / area of the hull of the pixels' corners."""
    from deepimagej.unet.postprocess import solid_cells

    prob = np.zeros((120, 120), np.float32)
    prob[5:45, 5:45] = 0.9  # square, 1600 px, solidity 1, centroid (24.5, 24.5)
    prob[60:100, 5:15] = 0.9  # an L: 40 x 10 bar...
    prob[90:100, 15:45] = (
        0.9  # ...+ 10 x 30 foot = 700 px; hull (x, y) (0,0) (10,0) (40,30) (40,40) (0,40) = 1150
    )
    prob[60:90, 70:100] = 0.9  # a 30 x 30 ring (hole 10 x 10) with a blob in the hole
    prob[70:80, 70 + 10 : 70 + 20] = 0.0
    prob[74:76, 84:86] = 0.9
    prob[5:15, 70:80] = 0.9  # small square, 100 px
    prob[5:15, 100:110] = 0.7  # below the threshold

    labels, centroids = solid_cells(prob, threshold=0.8, min_area=0, min_solidity=0.0)
    assert len(centroids) == 4  # the blob in the ring's hole belongs to the ring (holes filled)
    np.testing.assert_allclose(centroids[0], [24.5, 24.5])
    assert labels[75, 85] == labels[60, 70] and (labels[70:80, 80:90] > 0).all()
    # raster order of the first pixels: square (5, 5), small square (5, 70), L (60, 5), ring (60, 70)
    np.testing.assert_allclose(centroids[1], [9.5, 74.5])
    l_shape = np.argwhere(prob[55:105, 0:50] > 0.8) + [55, 0]
    np.testing.assert_allclose(centroids[2], l_shape.mean(axis=0))
    np.testing.assert_allclose(centroids[3], [74.5, 84.5])  # the filled ring's centre

    _, kept = solid_cells(prob, threshold=0.8, min_area=500, min_solidity=700 / 1150 - 1e-6)
    assert len(kept) == 3  # square, ring, L (the 100 px square is too small)
    _, kept = solid_cells(prob, threshold=0.8, min_area=500, min_solidity=700 / 1150 + 1e-6)
    assert len(kept) == 2  # the L is not solid enough
    with pytest.raises(ValueError, match="2D"):
        solid_cells(np.zeros((2, 8, 8)))


def test_to_detections_cell_head_replaces_the_peaks_inside_solid_cells():
    from deepimagej.unet.postprocess import to_detections

    yy, xx = np.mgrid[:80, :80]
    centre = np.zeros((80, 80), np.float32)
    for cy, cx in ((20, 15), (22, 30), (65, 65)):  # two peaks in the big cell, one outside
        centre = np.maximum(centre, 0.9 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0))
    cell = np.zeros((80, 80), np.float32)
    cell[5:45, 5:45] = 0.95
    prob = np.stack([1 - centre, centre, 1 - cell, cell], axis=-1)
    peaks_only = to_detections(prob, 0.5, min_distance=3, smooth_sigma=0)
    assert len(peaks_only) == 3
    points = to_detections(
        prob, 0.5, min_distance=3, smooth_sigma=0, cell_threshold=0.8, min_cell_area=100, min_solidity=0.9
    )
    np.testing.assert_allclose(points, [[65, 65], [24.5, 24.5]])
    with pytest.raises(ValueError, match="two-head"):
        to_detections(prob[..., :3], 0.5, cell_threshold=0.8)
