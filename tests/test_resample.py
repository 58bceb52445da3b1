"""Element size: parsing what bundles declare, image calibrations, resampling named axes and back."""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej.bundle import load_bundle
from deepimagej.io import ImageData
from deepimagej.resample import (
    format_pixel_size,
    image_pixel_size,
    model_pixel_size,
    parse_pixel_size,
    rescale,
    rescale_back,
    rescale_factors,
    rescale_to_element_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.30µm x 1.30µm", {"x": 1.3, "y": 1.3}),  # config.xml of u-net_glioblastoma_segmentation
        ("0.16µmx0.16µm", {"x": 0.16, "y": 0.16}),  # deepstorm_zerocostdl4mic
        ("1.60E-04cmx1.60E-04cm", {"x": 1.6, "y": 1.6}),
        ("0,5 µm x 0,5 µm", {"x": 0.5, "y": 0.5}),
        ("0.5 x 0.5 x 2 micron", {"x": 0.5, "y": 0.5, "z": 2.0}),
        ("250nm", {"x": 0.25, "y": 0.25}),
        ("1.00pixel x 1.00pixel", {}),  # pixels are no physical size
        ("1.0pixelsx1.0pixels", {}),
        ("", {}),
        (None, {}),
    ],
)
def test_parse_pixel_size(text, expected):
    got = parse_pixel_size(text)
    assert got.keys() == expected.keys()
    for axis, value in expected.items():
        assert got[axis] == pytest.approx(value)


def test_format_round_trips_and_calibrations():
    sizes = {"z": 2.0, "y": 0.5, "x": 0.5}
    assert format_pixel_size(sizes) == "0.5µm x 0.5µm x 2µm"
    assert parse_pixel_size(format_pixel_size(sizes)) == sizes
    assert format_pixel_size({}) is None
    image = ImageData(np.zeros((4, 4)), "yx", {"x": 250.0, "y": 250.0}, "nm")
    assert image_pixel_size(image) == {"x": 0.25, "y": 0.25}
    assert (
        image_pixel_size(ImageData(np.zeros((4, 4)), "yx", {"x": 0.3, "y": 0.3}, None)) == {}
    )  # no unit: unknown
    assert rescale_factors({"x": 0.25, "y": 0.25}, {"x": 0.5, "y": 0.5}) == {"x": 0.5, "y": 0.5}
    assert rescale_factors({"x": 0.5}, {"x": 0.5, "y": 0.5}) == {}  # same size: nothing to do
    assert rescale_factors(None, {"x": 0.5}) == {} and rescale_factors({"x": 0.5}, {}) == {}
    assert rescale_factors({"x": 1.0, "y": 1.0, "z": 4.0}, {"x": 0.5, "y": 0.5}) == {"x": 2.0, "y": 2.0}


def test_model_pixel_size_of_config_xml_rdf_04_and_05(assets, tmp_path):
    glioblastoma = assets / "deepimagej_bundles" / "u-net_glioblastoma_segmentation"
    assert model_pixel_size(load_bundle(glioblastoma / "config.xml", prefer="deepimagej")) == {
        "x": 1.3,
        "y": 1.3,
    }
    assert (
        model_pixel_size(
            load_bundle(
                assets / "deepimagej_bundles" / "mt3_virtual_staining" / "config.xml", prefer="deepimagej"
            )
        )
        == {}
    )  # "1.00pixel x 1.00pixel"
    source = assets / "bioimageio_unet2d_nuclei_broad"
    for f in source.iterdir():
        if f.name != "bioimageio.yaml":
            (tmp_path / f.name).symlink_to(f)
    text = (source / "bioimageio.yaml").read_text(encoding="utf-8")
    assert model_pixel_size(load_bundle(source / "bioimageio.yaml")) == {}  # 0.5 axes without unit
    text = text.replace(
        "      - size: 512\n        id: y\n        type: space\n      - size: 512\n        type: space\n",
        "      - size: 512\n        id: y\n        type: space\n        scale: 0.65\n        unit: micrometer\n"
        "      - size: 512\n        type: space\n        scale: 0.65\n        unit: micrometer\n",
        1,
    )
    assert "unit: micrometer" in text
    (tmp_path / "bioimageio.yaml").write_text(text, encoding="utf-8")
    assert model_pixel_size(load_bundle(tmp_path / "bioimageio.yaml")) == {"x": 0.65, "y": 0.65}


def test_rescale_named_axes_and_back():
    rng = np.random.default_rng(0)
    image = rng.random((2, 40, 30, 3)).astype(np.float32)  # b y x c
    small = rescale(image, "byxc", {"y": 0.5, "x": 0.5})
    assert small.shape == (2, 20, 15, 3) and small.dtype == np.float32
    back = rescale_back(small, "byxc", {"y": 0.5, "x": 0.5}, {"b": 2, "y": 40, "x": 30, "c": 3})
    assert back.shape == image.shape
    assert rescale(image, "byxc", {}) is image
    labels = np.zeros((40, 30), np.uint16)
    labels[10:30, 5:20] = 7
    up = rescale(labels, "yx", {"y": 1.5, "x": 1.5}, labels=True)
    assert up.shape == (60, 45) and up.dtype == np.uint16 and set(np.unique(up)) == {0, 7}
    # an output twice the input's size (e.g. super-resolution) comes back at twice the image's size
    doubled = rescale_back(np.zeros((40, 30)), "yx", {"y": 0.5, "x": 0.5}, {"y": 40, "x": 30})
    assert doubled.shape == (80, 60)


def test_rescale_to_element_size():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    lab = np.zeros((10, 10), np.int32)
    lab[2:6, 2:6] = 3
    ri, rl = rescale_to_element_size(img, lab, from_size=0.5, to_size=1.0)
    assert ri.shape == (5, 5) and rl.shape == (5, 5) and set(np.unique(rl)) <= {0, 3}
    assert (rl == 3).sum() == 4
    ri2, rl2 = rescale_to_element_size(
        np.zeros((4, 10, 10, 2)), np.zeros((4, 10, 10), np.uint8), (2, 1, 1), (1, 1, 1)
    )
    assert ri2.shape == (8, 10, 10, 2) and rl2.shape == (8, 10, 10)
    same, _ = rescale_to_element_size(img, None, 1.0, 1.0)
    np.testing.assert_array_equal(same, img)
