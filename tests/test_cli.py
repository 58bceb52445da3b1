"""The command line: run / info / list / build, output files and error messages."""

from __future__ import annotations

import shutil

import numpy as np
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
    result = invoke("run", pancreatic_bundle.root, assets / "unet_pancreatic" / "exampleImage.tif", "-o",
                    tmp_path / "o.tif", "--tile", "abc")
    assert result.exit_code == 2
    assert "--tile" in result.output


def test_test_command_fails_on_mismatch(pancreatic_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(pancreatic_bundle.root, bundle)
    ref = np.load(bundle / "resultImage.npy")
    np.save(bundle / "resultImage.npy", 1 - ref)  # a wrong reference must fail (0.4 rdf: no test-tensor sha256)
    result = invoke("test", bundle, "--weights", "tensorflow_saved_model_bundle")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


def test_build_from_h5_with_deepimagej_config(assets, tmp_path):
    """`deepimagej build` with a DeepImageJ config.xml template: macros copied, example result computed."""
    src = assets / "unet_pancreatic"
    out = tmp_path / "built"
    example = tmp_path / "example.tif"
    tifffile.imwrite(example, tifffile.imread(src / "exampleImage.tif")[:160, :200])
    result = invoke("build", src / "unet_pancreatic_cell_segmentation.h5", "--out", out, "--config", src / "config.xml",
                    "--example", example)
    assert result.exit_code == 0, result.output
    for name in ("config.xml", "rdf.yaml", "tensorflow_saved_model_bundle.zip", "preprocessing.txt",
                 "postprocessing.txt", "exampleImage.tif", "resultImage.tif"):
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


def test_run_on_a_folder_runs_every_image_and_reports_the_bad_one(pancreatic_bundle, assets, tmp_path):
    from deepimagej import predict

    image = tifffile.imread(assets / "unet_pancreatic" / "exampleImage.tif")
    folder = tmp_path / "images"
    folder.mkdir()
    crops = {"a": image[:160, :200], "b": image[100:260, 300:460]}
    for name, crop in crops.items():
        tifffile.imwrite(folder / f"{name}.tif", crop)
    (folder / "c.tif").write_bytes(b"not a tiff")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "results"
    result = invoke("run", pancreatic_bundle.root, folder, "-o", out)
    assert result.exit_code == 2, result.output
    assert "c.tif" in result.output and "1 of 3 images failed" in result.output
    assert "Traceback" not in result.output
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 2 and written[0].startswith("a_") and written[1].startswith("b_"), written
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
