"""Training samples: classes, weights and sampling pdf from an image and its annotation."""

from __future__ import annotations

import numpy as np
import pytest

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
