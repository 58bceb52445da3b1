"""The embedded ImageJ: conversions, macros, errors, the DeepImageJ commands, the pipeline macro.

One ImageJ per test session (JPype starts one JVM per process). Real ImageJ 1.x, real macros
from ../shared/assets, the real pancreatic bundle (skipped when bundles/unet-pancreatic is absent).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepimagej.errors import BundleError, InputImageError, MacroError

pytestmark = pytest.mark.imagej
REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "unet-pancreatic"
PIPELINE = REPO / "macros" / "pancreatic_pipeline.ijm"


@pytest.fixture(scope="session")
def pancreatic():
    if not (BUNDLE / "rdf.yaml").is_file() and not (BUNDLE / "config.xml").is_file():
        pytest.skip(f"{BUNDLE} not built (scripts/build_models.py makes it)")
    return BUNDLE


# ------------------------------------------------------------------ conversions
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_round_trip_every_dtype(ij, dtype):
    from deepimagej.imagej.convert import from_imageplus, to_imageplus

    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if dtype != "float32" else None
    a = (
        rng.integers(info.min, info.max, (2, 3, 4, 5, 6), endpoint=True)
        if info
        else rng.normal(size=(2, 3, 4, 5, 6))
    ).astype(dtype)
    imp = to_imageplus(a, "t", axes="tczyx")
    assert (int(imp.getNFrames()), int(imp.getNChannels()), int(imp.getNSlices())) == (2, 3, 4)
    back = from_imageplus(imp)
    assert back.dtype == a.dtype and np.array_equal(back, a)


def test_round_trip_bool_rgb_and_other_axis_orders(ij):
    from deepimagej.imagej.convert import from_imageplus, imageplus_axes, to_imageplus

    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:5] = True
    assert np.array_equal(from_imageplus(to_imageplus(mask)), mask.astype(np.uint8) * 255)
    rgb = np.random.default_rng(1).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    imp = to_imageplus(rgb, axes="yxc", rgb=True)
    assert int(imp.getBitDepth()) == 24 and imageplus_axes(imp) == "yxc"
    assert np.array_equal(from_imageplus(imp), rgb)
    zyxc = np.arange(2 * 5 * 7 * 3, dtype=np.float32).reshape(2, 5, 7, 3)
    imp = to_imageplus(zyxc, axes="zyxc")
    assert imageplus_axes(imp) == "czyx"
    assert np.array_equal(from_imageplus(imp), np.moveaxis(zyxc, -1, 0))


def test_xarray_calibration_round_trip(ij):
    import xarray as xr

    from deepimagej.imagej.convert import from_imageplus, to_imageplus

    data = np.random.default_rng(2).random((3, 4, 6, 8), dtype=np.float32)
    da = xr.DataArray(
        data,
        dims=("t", "z", "y", "x"),
        name="cells",
        coords={
            "t": np.arange(3) * 2.5,
            "z": np.arange(4) * 0.8,
            "y": 10 + np.arange(6) * 0.25,
            "x": np.arange(8) * 0.25,
        },
        attrs={"unit": "micron", "time_unit": "s"},
    )
    imp = to_imageplus(da)
    cal = imp.getCalibration()
    assert (float(cal.pixelWidth), float(cal.pixelDepth), float(cal.frameInterval)) == (0.25, 0.8, 2.5)
    assert str(imp.getTitle()) == "cells" and str(cal.getUnit()) == "micron"
    back = from_imageplus(imp, as_xarray=True)
    assert back.dims == ("t", "z", "y", "x") and np.array_equal(back.values, data)
    for axis in "tzyx":
        np.testing.assert_allclose(back.coords[axis].values, da.coords[axis].values, atol=1e-9)
    assert back.attrs["unit"] == "micron" and back.attrs["time_unit"] == "s"


# ------------------------------------------------------------------ macros
def test_macro_returns_image_log_and_results(ij):
    img = np.zeros((32, 32), np.uint8)
    img[4:10, 4:10] = 200
    img[20:28, 15:30] = 200
    res = ij.run_macro(
        'print("threshold " + t); setThreshold(t, 255); run("Convert to Mask");'
        'run("Analyze Particles...", "size=0-Infinity show=[Count Masks] display clear");',
        img,
        args={"t": 100},
    )
    assert "threshold 100" in res.log
    assert res.axes == "yx" and res.image.dtype == np.uint16 and res.image.max() == 2
    assert list(res.results["Area"]) == [36.0, 120.0]


def test_macro_file_and_next_macro_continues_on_result(ij, tmp_path):
    f = tmp_path / "add.ijm"
    f.write_text('run("Add...", "value=5");\n')
    ij.run_macro(f, np.zeros((4, 4), np.uint8))
    assert ij.run_macro(f).image.max() == 10  # the current image carried over


@pytest.mark.parametrize(
    ("macro", "message", "line"),
    [
        ("x = 1;\ny = ;\nz = 2;", "Number or numeric function expected", 2),
        ('a = 1;\nrun("No Such Command");', 'Unrecognized command: "No Such Command"', 2),
        ('close("*");\nrun("Invert");', "There are no images open", 2),
        ('print("x");\nexit("Please open an image first");', "Please open an image first", 2),
    ],
)
def test_macro_errors_carry_message_and_line(ij, macro, message, line):
    with pytest.raises(MacroError) as err:
        ij.run_macro(macro)
    assert message in str(err.value) and err.value.line == line
    assert "java." not in str(err.value) and "\tat " not in str(err.value)


@pytest.mark.parametrize(
    ("macro", "needle"),
    [
        ('waitForUser("Click OK");', "waitForUser"),
        ('n = getNumber("sigma", 2);', "getNumber"),
        ('newImage("a", "8-bit ramp", 32, 32, 1);\nrun("Gaussian Blur...");', "Gaussian Blur"),
        ('newImage("a", "8-bit ramp", 32, 32, 1);\nrun("DeepImageJ Run");', "DeepImageJ Run"),  # its dialog
    ],
)
def test_blocking_dialogs_fail_fast(ij, macro, needle):
    import time

    t0 = time.monotonic()
    with pytest.raises(MacroError, match="waits for a user") as err:
        ij.run_macro(macro)
    assert needle in str(err.value)
    assert time.monotonic() - t0 < 30


def test_wait_for_user_stops_its_macro_and_leaves_no_thread(ij):
    # closing a waitForUser dialog is its OK, and its macro thread waits for a notify that can
    # come before it waits: the guard cancels it as Esc does and wakes it until it has left
    from deepimagej.imagej.java_classes import jc

    for attempt in range(5):
        marker = f"after the dialog {attempt}"
        with pytest.raises(MacroError, match="waits for a user"):
            ij.run_macro(f'waitForUser("Click OK");\nprint("{marker}");', timeout=60)
        assert marker not in ij.log()
    threads = jc.Thread.getAllStackTraces()
    waiting = [
        t.getName()
        for t in threads.keySet()
        if any("WaitForUserDialog.show" in str(f) for f in threads.get(t))
    ]
    assert waiting == []


def test_macro_timeout(ij):
    with pytest.raises(MacroError, match="still running after 1 s and was stopped at line 1"):
        ij.run_macro("while (true) { x = 1; }", timeout=1)
    assert ij.run_macro('print("still alive");').log.strip() == "still alive"


# ------------------------------------------------------------------ DeepImageJ commands
def test_deepimagej_run_errors_are_plain(ij):
    with pytest.raises(BundleError, match="model 'no-such-model' not found") as err:
        ij.run_macro(
            'newImage("a", "8-bit ramp", 32, 32, 1);\nrun("DeepImageJ Run", "model=[no-such-model] format=Tensorflow");'
        )
    assert "line 2" in str(err.value) and "java" not in str(err.value).lower()
    with pytest.raises(InputImageError, match="needs a model"):
        ij.run_macro('run("DeepImageJ Run", "format=Tensorflow");', np.zeros((8, 8), np.uint8))


def _in_macro_thread(function, options: str):
    """``function()`` in a Java thread ImageJ treats as a macro thread whose options are ``options``.

    A GenericDialog created there reads its fields from the options instead of showing, exactly as
    when a macro calls the command with them.
    """
    from jpype import JProxy

    from deepimagej.imagej.java_classes import jc

    out = {}

    def body():
        jc.Macro.setOptions(options)
        try:
            out["value"] = function()
        except Exception as exc:
            out["error"] = exc
        finally:
            jc.Macro.setOptions(None)

    thread = jc.Thread(JProxy(jc.Runnable, {"run": body}), "Run$_deepimagej_test")
    thread.start()
    thread.join(60_000)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_run_and_build_dialogs_give_options_the_commands_read(ij, pancreatic):
    from deepimagej.imagej.commands.build import ask_build_options, build_kwargs
    from deepimagej.imagej.commands.options import RunOptions
    from deepimagej.imagej.commands.run import ask_run_options

    line = _in_macro_thread(
        ask_run_options, "model=unet-pancreatic format=Keras postprocessing=[no postprocessing] tile=256,256"
    )
    opts = RunOptions.parse(line)
    assert (opts.model, opts.weights_format, opts.logging) == ("unet-pancreatic", "keras_hdf5", "normal")
    assert opts.preprocessing is None and opts.postprocessing == [] and opts.tile == {"y": 256, "x": 256}
    defaults = RunOptions.parse(_in_macro_thread(ask_run_options, "model=unet-pancreatic"))
    assert defaults.weights_format is None and defaults.postprocessing is None and defaults.tile == {}
    kw = build_kwargs(_in_macro_thread(ask_build_options, "weights=/w/model.h5 output=/o/bundle halo=32"))
    assert kw["out_dir"] == Path("/o/bundle") and kw["halo"] == 32 and "tile" not in kw and "name" not in kw


def test_wrong_number_of_channels(ij, pancreatic):
    rgb = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(InputImageError) as err:
        ij.run_bundle(
            pancreatic, rgb, "preprocessing=[no preprocessing] postprocessing=[no postprocessing]", axes="yxc"
        )
    assert "channel" in str(err.value).lower() and "java" not in str(err.value).lower()


def _label_stats(labels: np.ndarray, assets: Path) -> tuple[int, float]:
    import tifffile

    ref = tifffile.imread(assets / "unet_pancreatic" / "bundle_2020" / "resultImage.tiff")
    return len(np.unique(labels)) - 1, float(((labels > 0) == (ref > 0)).mean())


@pytest.fixture(scope="session")
def python_labels(ij, pancreatic, assets):
    res = ij.run_macro(PIPELINE, assets / "unet_pancreatic" / "exampleImage.tif")
    return res


def test_pipeline_from_python_matches_the_2020_bundle(python_labels, assets):
    res = python_labels
    n, agreement = _label_stats(res.image, assets)
    assert abs(n - 372) <= 0.03 * 372 and agreement >= 0.97, (n, agreement)
    assert "Preprocessing" in res.log and "Postprocessing" in res.log  # bundle_2020 macros ran in ImageJ
    assert len(res.results) == n and {"Area", "Mean"} <= set(res.results.columns)


@pytest.mark.slow
def test_pipeline_from_the_command_line_is_identical(python_labels, assets, tmp_path):
    import tifffile

    out = tmp_path / "labels.tif"
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepimagej.imagej.cli",
            str(PIPELINE),
            "--image",
            str(assets / "unet_pancreatic" / "exampleImage.tif"),
            "-o",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(tifffile.imread(out), python_labels.image)


def test_cli_macro_error_has_no_java_trace(tmp_path):
    bad = tmp_path / "bad.ijm"
    bad.write_text('print("ok");\nrun("Not A Command");\n')
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    proc = subprocess.run(
        [sys.executable, "-m", "deepimagej.imagej.cli", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert 'Unrecognized command: "Not A Command" (line 2)' in proc.stderr
    assert "\tat " not in proc.stderr + proc.stdout and "Exception" not in proc.stderr


def test_explore_lists_bundles(ij, pancreatic):
    res = ij.run_macro('run("DeepImageJ Explore", "");')
    assert "unet-pancreatic" in res.log or "Pancreatic" in res.log
    res = ij.run_macro('run("DeepImageJ Explore", "model=[unet-pancreatic]");')
    assert "preprocessing.txt" in res.log


def test_run_takes_each_input_by_title_and_shows_one_image_per_output(ij, tmp_path):
    import bundle_factory
    import tifffile

    from deepimagej import predict
    from deepimagej.imagej.convert import to_imageplus
    from deepimagej.imagej.java_classes import jc

    bundle = bundle_factory.two_in_two_out_bundle(tmp_path / "bundle").parent
    raw, aux = np.load(bundle / "raw.npy")[0, 0], np.load(bundle / "aux.npy")[0]
    expected = predict.run(
        bundle, {"raw": raw, "aux": aux}, axes={"raw": "yx", "aux": "cyx"}, weights_format="onnx"
    )
    to_imageplus(raw, title="raw image", axes="yx").show()
    to_imageplus(aux, title="aux image", axes="cyx").show()
    windows = jc.WindowManager
    try:
        with pytest.raises(InputImageError, match="input_raw=\\[title\\] input_aux=\\[title\\]"):
            ij.run_macro(f'selectImage("raw image"); run("DeepImageJ Run", "model=[{bundle}] format=ONNX");')
        with pytest.raises(InputImageError, match="no open image has that title"):
            ij.run_macro(
                f'run("DeepImageJ Run", "model=[{bundle}] format=ONNX input_raw=[raw image] '
                'input_aux=[nothing]");'
            )
        saves = "".join(
            f'selectImage("{name}"); saveAs("Tiff", "{tmp_path / name}.tif");' for name in ("seg", "score")
        )
        ij.run_macro(
            f'run("DeepImageJ Run", "model=[{bundle}] format=ONNX input_raw=[raw image] '
            f'input_aux=[aux image]");' + saves
        )
        for name in ("seg", "score"):
            got = np.squeeze(tifffile.imread(tmp_path / f"{name}.tif"))
            got = np.moveaxis(got, 0, -1) if got.ndim == 3 else got  # ImageJ's TIFF: channels first
            assert got.shape == np.squeeze(expected[name]).shape
            assert np.abs(got - np.squeeze(expected[name])).max() < 1e-4, name
    finally:
        for title in ("raw image", "aux image", "seg", "score"):
            imp = windows.getImage(title)
            if imp is not None:
                imp.changes = False
                imp.close()


def test_input_path_larger_than_the_threshold_is_streamed_to_the_output_folder(
    ij, pancreatic, assets, tmp_path, monkeypatch
):
    import tifffile

    from deepimagej import predict

    image = tifffile.imread(assets / "unet_pancreatic" / "exampleImage.tif")
    source = tmp_path / "big.tif"
    tifffile.imwrite(source, image, tile=(128, 128))
    monkeypatch.setenv("DEEPIMAGEJ_STREAM_ABOVE", "100K")  # this image counts as larger than memory
    out = tmp_path / "results"
    result = ij.run_macro(
        f'run("DeepImageJ Run", "modelPath=[{pancreatic}] inputPath=[{source}] '
        f'outputFolder=[{out}] displayOutput=null");'
    )
    written = list(out.glob("big_*.tif"))
    assert len(written) == 1, list(out.iterdir())
    assert "streamed block by block" in result.log
    expected = predict.run(pancreatic, image)
    assert np.array_equal(np.squeeze(tifffile.imread(written[0])), np.squeeze(expected))
    with pytest.raises(InputImageError, match="ImageJ macros cannot run"):
        ij.run_macro(
            f'run("DeepImageJ Run", "modelPath=[{pancreatic}] inputPath=[{source}] outputFolder=[{out}] '
            'preprocessing=[preprocessing.txt]");'
        )
