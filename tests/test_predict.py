"""End-to-end model runs against the bundles' own reference outputs (real models, real data)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from deepimagej import predict
from deepimagej.bundle import load_bundle
from deepimagej.check import check_reference
from deepimagej.cli import main
from deepimagej.errors import DeepImageJError
from deepimagej.io import read_image


@pytest.fixture(scope="module")
def nuclei(assets):
    return load_bundle(assets / "bioimageio_unet2d_nuclei_broad" / "bioimageio.yaml")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_nuclei_reproduces_test_output(nuclei, fmt):
    report = check_reference(nuclei, weights_format=fmt)
    assert report.max_abs_diff <= 1e-3, report.message
    assert report.passed


def test_cli_test_command_passes_for_both_formats(assets):
    result = CliRunner().invoke(
        main, ["test", str(assets / "bioimageio_unet2d_nuclei_broad" / "bioimageio.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 2


def test_nuclei_without_preprocessing_differs(nuclei, assets):
    """The reference needs the rdf pre-processing: skipping it must break the match (the test can fail)."""
    x = np.load(assets / "bioimageio_unet2d_nuclei_broad" / "test_input.npy")
    ref = np.load(assets / "bioimageio_unet2d_nuclei_broad" / "test_output.npy")
    out = predict.run(nuclei, x, axes="bcyx", weights_format="onnx", apply_preprocessing=False)
    assert np.max(np.abs(out - ref)) > 1e-2


def test_pancreatic_bundle_matches_reference(pancreatic_bundle, assets):
    image = read_image(assets / "unet_pancreatic" / "exampleImage.tif")
    ref = np.load(assets / "unet_pancreatic" / "resultImage.npy")[0, :, :, 0]
    out = predict.run(pancreatic_bundle, image.array, axes=image.axes)
    assert out.shape == ref.shape
    agreement = np.mean(out == ref)
    assert agreement >= 0.999, agreement


def test_pancreatic_tiled_equals_untiled(pancreatic_bundle, assets):
    image = read_image(assets / "unet_pancreatic" / "exampleImage.tif").array
    whole = predict.run(pancreatic_bundle, image, axes="yx", apply_postprocessing=False)
    tiled = predict.run(
        pancreatic_bundle, image, axes="yx", tile={"y": 256, "x": 256}, apply_postprocessing=False
    )
    assert whole.shape == tiled.shape == image.shape
    assert np.max(np.abs(whole - tiled)) < 1e-4


def test_image_is_not_modified(pancreatic_bundle, assets):
    image = read_image(assets / "unet_pancreatic" / "exampleImage.tif").array[:128, :160].copy()
    before = image.copy()
    predict.run(pancreatic_bundle, image, axes="yx")
    np.testing.assert_array_equal(image, before)


def test_stack_runs_slice_by_slice(pancreatic_bundle, assets):
    image = read_image(assets / "unet_pancreatic" / "exampleImage.tif").array[:96, :120]
    stack = np.stack([image, image[::-1]])
    out = predict.run(pancreatic_bundle, stack, axes="zyx", apply_postprocessing=False)
    single = predict.run(pancreatic_bundle, image[::-1], axes="yx", apply_postprocessing=False)
    assert out.shape == stack.shape
    np.testing.assert_allclose(out[1], single, atol=1e-5)


def test_wrong_channel_count_is_one_line_error(pancreatic_bundle):
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(DeepImageJError) as info:
        predict.run(pancreatic_bundle, rgb, axes="yxc")
    assert "\n" not in str(info.value)
    assert "channel" in str(info.value)
