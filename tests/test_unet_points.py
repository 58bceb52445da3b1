"""Detection annotations: point ROIs (written with roifile) and the disk targets drawn from them."""

from __future__ import annotations

import numpy as np
import pytest
import roifile

from deepimagej.errors import TrainingError
from deepimagej.unet.points import detection_targets, points_from_rois, write_point_rois


def test_point_rois_round_trip(tmp_path):
    pts = np.array([[10, 20], [30.5, 40.25], [0, 511]])
    path = write_point_rois(pts, tmp_path / "points.roi")
    roi = roifile.ImagejRoi.fromfile(path)
    assert roi.roitype == roifile.ROI_TYPE.POINT and roi.n_coordinates == 3
    np.testing.assert_allclose(points_from_rois(path), pts, atol=1e-4)
    ints = np.array([[5, 6], [7, 8]])
    np.testing.assert_array_equal(points_from_rois(write_point_rois(ints, tmp_path / "RoiSet.zip")), ints)
    pts3 = np.array([[0, 5, 6], [2, 7, 8], [3, 1, 1]])
    got = points_from_rois(write_point_rois(pts3, tmp_path / "p3.zip"))
    np.testing.assert_array_equal(got, pts3)
    np.testing.assert_array_equal(points_from_rois(tmp_path / "p3.zip", ndim=2), pts3[:, 1:])
    with pytest.raises(TrainingError):
        points_from_rois(tmp_path / "RoiSet.zip", ndim=3)


def test_detection_targets_disks_and_rings():
    lab, ign = detection_targets(np.array([[10, 10], [10, 30]]), (20, 40), radius=2.0, r_ign=4.0)
    assert lab[10, 10] == 1 and lab[10, 30] == 2
    assert (lab == 1).sum() == 13  # pixels within distance 2 of a point
    assert lab[10, 12] == 1 and lab[10, 13] == 0 and ign[10, 13] and ign[10, 14] and not ign[10, 15]
    assert not np.any(ign & (lab > 0))
    assert not ign[0, 0]
    # close points: nearest point wins, no overlap
    lab2, _ = detection_targets(np.array([[5, 5], [5, 8]]), (12, 12), radius=2.0, r_ign=3.0)
    assert lab2[5, 6] == 1 and lab2[5, 7] == 2
    lab3, ign3 = detection_targets(
        np.array([[2, 5, 5]]), (5, 12, 12), radius=2.0, r_ign=4.0, element_size=(2.0, 1.0, 1.0)
    )
    assert lab3[2, 5, 5] == 1 and lab3[3, 5, 5] == 1 and lab3[4, 5, 5] == 0 and ign3[4, 5, 5]
