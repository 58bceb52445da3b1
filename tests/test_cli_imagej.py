"""``deepimagej run`` of a bundle whose post-processing is an ImageJ macro: a folder in batch, and --no-imagej.

The command runs in a process of its own (it ends the Java VM with it, as ``deepimagej macro``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "isbi2012-em-unet"


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepimagej", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "python")},
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def bundle() -> Path:
    if not (BUNDLE / "postprocessing_instances.ijm").is_file():
        pytest.skip("bundles/isbi2012-em-unet not built")
    return BUNDLE


def test_a_folder_runs_through_the_bundles_macro_with_a_summary(bundle, tmp_path):
    image = tifffile.imread(bundle / "exampleImage.tif")
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image)
    tifffile.imwrite(folder / "b.tif", np.ascontiguousarray(image[:, ::-1]))
    (folder / "c.tif").write_bytes(b"not a tiff")
    out = tmp_path / "labels"
    run = _cli("run", bundle, folder, "-o", out)
    assert run.returncode == 1, run.stdout + run.stderr  # one image failed, the others ran
    assert "running it in ImageJ" in run.stdout and "Traceback" not in run.stderr
    assert "error: c.tif" in run.stderr and "1 of 3 images failed" in run.stderr
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["status"]) for r in rows] == [("a.tif", "ok"), ("b.tif", "ok"), ("c.tif", "failed")]
    assert rows[0]["shape"] == "x".join(map(str, image.shape))
    # each result is the one of a single run: the instance labels of the bundle's own macro
    single = _cli("run", bundle, folder / "b.tif", "-o", tmp_path / "b.tif")
    assert single.returncode == 0, single.stdout + single.stderr
    labels = {p.name[0]: tifffile.imread(p) for p in out.glob("*.tif")}
    assert sorted(labels) == ["a", "b"] and labels["a"].max() > 10
    assert np.array_equal(labels["b"], tifffile.imread(tmp_path / "b.tif"))


def test_no_imagej_refuses_the_macro_bundle(bundle, tmp_path):
    refused = _cli("run", bundle, bundle / "exampleImage.tif", "-o", tmp_path / "o.tif", "--no-imagej")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "post-processing of this bundle is an ImageJ macro" in refused.stderr
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "o.tif").exists()


def test_test_compares_after_the_bundles_macro_when_the_reference_is_its_result(bundle, tmp_path):
    """DeepImageJ's resultImage is often the post-processed result: `deepimagej test` runs the macro for it."""
    import shutil

    copy = tmp_path / "isbi-labels"
    shutil.copytree(bundle, copy)
    example = np.load(copy / "exampleImage.npy")
    tifffile.imwrite(tmp_path / "example.tif", np.squeeze(example))
    run = _cli("run", copy, tmp_path / "example.tif", "-o", tmp_path / "labels.tif")
    assert run.returncode == 0, run.stdout + run.stderr
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.max() > 10 and np.load(copy / "resultImage.npy").ndim == 4  # byxc: 2 probability channels
    np.save(
        copy / "resultImage.npy", labels[np.newaxis, ..., np.newaxis]
    )  # the reference: the macro's labels
    passed = _cli("test", copy)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "after the bundle's ImageJ macros postprocessing_instances.ijm" in passed.stdout
    assert "100.0000% of pixels equal" in passed.stdout and "FAIL" not in passed.stdout
    refused = _cli("test", copy, "--no-imagej")
    assert refused.returncode == 1 and refused.stdout.startswith("FAIL"), refused.stdout + refused.stderr
    unchanged = _cli("test", bundle)  # the shipped bundle's reference is the model's output: no macro run
    assert unchanged.returncode == 0 and "ImageJ macros not run" in unchanged.stdout, unchanged.stdout
