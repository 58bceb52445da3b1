"""Annotations to training targets: masks, ImageJ ROI files (written with roifile), points."""

from __future__ import annotations

import numpy as np
import pytest
import roifile
import tifffile
from skimage import io as skio

from deepimagej.errors import TrainingError
from deepimagej.unet.files import load_image
from deepimagej.unet.points import points_from_rois, write_point_rois
from deepimagej.unet.targets import link_slice_rois, load_mask, rois_to_labels
from deepimagej.unet.weights import insert_ridges


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_load_image_and_semantic_mask(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:8, 2:8] = 255
    mask[8:12, 8:12] = 255  # touches the first square only at a corner: 4-connectivity splits
    mask[15:18, 20:28] = 255
    skio.imsave(tmp_path / "m.png", mask, check_contrast=False)
    assert load_image(tmp_path / "m.png").shape == (20, 30)
    lab = load_mask(tmp_path / "m.png")
    assert lab.dtype == np.int32 and lab.max() == 3
    assert lab[2, 2] != lab[8, 8]
    inst = np.zeros((20, 30), np.uint16)
    inst[2:8, 2:8] = 5
    inst[2:8, 8:12] = 9  # touching instances stay separate in an instance mask
    tifffile.imwrite(tmp_path / "i.tif", inst)
    lab2 = load_mask(tmp_path / "i.tif")
    assert set(np.unique(lab2)) == {0, 5, 9}
    assert load_mask(tmp_path / "i.tif", mode="semantic").max() == 1


def test_load_isbi_mask(assets):
    lab = load_mask(assets / "isbi2012_em" / "train" / "label" / "0.png")
    img = load_image(assets / "isbi2012_em" / "train" / "image" / "0.png")
    assert lab.shape == img.shape == (512, 512)
    assert lab.max() > 50  # cells (255) separated by membranes (0)


def test_polygon_rect_oval_rois_round_trip(tmp_path):
    square = roifile.ImagejRoi.frompoints([[10, 5], [20, 5], [20, 15], [10, 15]], name="sq")
    square.roitype = roifile.ROI_TYPE.POLYGON
    rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=30, top=20, right=40, bottom=26, name="r")
    oval = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.OVAL, left=2, top=30, right=12, bottom=40, name="o")
    free = roifile.ImagejRoi.frompoints([[30.0, 2.0], [38.0, 2.0], [34.0, 10.0]], name="f")  # FREEHAND
    path = tmp_path / "RoiSet.zip"
    roifile.roiwrite(path, [square, rect, oval, free])
    lab = rois_to_labels(path, (45, 50))
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4}
    # polygon with corners on pixel boundaries x 10..20, y 5..15 -> exactly 10x10 pixels
    assert (lab == 1).sum() == 100 and lab[5, 10] == 1 and lab[14, 19] == 1 and lab[15, 20] == 0
    assert (lab == 2).sum() == 60 and lab[20, 30] == 2 and lab[25, 39] == 2
    area = (lab == 3).sum()
    assert abs(area - np.pi * 25) < 10 and lab[35, 7] == 3 and lab[30, 2] == 0
    assert (lab == 4).sum() > 20
    # a single .roi file works too
    square.tofile(tmp_path / "one.roi")
    assert (rois_to_labels(tmp_path / "one.roi", (30, 30)) == 1).sum() == 100


def _rect(left, top, right, bottom, z, name=""):
    """A rectangle ROI on 1-based slice z, named like the ROI Manager names it unless ``name`` is given."""
    name = name or f"{z:04d}-{(top + bottom) // 2:04d}-{(left + right) // 2:04d}"
    return roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=left, top=top, right=right, bottom=bottom, position=z, name=name
    )


def test_rois_on_consecutive_slices_are_one_3d_object(tmp_path):
    # a cell drawn on slices 1-3 (shrinking: 6x6, 4x4 inside it, 2x2) next to a touching cell on slices 1-2
    rois = [
        _rect(1, 1, 7, 7, 1),
        _rect(7, 1, 11, 7, 1),
        _rect(2, 2, 6, 6, 2),
        _rect(6, 1, 11, 7, 2),
        _rect(3, 3, 5, 5, 3),
    ]
    roifile.roiwrite(tmp_path / "cells3d.zip", rois)
    lab = rois_to_labels(tmp_path / "cells3d.zip", (4, 12, 12))
    assert np.unique(lab).tolist() == [0, 1, 2]
    assert (lab == 1).sum() == 36 + 16 + 4 and (lab == 2).sum() == 24 + 30
    assert lab[0, 3, 3] == lab[1, 3, 3] == lab[2, 3, 3] == 1 and lab[0, 3, 8] == lab[1, 3, 8] == 2
    # the ridges between touching objects now separate the two cells, not the slices of one cell
    ridged = insert_ridges(lab)
    assert ridged[0, 2:5, 2:5].min() == 1 and ridged[1, 3, 3] == 1 and ridged[2, 3, 3] == 1
    assert (ridged[1] == 1).sum() == 16 - 4  # only where the second cell's slice 2 (x from 6) touches it


