"""Augmentation (Falk et al. 2019, M3): identical geometry, pdf sampling, monotone curves."""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej.errors import TrainingError
from deepimagej.unet.augment import (
    Augmenter,
    augment_sample,
    coordinate_map,
    elastic_field,
    intensity_curve,
    random_rotation,
    sample_tile_center,
)


def blobs(shape=(64, 64)):
    lab = np.zeros(shape, dtype=np.uint8)
    lab[8:24, 10:30] = 1
    lab[36:56, 30:50] = 1
    lab[40:44, 5:20] = 1
    return lab


def test_sample_tile_center_never_on_zero_pdf():
    rng = np.random.default_rng(0)
    pdf = np.zeros((20, 30))
    pdf[3, 4] = 1.0
    pdf[10:12, 20:22] = 3.0
    counts = {}
    for _ in range(400):
        c = sample_tile_center(pdf, rng)
        assert pdf[c] > 0
        counts[c] = counts.get(c, 0) + 1
    # frequency proportional to the pdf: (3, 4) has 1/13 of the mass
    assert 10 < counts[(3, 4)] < 60
    with pytest.raises(TrainingError, match="ignored"):
        sample_tile_center(np.zeros((4, 4)), rng)


def test_augment_never_centres_on_ignored_region():
    rng = np.random.default_rng(1)
    img = np.zeros((40, 40), np.float32)
    cls = np.zeros((40, 40), np.uint8)
    pdf = np.ones((40, 40), np.float32)
    pdf[:, :30] = 0  # ignored
    w = pdf.copy()
    for _ in range(20):
        # a 1x1 tile at the sampled centre, no deformation: the weight there must be > 0
        _, _, wt = augment_sample(
            img, cls, w, rng, out_shape=(1, 1), pdf=pdf, rotation=False, elastic=False, intensity=False
        )
        assert wt[0, 0] > 0


def test_identity_when_all_augmentations_off():
    img = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    cls = (img % 7 == 0).astype(np.uint8)
    w = img / 10
    ti, tc, tw = augment_sample(
        img,
        cls,
        w,
        0,
        out_shape=(10, 10),
        in_shape=(14, 14),
        center=(15, 20),
        rotation=False,
        elastic=False,
        intensity=False,
    )
    assert ti.shape == (14, 14) and tc.shape == (10, 10) and tw.shape == (10, 10)
    # tile centre (n - 1) / 2 = 6.5 of 14 px on pixel (15, 20) -> rows 8.5..21.5, columns 13.5..26.5;
    # img = 40 r + c is linear, so linear interpolation gives it exactly
    r, c = np.meshgrid(np.arange(14) + 8.5, np.arange(14) + 13.5, indexing="ij")
    np.testing.assert_allclose(ti, 40 * r + c, rtol=1e-6)
    # an odd tile centred on a pixel copies the pixels
    t5, _, _ = augment_sample(
        img, cls, w, 0, out_shape=(5, 5), center=(15, 20), rotation=False, elastic=False, intensity=False
    )
    np.testing.assert_array_equal(t5, img[13:18, 18:23])
    # the label tile is the central crop of the image tile's geometry
    np.testing.assert_allclose(tw, ti[2:12, 2:12] / 10, rtol=1e-5)


def test_border_zeros_shows_zeros_and_ignores_beyond_the_image():
    img = np.arange(1, 30 * 40 + 1, dtype=np.float32).reshape(30, 40)  # no zero inside the image
    cls = np.ones((30, 40), np.uint8)
    w = np.ones((30, 40), np.float32)
    off = {"rotation": False, "elastic": False, "intensity": False}
    # 9 x 9 tile centred on pixel (2, 3): rows -2..6 and columns -1..7
    ti, tc, tw = augment_sample(img, cls, w, 0, out_shape=(9, 9), center=(2, 3), border="zeros", **off)
    np.testing.assert_array_equal(ti[2:, 1:], img[:7, :8])
    assert not ti[:2].any() and not ti[:, :1].any()
    assert not tw[:2].any() and not tc[:2].any() and tw[2:, 1:].all()  # beyond the border: ignored
    # mirror (the default): the rows above the image repeat image rows, the weights count
    tm, _, wm = augment_sample(img, cls, w, 0, out_shape=(9, 9), center=(2, 3), **off)
    np.testing.assert_array_equal(tm[2:, 1:], img[:7, :8])
    assert tm[:2].min() > 0 and wm.all()
    with pytest.raises(ValueError, match="border"):
        augment_sample(img, cls, w, 0, out_shape=(9, 9), border="wrap", **off)


