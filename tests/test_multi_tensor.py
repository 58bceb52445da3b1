"""Models with several inputs and outputs, scaled outputs and code-carrying weights, on real runtimes.

The models are small PyTorch networks built by the tests (tests/bundle_factory.py), exported to
TorchScript and ONNX; their test tensors are computed by the PyTorch module itself on inputs
pre-processed by hand, so ``deepimagej test`` checks deepimagej against an independent reference.
"""

from __future__ import annotations

import bundle_factory
import numpy as np
import pytest
from click.testing import CliRunner

from deepimagej import predict
from deepimagej.bundle import load_bundle
from deepimagej.check import check_reference
from deepimagej.cli import main
from deepimagej.errors import DeepImageJError
from deepimagej.io import read_image

pytest.importorskip("torch")
pytest.importorskip("onnx")

FORMATS = ["torchscript", "onnx"]


@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    return bundle_factory.two_in_two_out_bundle(tmp_path_factory.mktemp("two_io") / "bundle")


def test_two_inputs_two_outputs_pass_their_test_for_both_formats(two_io):
    result = CliRunner().invoke(main, ["test", str(two_io.parent)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("PASS")]
    assert len(lines) == 2 and all("'seg'" in ln and "'score'" in ln for ln in lines), result.output


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_inputs_two_outputs_tiled_equals_untiled(two_io, fmt):
    spec = load_bundle(two_io)
    rng = np.random.default_rng(9)
    raw = (rng.random((148, 172)) * 300).astype(
        np.float32
    )  # valid sizes (8 + n*4): the untiled call sees them
    aux = (rng.random((2, 148, 172)) * 200).astype(np.float32)  # as they are, so a direct call can check it
    images = {"raw": raw, "aux": aux}
    axes = {"raw": "yx", "aux": "cyx"}
    whole = predict.run(spec, images, axes=axes, weights_format=fmt)
    tiled = predict.run(spec, images, axes=axes, weights_format=fmt, tile={"y": 32, "x": 40})
    plan = predict.predict(
        spec, predict.bind_inputs(spec, images, axes), weights_format=fmt, tile={"y": 32, "x": 40}
    ).run_plan.plan
    assert plan.n_tiles >= 20
    assert set(whole) == {"seg", "score"}
    assert whole["seg"].shape == (148, 172, 3) and whole["score"].shape == (148, 172)
    for name in whole:
        assert np.abs(whole[name] - tiled[name]).max() < 1e-4, name
    # the same model through the raw runtime, once, on the whole (pre-processed) image
    r, a = bundle_factory.preprocess_two_inputs(raw[None, None], aux[None])
    seg, score = bundle_factory.run_module(bundle_factory.two_in_two_out_module(), r, a)
    np.testing.assert_allclose(whole["seg"], np.moveaxis(seg[0], 0, -1), atol=1e-4)
    np.testing.assert_allclose(whole["score"], score[0, 0], atol=1e-4)


def test_several_inputs_from_the_command_line(two_io, tmp_path):
    from deepimagej.io import ImageData, write_image

    rng = np.random.default_rng(2)
    write_image(tmp_path / "raw.tif", ImageData((rng.random((70, 90)) * 255).astype(np.uint8), "yx"))
    write_image(tmp_path / "aux.tif", ImageData(rng.random((2, 70, 90)).astype(np.float32), "cyx"))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(two_io.parent),
            "--input",
            f"raw={tmp_path / 'raw.tif'}",
            "--input",
            f"aux={tmp_path / 'aux.tif'}",
            "-o",
            str(out),
            "--tile",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    seg, score = read_image(out / "raw_seg.tif"), read_image(out / "raw_score.tif")
    assert seg.array.shape == (3, 70, 90) and seg.axes == "cyx"
    assert score.array.shape == (70, 90)
    expected = predict.run(
        two_io.parent,
        {"raw": read_image(tmp_path / "raw.tif").array, "aux": read_image(tmp_path / "aux.tif").array},
        axes={"raw": "yx", "aux": "cyx"},
    )
    np.testing.assert_allclose(score.array, expected["score"], atol=1e-5)
    single = tmp_path / "score_only.tif"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(two_io.parent),
            "--input",
            f"raw={tmp_path / 'raw.tif'}",
            "--input",
            f"aux={tmp_path / 'aux.tif'}",
            "-o",
            f"score={single}",
            "-o",
            f"seg={tmp_path / 'seg_only.npy'}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert single.is_file() and np.load(tmp_path / "seg_only.npy").shape == (70, 90, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "raw=R"], "no image for input 'aux'"),
        (["--input", "raw=R", "--input", "aux=A", "--input", "mask=A"], "no input 'mask'"),
        (["R"], "has 2 inputs"),
        (["--input", "raw=R", "--input", "aux=A", "-o", "OUT.tif"], "give -o FOLDER or -o NAME=PATH"),
    ],
)
def test_several_inputs_bad_arguments_are_one_line_errors(two_io, tmp_path, args, message):
    from deepimagej.io import ImageData, write_image

    write_image(tmp_path / "R.tif", ImageData(np.zeros((40, 40), np.uint8), "yx"))
    write_image(tmp_path / "A.tif", ImageData(np.zeros((2, 40, 40), np.float32), "cyx"))
    args = [a.replace("R", str(tmp_path / "R.tif")).replace("=A", f"={tmp_path / 'A.tif'}") for a in args]
    args = [a.replace("OUT.tif", str(tmp_path / "OUT.tif")) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out")]
    result = CliRunner().invoke(main, ["run", str(two_io.parent), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_several_inputs_python_errors(two_io):
    spec = load_bundle(two_io)
    raw, aux = np.zeros((40, 48), np.float32), np.zeros((2, 40, 48), np.float32)
    with pytest.raises(DeepImageJError, match="input 'aux' is missing"):
        predict.run(spec, {"raw": raw})
    with pytest.raises(DeepImageJError, match="unknown input 'mask'"):
        predict.run(spec, {"raw": raw, "aux": aux, "mask": raw})
    with pytest.raises(DeepImageJError, match="pass one image per input"):
        predict.run(spec, raw)
    with pytest.raises(DeepImageJError, match="input 'aux' is 36 pixels along y but input 'raw' is 40"):
        predict.run(spec, {"raw": raw, "aux": aux[:, :36]}, axes={"raw": "yx", "aux": "cyx"})


# --------------------------------------------------------------------------------------------
# scaled outputs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["up2", "up4", "down2", "valid"])
def resampling(request, tmp_path_factory):
    return request.param, bundle_factory.resampling_bundle(
        tmp_path_factory.mktemp(request.param) / "b", request.param
    )


def test_scaled_outputs_pass_their_test(resampling):
    _, rdf = resampling
    spec = load_bundle(rdf)
    for fmt in FORMATS:
        report = check_reference(spec, weights_format=fmt)
        assert report.passed, report.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_scaled_outputs_tiled_equal_untiled(resampling, fmt):
    kind, rdf = resampling
    spec = load_bundle(rdf)
    _, size = bundle_factory.resampling_module(kind)
    image = np.random.default_rng(5).random((120, 136)).astype(np.float32)  # valid sizes: 8 + n*4
    whole = predict.run(spec, image, axes="yx", weights_format=fmt)
    tile = {"y": 40, "x": 44} if kind != "up4" else {"y": 48, "x": 52}
    tiled = predict.run(spec, image, axes="yx", weights_format=fmt, tile=tile)
    n_tiles = predict.predict(
        spec, predict.bind_inputs(spec, image, "yx"), weights_format=fmt, tile=tile
    ).run_plan.plan.n_tiles
    assert n_tiles >= 9
    assert whole.shape == (size(120), size(136), 2)
    assert np.abs(whole - tiled).max() < 1e-4
    (direct,) = bundle_factory.run_module(bundle_factory.resampling_module(kind)[0], image[None, None])
    np.testing.assert_allclose(whole, np.moveaxis(direct[0], 0, -1), atol=1e-4)


def test_scaled_output_needs_whole_pixels(tmp_path):
    rdf = bundle_factory.resampling_bundle(tmp_path / "b", "down2")
    with pytest.raises(DeepImageJError, match="whole pixels"):
        predict.run(load_bundle(rdf), np.zeros((41, 40), np.float32), axes="yx")


def test_scaled_output_pixel_size_follows_the_scale(tmp_path):
    from deepimagej.io import ImageData, write_image

    rdf = bundle_factory.resampling_bundle(tmp_path / "b", "up2")
    write_image(
        tmp_path / "in.tif",
        ImageData(
            np.random.default_rng(0).random((32, 40)).astype(np.float32), "yx", {"x": 0.5, "y": 0.5}, "micron"
        ),
    )
    result = CliRunner().invoke(
        main, ["run", str(rdf.parent), str(tmp_path / "in.tif"), "-o", str(tmp_path / "o.tif")]
    )
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "o.tif")
    assert out.array.shape == (2, 64, 80)
    assert out.pixel_size["x"] == pytest.approx(0.25) and out.unit == "micron"


# --------------------------------------------------------------------------------------------
# pytorch_state_dict: runs only when trusted
# --------------------------------------------------------------------------------------------


def test_state_dict_bundle_runs_with_trust_code_only(tmp_path):
    from deepimagej.io import ImageData, write_image

    rdf, module = bundle_factory.state_dict_bundle(tmp_path / "b")
    image = np.random.default_rng(8).random((48, 64)).astype(np.float32)
    write_image(tmp_path / "in.tif", ImageData(image, "yx"))
    args = ["run", str(rdf.parent), str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif")]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--trust" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "out.tif").exists()
    trusted = CliRunner().invoke(main, [*args, "--trust-code"])
    assert trusted.exit_code == 0, trusted.output
    (expected,) = bundle_factory.run_module(module, image[None, None])
    np.testing.assert_allclose(read_image(tmp_path / "out.tif").array, expected[0, 0], atol=1e-5)
    test = CliRunner().invoke(main, ["test", str(rdf.parent), "--trust-code"])
    assert test.exit_code == 0 and "PASS" in test.output, test.output


def test_state_dict_architecture_must_match_its_sha256(tmp_path):
    rdf, _ = bundle_factory.state_dict_bundle(tmp_path / "b")
    source = rdf.parent / "tiny_net.py"
    source.write_text(source.read_text() + "\nimport os  # changed after the descriptor was written\n")
    with pytest.raises(DeepImageJError, match="sha256"):
        predict.run(load_bundle(rdf), np.zeros((16, 16), np.float32), trust_code=True)


# --------------------------------------------------------------------------------------------
# outputs in any axis order are written
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_config_xml_nhwc_output_is_written_as_tiff_and_reads_back_equal(tmp_path, channels):
    from deepimagej.io import ImageData, write_image

    config = bundle_factory.nhwc_config_bundle(tmp_path / "nhwc", channels)
    spec = load_bundle(config.parent)
    assert spec.kind == "deepimagej" and spec.outputs[0].axis_names == "byxc"
    image = (np.random.default_rng(6).random((90, 70)) * 255).astype(np.uint8)
    write_image(tmp_path / "in.tif", ImageData(image, "yx"))
    for out_name in ("out.tif", "out.npy"):
        result = CliRunner().invoke(
            main,
            [
                "run",
                str(config.parent),
                str(tmp_path / "in.tif"),
                "-o",
                str(tmp_path / out_name),
                "--tile",
                "32",
            ],
        )
        assert result.exit_code == 0, result.output
    expected = predict.run(spec, image, axes="yx")
    back = read_image(tmp_path / "out.tif")
    if channels == 3:
        assert expected.shape == (90, 70, 3)
        assert back.axes == "cyx"  # ImageJ hyperstack order
        np.testing.assert_array_equal(np.moveaxis(back.array, 0, -1), expected)
    else:  # one channel: the image's own axes
        assert expected.shape == (90, 70) and back.axes == "yx"
        np.testing.assert_array_equal(back.array, expected)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
