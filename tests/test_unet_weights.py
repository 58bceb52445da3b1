"""Ridges and loss weight maps (Falk et al. 2019, M2) against hand-computed examples."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deepimagej.unet.weights import (
    class_balance_weights,
    insert_ridges,
    labels_to_classes,
    separation_weights,
    weight_map,
)


def two_touching_squares():
    lab = np.zeros((6, 10), dtype=np.int32)
    lab[1:5, 1:5] = 1
    lab[1:5, 5:9] = 2
    return lab


def test_ridge_between_touching_squares_is_one_pixel_wide():
    lab = two_touching_squares()
    out = insert_ridges(lab)
    expected = lab.copy()
    expected[1:5, 4] = 0  # the lower label loses its border column next to label 2
    np.testing.assert_array_equal(out, expected)
    assert out is not lab and lab[1, 4] == 1  # input untouched


def test_ridge_diagonal_contact_and_isolated_objects():
    lab = np.zeros((5, 5), dtype=np.int32)
    lab[1, 1] = 1
    lab[2, 2] = 2  # touches 1 only diagonally (8-connectivity)
    lab[4, 4] = 3  # isolated
    out = insert_ridges(lab)
    assert out[1, 1] == 0 and out[2, 2] == 2 and out[4, 4] == 3
    # non-touching objects and the background are not changed
    lab2 = np.zeros((7, 7), dtype=np.int32)
    lab2[1:3, 1:3] = 1
    lab2[4:6, 4:6] = 2
    np.testing.assert_array_equal(insert_ridges(lab2), lab2)


def test_ridge_3d_26_connectivity():
    lab = np.zeros((3, 4, 4), dtype=np.int32)
    lab[0, 0, 0] = 1
    lab[1, 1, 1] = 2  # corner contact in 3D
    out = insert_ridges(lab)
    assert out[0, 0, 0] == 0 and out[1, 1, 1] == 2


def test_labels_to_classes():
    cls = labels_to_classes(two_touching_squares())
    assert cls.dtype == np.uint8
    assert cls.sum() == 32 - 4 and cls[1, 4] == 0 and cls[1, 5] == 1


def test_balance_weights_known_distances():
    cls = np.zeros((1, 40), dtype=np.uint8)
    cls[0, :5] = 1
    w = class_balance_weights(cls, v_bal=0.1, sigma_bal=10.0)
    assert np.all(w[0, :5] == 1.0)
    for d in (1, 10, 20, 35):
        expected = 0.1 + 0.9 * np.exp(-(d**2) / 200.0)
        assert w[0, 4 + d] == pytest.approx(expected, rel=1e-5)
    # d = sigma_bal -> 0.1 + 0.9 * e^-0.5
    assert w[0, 14] == pytest.approx(0.1 + 0.9 * 0.6065307, rel=1e-5)
    ign = np.zeros_like(cls, dtype=bool)
    ign[0, 30:] = True
    ign[0, 0] = True
    w2 = class_balance_weights(cls, ign)
    assert np.all(w2[0, 30:] == 0) and w2[0, 0] == 0 and w2[0, 1] == 1


def test_balance_weights_without_foreground_and_with_element_size():
    assert np.all(class_balance_weights(np.zeros((4, 4))) == np.float32(0.1))
    cls = np.zeros((5, 1, 1), dtype=np.uint8)
    cls[0] = 1
    w = class_balance_weights(cls, sigma_bal=10.0, element_size=(5.0, 1.0, 1.0))  # 5 units per z step
    assert w[2, 0, 0] == pytest.approx(0.1 + 0.9 * np.exp(-(10.0**2) / 200.0), rel=1e-5)


def test_separation_weight_values_and_peak_between_touching_objects():
    ridged = insert_ridges(two_touching_squares())
    sep = separation_weights(ridged, sigma_sep=6.0)
    # ridge pixel (2, 4): d1 = d2 = 1 -> exp(-4/72)
    assert sep[2, 4] == pytest.approx(np.exp(-4 / 72.0), rel=1e-5)
    # corner pixel (0, 0): d1 = sqrt(2) to object 1, d2 = sqrt(26) to object 2 at (1, 5)
    expected = np.exp(-((np.sqrt(2) + np.sqrt(26)) ** 2) / 72.0)
    assert sep[0, 0] == pytest.approx(expected, rel=1e-5)
    assert np.all(sep[ridged > 0] == 0)
    bg = ridged == 0
    assert sep[bg].max() == sep[2, 4]  # the maximum lies on the ridge
    # single object: no second-nearest instance -> no separation weight
    single = np.zeros((8, 8), dtype=np.int32)
    single[2:5, 2:5] = 1
    assert not separation_weights(single).any()


def test_separation_weight_lower_far_from_gap():
    lab = np.zeros((40, 60), dtype=np.int32)
    lab[10:30, 5:25] = 1
    lab[10:30, 28:48] = 2  # 3-pixel gap at columns 25..27
    sep = separation_weights(lab, sigma_sep=6.0)
    gap = sep[20, 26]
    assert gap == pytest.approx(np.exp(-((2 + 2) ** 2) / 72.0), rel=1e-5)
    assert sep[20, 55] < 0.1 * gap  # beyond object 2, far from object 1
    assert sep[0, 0] < gap and sep[5, 26] < gap  # above the gap, outside both objects
    # d1 + d2 is constant across a straight gap: every gap column has the same weight
    assert sep[20, 25] == pytest.approx(gap) and sep[20, 27] == pytest.approx(gap)


def test_weight_map_combines_terms_and_ignores():
    lab = two_touching_squares()
    ign = np.zeros(lab.shape, dtype=bool)
    ign[:, 9] = True
    w = weight_map(lab, ign, v_bal=0.1, sigma_bal=10.0, lam=50.0, sigma_sep=6.0)
    assert w.dtype == np.float32
    ridged = insert_ridges(lab)
    cls = ridged > 0
    expected = class_balance_weights(cls, ign) + 50.0 * separation_weights(ridged)
    expected[ign] = 0
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert w[2, 2] == 1.0  # foreground: balance weight only
    assert w[2, 4] == pytest.approx(0.1 + 0.9 * np.exp(-1 / 200) + 50 * np.exp(-4 / 72), rel=1e-5)
    assert np.all(w[:, 9] == 0)
    assert w[2, 4] == w[~ign & ~cls].max()
    no_sep = weight_map(lab, lam=0.0)
    np.testing.assert_allclose(no_sep, class_balance_weights(cls))


def test_weight_map_fast_on_isbi_label(assets):
    from scipy import ndimage as ndi

    from deepimagej.unet.targets import load_mask

    lab = load_mask(assets / "isbi2012_em" / "train" / "label" / "0.png")
    assert ndi.maximum(lab) > 50
    t = time.perf_counter()
    w = weight_map(lab)
    elapsed = time.perf_counter() - t
    assert elapsed < 1.5, elapsed
    assert w.shape == (512, 512) and np.isfinite(w).all() and w.min() > 0
    assert w.max() > 40  # one-pixel membranes between neighbouring cells