def test_geometry_identical_for_image_labels_weights():
    rng = np.random.default_rng(2)
    lab = blobs()
    img = lab.astype(np.float32) * 100
    weights = lab.astype(np.float32) * 5 + 1
    for _ in range(5):
        ti, tc, tw = augment_sample(
            img,
            lab,
            weights,
            rng,
            out_shape=(32, 32),
            in_shape=(48, 48),
            grid_spacing=20.0,
            elastic_sigma=4.0,
            intensity=False,
            image_order=1,
        )
        crop = ti[8:40, 8:40]
        # where the linearly interpolated image is unambiguous, nearest-neighbour labels agree
        sure_fg, sure_bg = crop > 99, crop < 1
        assert np.all(tc[sure_fg] == 1) and np.all(tc[sure_bg] == 0)
        assert np.mean((crop > 50) == (tc == 1)) > 0.97
        # weights follow the same map: w = img / 20 + 1 exactly (linear interpolation commutes)
        np.testing.assert_allclose(tw, crop / 20 + 1, rtol=1e-4, atol=1e-4)


def test_multichannel_and_3d_anisotropic():
    rng = np.random.default_rng(3)
    lab = np.zeros((8, 32, 32), np.uint8)
    lab[2:6, 8:24, 8:24] = 1
    img = np.stack([lab * 10.0, lab * 20.0], axis=-1).astype(np.float32)
    w = np.ones(lab.shape, np.float32)
    ti, tc, tw = augment_sample(
        img,
        lab,
        w,
        rng,
        out_shape=(4, 16, 16),
        in_shape=(6, 20, 20),
        element_size=(2.0, 0.5, 0.5),
        grid_spacing=8.0,
        elastic_sigma=1.0,
        intensity=False,
    )
    assert ti.shape == (6, 20, 20, 2) and tc.shape == (4, 16, 16) and tw.shape == (4, 16, 16)
    np.testing.assert_allclose(ti[..., 1], 2 * ti[..., 0], rtol=1e-5, atol=1e-4)
    # rotation is in-plane only: the z coordinate of the map does not depend on y, x
    rot = random_rotation(rng, 3)
    assert np.allclose(rot[0], [1, 0, 0]) and np.allclose(rot @ rot.T, np.eye(3))
    coords = coordinate_map((4, 16, 16), (6, 20, 20), rot, None, element_size=(2.0, 0.5, 0.5))
    assert np.allclose(coords[0], coords[0][:, :1, :1])


def test_elastic_field_smooth_and_scaled():
    rng = np.random.default_rng(4)
    f = elastic_field((200, 200), grid_spacing=150.0, sigma=10.0, rng=rng)
    assert f.shape == (2, 200, 200) and f.dtype == np.float32
    assert 1.0 < np.abs(f).max() < 60.0
    # smooth: neighbouring pixels move almost the same
    assert np.abs(np.diff(f, axis=1)).max() < 1.0 and np.abs(np.diff(f, axis=2)).max() < 1.0
    f3 = elastic_field((5, 30, 30), grid_spacing=20.0, sigma=4.0, rng=rng, element_size=(4.0, 1.0, 1.0))
    assert f3.shape == (3, 5, 30, 30)
    # displacements are returned in pixels: the z component is 4x smaller in pixels
    assert f3[0].std() < f3[1:].std()


def test_intensity_curve_monotone_and_range_preserving():
    rng = np.random.default_rng(5)
    x = np.linspace(-3.0, 7.0, 1001, dtype=np.float32)
    for _ in range(10):
        y = intensity_curve(x, rng, n_knots=5, strength=0.9)
        assert np.all(np.diff(y) > 0)
        assert y[0] == pytest.approx(-3.0, abs=1e-5) and y[-1] == pytest.approx(7.0, abs=1e-5)
    assert not np.allclose(intensity_curve(x, rng, strength=0.9), x)
    np.testing.assert_allclose(intensity_curve(x, rng, strength=0.0), x, atol=1e-5)
    const = np.full((3, 3), 2.0)
    np.testing.assert_array_equal(intensity_curve(const, rng), const)
    two = np.stack([x, 10 * x], axis=-1)
    out = intensity_curve(two, rng, channel_axis=-1)
    assert out.shape == two.shape and np.all(np.diff(out, axis=0) > 0)


def test_augmenter_callable_and_shape_errors():
    lab = blobs()
    aug = Augmenter(out_shape=(16, 16), in_shape=(24, 24), grid_spacing=20.0, elastic_sigma=3.0)
    ti, tc, _ = aug(lab.astype(np.float32), lab, np.ones(lab.shape, np.float32), np.random.default_rng(6))
    assert ti.shape == (24, 24) and tc.shape == (16, 16) and tc.dtype == np.uint8
    with pytest.raises(TrainingError):
        augment_sample(
            np.zeros((10, 10)), np.zeros((12, 12), np.uint8), np.ones((12, 12)), 0, out_shape=(4, 4)
        )
    with pytest.raises(ValueError):
        augment_sample(
            np.zeros((10, 10)),
            np.zeros((10, 10), np.uint8),
            np.ones((10, 10)),
            0,
            out_shape=(6, 6),
            in_shape=(4, 4),
        )
