"""deepimagej.imagej parts that need no Java: option parsing, macro scanning, lookups, start-up errors."""

from __future__ import annotations

import pytest

from deepimagej.errors import BundleError, ImageJError, InputImageError
from deepimagej.imagej.commands.options import RunOptions, parse_options, split_list
from deepimagej.imagej.macro import interactive_calls


def test_parse_options_brackets_and_flags():
    opts = parse_options(
        "model=[U-Net Pancreatic] format=Tensorflow preprocessing=[[a.ijm, b.ijm]] flag tile=256,256,1"
    )
    assert opts == {
        "model": "U-Net Pancreatic",
        "format": "Tensorflow",
        "preprocessing": "[a.ijm, b.ijm]",
        "flag": "",
        "tile": "256,256,1",
    }
    assert split_list(opts["preprocessing"]) == ["a.ijm", "b.ijm"]


def test_run_options_deepimagej_1x_syntax():
    o = RunOptions.parse(
        "model=stardist_topix2pix format=Tensorflow preprocessing=[per_sample_scale_range.ijm] "
        "postprocessing=[no postprocessing] axes=Y,X,C tile=1216,1216,1 logging=Normal"
    )
    assert o.model == "stardist_topix2pix" and o.weights_format == "tensorflow_saved_model_bundle"
    assert o.preprocessing == ["per_sample_scale_range.ijm"] and o.postprocessing == []
    assert o.axes == "yxc" and o.tile == {"y": 1216, "x": 1216}


def test_run_options_3x_syntax():
    o = RunOptions.parse("modelPath=/m/unet inputPath=/data/in outputFolder=/data/out displayOutput=null")
    assert (o.model, o.input_path, o.output_folder, o.display_output) == (
        "/m/unet",
        "/data/in",
        "/data/out",
        False,
    )
    assert o.preprocessing is None  # the bundle's own macros


def test_run_options_errors_are_plain():
    with pytest.raises(InputImageError, match="needs a model"):
        RunOptions.parse("format=Tensorflow")
    with pytest.raises(InputImageError, match="unknown format"):
        RunOptions.parse("model=x format=Caffe")
    with pytest.raises(InputImageError, match="tile="):
        RunOptions.parse("model=x axes=Y,X tile=1,2,3")


def test_interactive_calls_found_outside_comments_and_strings():
    text = 'x = getNumber("sigma", 2);\n// waitForUser("no")\ns = "waitForUser(";\ndir = getDirectory("home");\nd = getDirectory("Choose");'
    found = [(line, fn) for line, fn, _ in interactive_calls(text)]
    assert found == [(1, "getNumber"), (5, "getDirectory")]


def test_model_not_found_lists_installed(tmp_path, monkeypatch):
    from deepimagej import paths
    from deepimagej.imagej import models

    monkeypatch.setenv("DEEPIMAGEJ_MODELS", str(tmp_path))
    monkeypatch.setattr(paths, "REPO_BUNDLES", tmp_path / "none")
    monkeypatch.setattr(paths, "USER_MODELS", tmp_path / "none")
    with pytest.raises(BundleError, match="model 'nope' not found.*DEEPIMAGEJ_MODELS"):
        models.find_model("nope")


def test_missing_ij_jar_is_a_clear_error(monkeypatch, tmp_path):
    from deepimagej.imagej import jvm

    monkeypatch.setenv("DEEPIMAGEJ_IJ_JAR", str(tmp_path / "ij.jar"))
    monkeypatch.delenv("FIJI_HOME", raising=False)
    monkeypatch.setattr(jvm, "DEBIAN_IJ_JAR", tmp_path / "missing.jar")
    with pytest.raises(ImageJError, match="ij.jar.*not found.*libij-java"):
        jvm.find_ij_jar()


def test_no_display_and_no_xvfb_is_a_clear_error(monkeypatch):
    from deepimagej.imagej import xvfb

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(xvfb, "_running", None)
    monkeypatch.setattr(xvfb.shutil, "which", lambda name: None)
    with pytest.raises(ImageJError, match="no display and no Xvfb.*apt-get install xvfb"):
        xvfb.ensure_display(None)
