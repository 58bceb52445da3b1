"""The command line: run / info / list / build, output files and error messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from deepimagej.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_writes_tiff_with_pixel_size(pancreatic_bundle, assets, tmp_path):
    src = tmp_path / "in.tif"
    image = tifffile.imread(assets / "unet_pancreatic" / "exampleImage.tif")[:200, :240]
    tifffile.imwrite(src, image, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "micron"})
    out = tmp_path / "res" / "out.tif"
    result = invoke("run", pancreatic_bundle.root, src, "-o", out, "--tile", "128,128")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out) as tif:
        data = tif.asarray()
        assert data.shape == image.shape
        assert tif.imagej_metadata["unit"] == "micron"
        num, den = tif.pages.first.tags["XResolution"].value
        assert abs(den / num - 0.65) < 1e-4
    assert set(np.unique(data)) <= {0, 1}
    assert not list(out.parent.glob(".*part"))  # atomic write leaves no temp file


def test_info_lists_tensors_and_layers(pancreatic_bundle):
    result = invoke("info", pancreatic_bundle.root)
    assert result.exit_code == 0, result.output
    assert "axes byxc" in result.output
    assert "scale_range" in result.output and "binarize" in result.output
    assert "Conv2D" in result.output or "Conv2D" in result.output.replace(" ", "")


def test_list_shows_broken_bundles(assets, tmp_path):
    shutil.copytree(assets / "unet_pancreatic", tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.xml").write_text("<Model><ModelInformation>", encoding="utf-8")
    result = invoke("list", tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert any(line.startswith("good:") and "Pancreatic" in line for line in lines)
    assert any(line.startswith("bad:") and "BROKEN" in line for line in lines)


def test_missing_input_is_one_line_error(pancreatic_bundle, tmp_path):
    result = invoke("run", pancreatic_bundle.root, tmp_path / "nope.tif", "-o", tmp_path / "o.tif")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "nope.tif" in result.output and "Traceback" not in result.output


def test_bad_tile_is_one_line_error(pancreatic_bundle, assets, tmp_path):
    result = invoke(
        "run",
        pancreatic_bundle.root,
        assets / "unet_pancreatic" / "exampleImage.tif",
        "-o",
        tmp_path / "o.tif",
        "--tile",
        "abc",
    )
    assert result.exit_code == 2
    assert "--tile" in result.output


def test_test_command_fails_on_mismatch(pancreatic_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(pancreatic_bundle.root, bundle)
    ref = np.load(bundle / "resultImage.npy")
    np.save(
        bundle / "resultImage.npy", 1 - ref
    )  # a wrong reference must fail (0.4 rdf: no test-tensor sha256)
    result = invoke("test", bundle, "--weights", "tensorflow_saved_model_bundle")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


def test_build_from_h5_with_deepimagej_config(assets, tmp_path):
    """`deepimagej build` with a DeepImageJ config.xml template: macros copied, example result computed."""
    src = assets / "unet_pancreatic"
    out = tmp_path / "built"
    example = tmp_path / "example.tif"
    tifffile.imwrite(example, tifffile.imread(src / "exampleImage.tif")[:160, :200])
    result = invoke(
        "build",
        src / "unet_pancreatic_cell_segmentation.h5",
        "--out",
        out,
        "--config",
        src / "config.xml",
        "--example",
        example,
    )
    assert result.exit_code == 0, result.output
    for name in (
        "config.xml",
        "rdf.yaml",
        "tensorflow_saved_model_bundle.zip",
        "preprocessing.txt",
        "postprocessing.txt",
        "exampleImage.tif",
        "resultImage.tif",
    ):
        assert (out / name).is_file(), name
    from deepimagej.bundle import load_bundle

    spec = load_bundle(out, prefer="deepimagej")
    assert spec.deepimagej_tiling.padding == 47 and spec.deepimagej_tiling.minimum_size == 8
    assert [p.name for p in spec.preprocessing_macros] == ["preprocessing.txt"]
    # the config template has macros only, so the reference result is the raw model output
    assert invoke("test", out, "--weights", "keras_hdf5").exit_code == 0


def test_build_errors_are_one_line(tmp_path):
    result = invoke("build", tmp_path / "missing.h5", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "missing.h5" in result.output and "Traceback" not in result.output
    (tmp_path / "exists").mkdir()
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"junk")
    result = invoke("build", weights, "--out", tmp_path / "exists")
    assert result.exit_code == 2 and "already exists" in result.output


def test_run_on_a_folder_runs_every_image_and_reports_the_bad_one(
    pancreatic_bundle, assets, tmp_path, monkeypatch
):
    from deepimagej import engines, predict

    image = tifffile.imread(assets / "unet_pancreatic" / "exampleImage.tif")
    folder = tmp_path / "images"
    folder.mkdir()
    crops = {"a": image[:160, :200], "b": image[100:260, 300:460], "c": image[300:480, 100:300]}
    for name, crop in crops.items():
        tifffile.imwrite(folder / f"{name}.tif", crop)
    (folder / "d.tif").write_bytes(b"not a tiff")
    (folder / "notes.txt").write_text("not an image")
    loads = []
    create = engines._create
    monkeypatch.setattr(engines, "_create", lambda *args: loads.append(args) or create(*args))
    engines.clear_cache()
    out = tmp_path / "results"
    result = invoke("run", pancreatic_bundle.root, folder, "-o", out)
    assert result.exit_code == 1, result.output
    assert "d.tif" in result.output and "1 of 4 images failed" in result.output
    assert "Traceback" not in result.output
    assert len(loads) == 1, "the model is loaded once for the whole folder"
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".tif")
    assert [w[:2] for w in written] == ["a_", "b_", "c_"], written
    import csv

    with open(out / "summary.csv", newline="") as fh:  # the summary table, also printed
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["status"]) for r in rows] == [
        ("a.tif", "ok"),
        ("b.tif", "ok"),
        ("c.tif", "ok"),
        ("d.tif", "failed"),
    ]
    assert [r["shape"] for r in rows[:3]] == ["160x200", "160x160", "180x200"] and rows[3]["error"]
    assert all(float(r["seconds"]) > 0 for r in rows[:3]) and "summary: " in result.output
    for name, crop in crops.items():
        got = tifffile.imread(next(out.glob(f"{name}_*.tif")))
        assert np.array_equal(np.squeeze(got), np.squeeze(predict.run(pancreatic_bundle, crop)))
    refused = invoke("run", pancreatic_bundle.root, folder, "-o", tmp_path / "one.tif")
    assert refused.exit_code == 2 and "give -o OUTPUT_FOLDER" in refused.output


def test_install_a_bundle_zip_then_list_it(assets, tmp_path):
    import zipfile

    source = assets / "unet_pancreatic"
    archive = tmp_path / "unet-pancreatic.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.iterdir()):
            if path.is_file():
                zf.write(path, f"unet-pancreatic/{path.name}")
    models = tmp_path / "models"
    result = invoke("install", archive, "--models", models)
    assert result.exit_code == 0, result.output
    assert (models / "unet-pancreatic" / "rdf.yaml").is_file()
    assert "name        :" in result.output  # the bundle's summary, then its own test on its reference images
    assert "test     : PASS" in result.output, result.output
    listed = invoke("list", models)
    assert "unet-pancreatic" in listed.output
    again = invoke("install", archive, "--models", models)
    assert again.exit_code == 2 and "already installed" in again.output
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("notes/readme.txt", "no descriptor")
    refused = invoke("install", broken, "--models", models)
    assert refused.exit_code == 2 and "not a model bundle" in refused.output
    assert sorted(p.name for p in models.iterdir()) == ["unet-pancreatic"]  # nothing left behind
    for name, entry in (("up.zip", "../evil.txt"), ("abs.zip", "/tmp/evil.txt")):
        bad = tmp_path / name
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("model/rdf.yaml", "format_version: 0.4.10")
            zf.writestr(entry, "outside")
        refused = invoke("install", bad, "--models", models)
        assert refused.exit_code == 2 and "outside" in refused.output, refused.output
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("model/rdf.yaml")
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    refused = invoke("install", link, "--models", models)
    assert refused.exit_code == 2 and "symbolic link" in refused.output
    assert sorted(p.name for p in models.iterdir()) == ["unet-pancreatic"]
    assert not (tmp_path / "evil.txt").exists() and not (models.parent / "evil.txt").exists()


def test_no_tensorflow_log_lines_in_the_commands_output(pancreatic_bundle, assets, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "python")}
    image = assets / "unet_pancreatic" / "exampleImage.tif"
    for args in (
        ["info", pancreatic_bundle.root],
        ["run", pancreatic_bundle.root, image, "-o", tmp_path / "o.tif"],
        ["test", pancreatic_bundle.root],
        ["demo", "--out", tmp_path / "demo"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "deepimagej", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        text = proc.stdout + proc.stderr
        for needle in ("absl::InitializeLog", "oneDNN", "I0000", "tensorflow/", "cuda"):
            assert needle not in text, f"{args[0]}: {needle!r} in\n{text}"


def test_a_bundle_whose_post_processing_is_a_macro_runs_it_in_imagej(tmp_path):
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    bundle = repo / "bundles" / "isbi2012-em-unet"
    if not (bundle / "postprocessing_instances.ijm").is_file():
        pytest.skip("bundles/isbi2012-em-unet not built")
    env = {**os.environ, "PYTHONPATH": str(repo / "python")}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "deepimagej", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
            cwd=repo,
        )

    # as the README and the issue type it: the bundle as a folder relative to the current one
    run = cli("run", "bundles/isbi2012-em-unet", bundle / "exampleImage.tif", "-o", tmp_path / "labels.tif")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "running it in ImageJ" in run.stdout
    macro = cli(
        "macro",
        bundle / "postprocessing_instances.ijm",
        "-i",
        bundle / "resultImage.tif",
        "-o",
        tmp_path / "macro.tif",
        "--quiet",
    )
    assert macro.returncode == 0, macro.stdout + macro.stderr
    labels, expected = tifffile.imread(tmp_path / "labels.tif"), tifffile.imread(tmp_path / "macro.tif")
    assert labels.max() > 10 and np.array_equal(labels, expected)
