"""The ImageJ post-processing macro shipped in U-Net bundles gives the same labels as Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "isbi2012-em-unet"

pytestmark = pytest.mark.imagej


@pytest.mark.skipif(not (BUNDLE / "resultImage.tif").is_file(), reason="bundles/isbi2012-em-unet not built")
def test_instance_macro_matches_python_to_instances(tmp_path):
    pytest.importorskip("jpype")
    import tifffile

    from deepimagej.unet.metrics import object_iou
    from deepimagej.unet.postprocess import to_instances

    out = tmp_path / "labels.tif"
    # the macro command ends its process (os._exit, the JVM with it): run it as the user does
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepimagej",
            "macro",
            str(BUNDLE / "postprocessing_instances.ijm"),
            "-i",
            str(BUNDLE / "resultImage.tif"),
            "-o",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "python")},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    from_imagej = tifffile.imread(out)
    from_python = to_instances(np.load(BUNDLE / "resultImage.npy")[0])
    assert from_imagej.shape == from_python.shape
    assert from_imagej.max() == from_python.max() > 10
    assert object_iou(from_imagej, from_python) == pytest.approx(1.0)


DETECTION = REPO / "bundles" / "isbi2012-em-detection"


@pytest.mark.skipif(
    not (DETECTION / "resultImage.tif").is_file(), reason="bundles/isbi2012-em-detection not built"
)
def test_detection_macro_finds_the_points_python_finds(ij):
    """The shipped detection macro (run in ImageJ) and to_detections: the same points, the same settings.

    The bundle has a cell head: its solid cells (ImageJ's Analyze Particles + Solidity in the
    macro, :func:`solid_cells` in Python) replace the peaks inside them by their centroids.
    """
    import tifffile

    from deepimagej.unet.metrics import detection_f1
    from deepimagej.unet.postprocess import detection_settings, solid_cells, to_detections

    settings = detection_settings(DETECTION)
    assert settings.get("cell_threshold") is not None
    macro = DETECTION / "postprocessing_detection.ijm"
    assert f"threshold = {float(settings['threshold'])};" in macro.read_text()
    assert f"cell_threshold = {float(settings['cell_threshold'])};" in macro.read_text()
    result = ij.run_macro(macro, tifffile.imread(DETECTION / "resultImage.tif"), axes="cyx")
    table = result.results
    from_imagej = table[["Y", "X"]].to_numpy(float)
    prob = np.load(DETECTION / "resultImage.npy")[0]
    from_python = to_detections(prob, **settings)
    assert len(from_python) > 20
    assert f"detection: {len(from_imagej)} objects" in result.log
    # ImageJ's Gaussian differs from scipy's in the 4th decimal: a near-tie may flip, nothing more
    agreement = detection_f1(from_imagej, from_python, d_match=1.5)
    assert agreement["f1"] >= 0.97, agreement
    peaks = table[table["Source"] == "peak"]
    assert peaks["Probability"].min() > settings["threshold"]
    # the cells: the same ones, the same centroids (exact: no smoothing involved)
    _, centroids = solid_cells(
        prob[..., 3], settings["cell_threshold"], settings["min_cell_area"], settings["min_solidity"]
    )
    cells = table[table["Source"] == "cell"]
    assert len(cells) == len(centroids) >= 2
    np.testing.assert_allclose(cells[["Y", "X"]].to_numpy(float), centroids, atol=1e-3)
    assert cells["Probability"].min() > settings["cell_threshold"]


def test_class_map_macro_equals_python_to_classes(ij):
    """The macro shipped with bundles of several classes: the class of highest probability, as to_classes."""
    from deepimagej.unet.postprocess import shipped_macro, to_classes

    rng = np.random.default_rng(4)
    scores = rng.normal(size=(3, 40, 52)).astype(np.float32)
    scores[1, 5:20, 5:20] += 3
    scores[2, 25:35, 30:50] += 3
    prob = np.exp(scores) / np.exp(scores).sum(0)
    result = ij.run_macro(shipped_macro("classes"), prob.astype(np.float32), axes="cyx")
    expected = to_classes(np.moveaxis(prob, 0, -1))
    assert result.image.dtype == np.uint8 and set(np.unique(expected)) == {0, 1, 2}
    np.testing.assert_array_equal(result.image, expected)
