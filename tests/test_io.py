"""TIFF/NPY reading and writing: axes, pixel size, atomic writes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from deepimagej.errors import InputImageError
from deepimagej.io import ImageData, read_image, write_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16])
def test_roundtrip_keeps_data_axes_and_pixel_size(tmp_path, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((3, 2, 20, 30)) * 200).astype(dtype)
    path = write_image(tmp_path / "a.tif", ImageData(arr, "zcyx", {"x": 0.5, "y": 0.5, "z": 2.0}, "micron"))
    back = read_image(path)
    assert back.axes == "zcyx"
    np.testing.assert_array_equal(back.array, arr)
    assert back.pixel_size["x"] == pytest.approx(0.5) and back.pixel_size["z"] == pytest.approx(2.0)
    assert back.unit == "micron"


def test_batch_and_time_fold_into_imagej_frames(tmp_path):
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    back = read_image(write_image(tmp_path / "b.tif", arr, axes="btyx"))
    assert back.axes == "tyx" and back.array.shape == (6, 4, 5)


def test_rgb_tiff_is_channels_last(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_image(tmp_path / "rgb.tif").axes == "yxc"


def test_not_an_image_is_clear(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_text("hello", encoding="utf-8")
    with pytest.raises(InputImageError, match="bad.tif"):
        read_image(bad)
    with pytest.raises(InputImageError, match="not found"):
        read_image(tmp_path / "missing.tif")


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(InputImageError):
        write_image(tmp_path / "x.tif", np.zeros((2, 2, 2)), axes="yxq")
    assert list(tmp_path.iterdir()) == []
