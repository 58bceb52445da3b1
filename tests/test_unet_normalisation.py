"""Training normalises its images with the bundle's own pre-processing ops (issue 16).

The U-Net used to normalise training images with a hand-written min-max (``unet/train.normalize``,
removed in 856a525) while the exported bundle declared bioimage.io ``scale_range``; now training
runs :func:`deepimagej.ops.apply_processing` on the steps the export writes into the bundle
(:meth:`TrainingConfig.processing_steps`). These tests pin that the switch changed no number on
the ISBI 2012 images the example models are trained on, and that inference (the same steps fitted
on the whole image in the bundle's ``byxc`` axes and applied tile by tile, as ``predict.run``
does) gives the network the very input training gave it.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej import ops
from deepimagej.unet.config import TrainingConfig
from deepimagej.unet.dataset import normalized_images
from deepimagej.unet.files import load_image
from deepimagej.unet.samples import TrainingSample


def legacy_normalize(image: np.ndarray, ndim: int) -> np.ndarray:
    """The hand-written min-max that training used before it ran the bundle's ops (reference only)."""
    image = np.asarray(image, dtype=np.float32)
    axes = tuple(range(ndim))
    lo = image.min(axis=axes, keepdims=True)
    hi = image.max(axis=axes, keepdims=True)
    return ((image - lo) / (hi - lo + 1e-6)).astype(np.float32)


def sample(image: np.ndarray) -> TrainingSample:
    """A training sample around ``image`` (normalisation reads only the image)."""
    shape = image.shape[:2]
    zeros = np.zeros(shape, np.float32)
    return TrainingSample(
        image, np.zeros(shape, np.int32), np.zeros(shape, bool), zeros, zeros.astype(np.uint8)
    )


@pytest.fixture(scope="module")
def isbi_images(assets) -> list[np.ndarray]:
    paths = sorted((assets / "isbi2012_em").glob("*/image/*.png"))
    assert len(paths) >= 30, paths
    return [load_image(p) for p in paths]


def test_training_normalisation_is_unchanged_on_isbi(isbi_images):
    config = TrainingConfig()
    assert [s.name for s in config.processing_steps()] == ["scale_range"]
    new = normalized_images([sample(im) for im in isbi_images], config)
    for image, got in zip(isbi_images, new):
        old = legacy_normalize(image, 2)
        assert got.dtype == np.float32 and got.shape == image.shape
        # float32 precision: at most one unit in the last place apart (in practice bit-identical)
        np.testing.assert_array_max_ulp(got, old, maxulp=1)
        assert got.min() == 0.0 and 0.999 < got.max() <= 1.0


def test_training_normalisation_is_unchanged_per_channel():
    """An RGB image is normalised channel by channel, as before."""
    rng = np.random.default_rng(16)
    image = np.stack([rng.integers(lo, hi, (40, 56)) for lo, hi in [(0, 50), (100, 255), (7, 9)]], -1)
    image = image.astype(np.float32)
    (got,) = normalized_images([sample(image)], TrainingConfig())
    np.testing.assert_array_max_ulp(got, legacy_normalize(image, 2), maxulp=1)


def test_inference_sees_what_training_saw(isbi_images):
    """The bundle's steps fitted on the ``byxc`` tensor and applied per tile equal training's input."""
    config = TrainingConfig()
    steps = config.processing_steps()  # what export_training writes into the rdf
    image = isbi_images[0]
    (trained_on,) = normalized_images([sample(image)], config)
    tensor = image[None, ..., None]
    pipeline = ops.fit(steps, tensor, "byxc")
    whole = pipeline.apply(tensor)[0, ..., 0]
    np.testing.assert_array_equal(whole, trained_on)
    region = (slice(0, 1), slice(100, 228), slice(300, 428), slice(0, 1))
    tile = pipeline.apply(tensor[region], region)[0, ..., 0]
    np.testing.assert_array_equal(tile, trained_on[100:228, 300:428])