def test_link_slice_rois_names_and_one_to_one():
    square = np.zeros((10, 10), bool)
    square[2:8, 2:8] = True
    left, right = np.zeros_like(square), np.zeros_like(square)
    left[2:8, 2:4] = True  # 12 px: a third of the square's overlap
    right[2:8, 4:8] = True  # 24 px
    # one ROI over two on the next slice: linked to the larger overlap only (each is inside the square)
    assert link_slice_rois([square, left, right], [0, 1, 1], ["", "", ""]) == [1, 2, 1]
    # the same given name joins ROIs on any slices; two different given names are never joined
    assert link_slice_rois([square, square, square], [0, 3, 1], ["nucleus-a", "nucleus-a", "nucleus-b"]) == [
        1,
        1,
        2,
    ]
    # automatic ROI Manager names ("slice-y-x", "-1" for a repeat) are not given names
    assert link_slice_rois([square, square], [0, 1], ["0001-0005-0005", "0002-0005-0005-1"]) == [1, 1]
    # overlap below half of the smaller ROI, slices not adjacent, or a ROI outside the stack: apart
    shifted = np.roll(square, 4, axis=1)  # 6x2 = 12 of 36 px shared
    assert link_slice_rois([square, shifted], [0, 1], ["", ""]) == [1, 2]
    assert link_slice_rois([square, square], [0, 2], ["", ""]) == [1, 2]
    assert link_slice_rois([square, None], [0, 1], ["", ""]) == [1, 2]


def test_rois_3d_positions_and_errors(tmp_path):
    a = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=1, top=1, right=4, bottom=4, position=2, name="a"
    )
    b = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=5, top=5, right=8, bottom=8, z_position=3, name="b"
    )
    roifile.roiwrite(tmp_path / "z.zip", [a, b])
    lab = rois_to_labels(tmp_path / "z.zip", (4, 10, 10))
    assert (lab[1] == 1).sum() == 9 and (lab[2] == 2).sum() == 9 and lab[0].max() == 0
    c = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=5, top=5, right=8, bottom=8)
    roifile.roiwrite(tmp_path / "noz.zip", [c])
    with pytest.raises(TrainingError) as e:
        rois_to_labels(tmp_path / "noz.zip", (4, 10, 10))
    assert "slice" in one_line(e)
    with pytest.raises(TrainingError) as e:  # outside the image -> empty annotation
        rois_to_labels(tmp_path / "noz.zip", (4, 4))
    assert "empty" in one_line(e)
    write_point_rois(np.array([[3, 4], [5, 6]]), tmp_path / "pts.zip")
    with pytest.raises(TrainingError) as e:
        rois_to_labels(tmp_path / "pts.zip", (10, 10))
    assert "point ROIs" in one_line(e)
    line = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.LINE, x1=1, y1=1, x2=5, y2=5)
    line.tofile(tmp_path / "line.roi")
    with pytest.raises(TrainingError) as e:
        rois_to_labels(tmp_path / "line.roi", (10, 10))
    assert "line" in one_line(e)
    with pytest.raises(TrainingError) as e:
        points_from_rois(tmp_path / "z.zip")
    assert "point ROIs" in one_line(e)


def test_roi_names_are_classes_and_ignore_rois_are_not_objects(tmp_path):
    from deepimagej.unet.targets import ignore_rois, roi_annotation

    rois = [
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=2, top=2, right=8, bottom=8, name="nucleus"),
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=8, top=2, right=14, bottom=8, name="Nucleus"),
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.OVAL, left=2, top=12, right=12, bottom=20, name="vesicle"),
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=16, top=14, right=22, bottom=22, name="ignore"),
    ]
    roifile.roiwrite(tmp_path / "RoiSet.zip", rois)
    found = roi_annotation(tmp_path / "RoiSet.zip", (24, 24), class_names=("nucleus", "vesicle"))
    assert np.unique(found.labels).tolist() == [0, 1, 2, 3]  # three objects; the ignore ROI is none of them
    assert found.classes[4, 4] == found.classes[4, 10] == 1 and found.classes[16, 6] == 2
    assert np.array_equal(found.classes > 0, found.labels > 0)
    assert found.ignore.sum() == 6 * 8 and found.ignore[18, 18] and found.labels[18, 18] == 0
    np.testing.assert_array_equal(ignore_rois(tmp_path / "RoiSet.zip", (24, 24)), found.ignore)
    # two classes: names only tie ROIs together; the ignore ROI still marks pixels to ignore
    binary = roi_annotation(tmp_path / "RoiSet.zip", (24, 24))
    assert binary.classes is None and binary.labels.max() == 3 and binary.ignore.sum() == 6 * 8
    with pytest.raises(TrainingError) as e:
        roi_annotation(tmp_path / "RoiSet.zip", (24, 24), class_names=("nucleus", "membrane"))
    assert "'vesicle' is not named after a class (nucleus, membrane)" in one_line(e)


def test_class_masks_and_ignore_label(tmp_path):
    from deepimagej.unet.targets import mask_annotation

    mask = np.zeros((20, 30), np.uint8)
    mask[2:8, 2:8] = 1
    mask[2:8, 8:14] = 2  # touches class 1: two objects of two classes
    mask[12:18, 2:8] = 1
    mask[12:18, 20:28] = 255  # not annotated
    tifffile.imwrite(tmp_path / "classes.tif", mask)
    found = mask_annotation(tmp_path / "classes.tif", n_classes=3, ignore_label=255)
    assert found.labels.max() == 3 and len(np.unique(found.labels[mask == 1])) == 2
    np.testing.assert_array_equal(found.classes, np.where(mask == 255, 0, mask))
    np.testing.assert_array_equal(found.ignore, mask == 255)
    with pytest.raises(TrainingError) as e:
        mask_annotation(tmp_path / "classes.tif", n_classes=3)
    assert "has the value 255, which is not a class (0-2)" in one_line(e)
    binary = mask_annotation(tmp_path / "classes.tif", ignore_label=255)  # 2 classes: values are objects
    assert binary.classes is None and binary.ignore.sum() == 48
