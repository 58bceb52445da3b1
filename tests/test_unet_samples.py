"""Training samples: classes, weights and sampling pdf from an image and its annotation."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from deepimagej.errors import TrainingError
from deepimagej.unet.samples import TrainingSample, prepare_sample


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_prepare_sample_and_errors():
    lab = np.zeros((16, 16), np.int32)
    lab[2:8, 2:8] = 1
    lab[2:8, 8:14] = 2
    ign = np.zeros((16, 16), bool)
    ign[12:, :] = True
    s = prepare_sample(np.ones((16, 16, 3)), lab, ign, lam=10.0)
    assert isinstance(s, TrainingSample)
    assert s.image.dtype == np.float32 and s.classes.dtype == np.uint8
    assert s.classes[3, 7] == 0 and s.classes[3, 8] == 1  # ridge
    assert np.all(s.weights[ign] == 0) and np.all(s.pdf[ign] == 0) and s.pdf.max() == 1.0
    assert s.weights[3, 7] > 5  # separation term with lam = 10
    with pytest.raises(TrainingError) as e:
        prepare_sample(
            np.zeros((512, 512)), np.zeros((256, 256), np.int32) + 1, image_name="x.png", labels_name="y.png"
        )
    assert one_line(e).startswith("image 'x.png' is 512x512 but labels 'y.png' are 256x256")
    with pytest.raises(TrainingError) as e:
        prepare_sample(
            np.zeros((20, 30, 3)), np.ones((30, 20), np.int32), image_name="rgb.tif", labels_name="l.tif"
        )
    assert "is 30x20 but labels 'l.tif' are 20x30" in one_line(e)
    with pytest.raises(TrainingError) as e:
        prepare_sample(np.zeros((8, 8)), np.zeros((8, 8), np.int32), labels_name="empty.png")
    assert "no annotated object" in one_line(e)


def test_classes_get_ridges_within_a_class_and_the_papers_weights():
    from deepimagej.unet.weights import LAMBDA_SEP, V_BAL, weight_map

    labels = np.zeros((24, 24), np.int32)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2  # touches 1, same class: a ridge between them
    labels[10:18, 2:10] = 3  # touches 1, another class: the class boundary, no ridge
    classes = np.where(labels == 3, 2, np.where(labels > 0, 1, 0)).astype(np.uint8)
    s = prepare_sample(np.ones((24, 24)), labels, classes=classes)
    assert s.classes[5, 9] == 0 and s.classes[5, 10] == 1  # ridge between the two class-1 objects
    assert s.classes[9, 5] == 1 and s.classes[10, 5] == 2  # classes 1 and 2 meet without a ridge
    assert set(np.unique(s.classes)) == {0, 1, 2}
    np.testing.assert_allclose(s.weights, weight_map(labels, classes=classes))
    assert s.weights[5, 5] == 1.0 and s.weights[15, 5] == 1.0  # every foreground class weighs 1
    assert s.weights[5, 9] > 0.5 * LAMBDA_SEP  # the ridge between touching objects: separation weight
    assert V_BAL < s.weights[22, 22] < s.weights[19, 19] < 1  # background: v_bal rising towards objects
    with pytest.raises(TrainingError) as e:
        prepare_sample(np.ones((24, 24)), labels, classes=(labels > 1).astype(np.uint8))
    assert "class > 0" in str(e.value)


def test_ignore_rois_get_weight_zero(tmp_path):
    import roifile
    from skimage import io as skio

    from deepimagej.unet.config import TrainingConfig
    from deepimagej.unet.samples import load_samples

    image = np.full((40, 40), 30, np.uint8)
    image[5:15, 5:15] = image[20:30, 22:32] = 200
    skio.imsave(tmp_path / "cells.png", image, check_contrast=False)
    rois = [
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=5, top=5, right=15, bottom=15, name="a"),
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=22, top=20, right=32, bottom=30, name="b"),
        roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=0, top=30, right=40, bottom=40, name="ignore"),
    ]
    roifile.roiwrite(tmp_path / "cells.zip", rois)
    [sample] = load_samples(tmp_path / "cells.png", tmp_path / "cells.zip", TrainingConfig())
    assert np.all(sample.weights[30:, :] == 0) and np.all(sample.pdf[30:, :] == 0)
    assert np.all(sample.weights[:30] > 0) and sample.labels.max() == 2
    # detection: ignore ROIs next to the points
    points = roifile.ImagejRoi.frompoints([[10, 10], [27, 25]], name="cells")
    points.roitype = roifile.ROI_TYPE.POINT
    roifile.roiwrite(tmp_path / "points.zip", [points, rois[2]])
    [det] = load_samples(tmp_path / "cells.png", tmp_path / "points.zip", TrainingConfig(task="detection"))
    assert np.all(det.weights[30:, :] == 0) and det.points.shape == (2, 2) and det.labels.max() == 2


def test_element_size_resamples_training_images(tmp_path):
    from deepimagej.io import ImageData, write_image
    from deepimagej.unet.config import TrainingConfig
    from deepimagej.unet.samples import load_samples

    image = np.zeros((40, 60), np.uint8)
    image[10:30, 10:30] = 200
    write_image(tmp_path / "image.tif", ImageData(image, "yx", {"x": 0.25, "y": 0.25}, "micron"))
    tifffile.imwrite(tmp_path / "mask.tif", (image > 0).astype(np.uint8) * 255)
    [as_is] = load_samples(tmp_path / "image.tif", tmp_path / "mask.tif", TrainingConfig())
    [resampled] = load_samples(
        tmp_path / "image.tif", tmp_path / "mask.tif", TrainingConfig(element_size=0.5)
    )
    assert as_is.image.shape == (40, 60) and resampled.image.shape == resampled.labels.shape == (20, 30)
    assert (resampled.labels > 0).sum() == 100  # the 20 x 20 square at half the resolution


def test_training_config_round_trips_and_checks(tmp_path):
    from deepimagej.unet.config import TrainingConfig

    config = TrainingConfig(
        n_classes=3,
        class_names=("nucleus", "vesicle"),
        element_size=(0.5, 0.5),
        lr_drop_epochs=(30,),
        tile=(128, 96),
    )
    assert TrainingConfig.load(config.save(tmp_path / "config.json")) == config
    assert config.separation_weight == 50 and TrainingConfig(task="detection").separation_weight == 0
    assert config.channel_names() == ("background", "nucleus", "vesicle")
    assert config.element_sizes() == {"y": 0.5, "x": 0.5}
    assert config.processing_steps()[0].kwargs["axes"] == "yx"
    for bad, message in [
        ({"n_classes": 3, "class_names": ("a",)}, "1 class names for 3 classes"),
        ({"task": "count"}, "task='count'"),
        ({"element_size": (1, 2, 3)}, "element size"),
        ({"border": "wrap"}, "border='wrap'"),
    ]:
        with pytest.raises(TrainingError, match=message):
            TrainingConfig(**bad)
    (tmp_path / "bad.json").write_text('{"epochs": 3, "epoch": 4}')
    with pytest.raises(TrainingError, match="unknown setting"):
        TrainingConfig.load(tmp_path / "bad.json")
