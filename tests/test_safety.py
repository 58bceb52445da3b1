"""Safe input and output: zip checks, descriptor limits and paths, image limits, atomic checked writes."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepimagej.archive import ZipLimits, check_zip, extract_zip, read_member
from deepimagej.bundle.descriptor_yaml import load_yaml
from deepimagej.bundle.files import local_path
from deepimagej.errors import BundleError, InputImageError, OutputError
from deepimagej.io import check_declared_size, check_pixels, load_npy, read_image, write_image
from deepimagej.outputs import atomic_file, check_output_path, check_replaceable_folder, image_format


def one_line(exc: BaseException, *needles: str) -> str:
    text = str(exc)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


# --------------------------------------------------------------------------- zips


def _zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "C:/evil", "..\\evil.txt"])
def test_zip_entries_outside_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "x.zip", {"ok.txt": b"1", name: b"2"})
    with pytest.raises(BundleError) as info:
        extract_zip(archive, tmp_path / "out")
    one_line(info.value, "outside the bundle folder")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip"]  # no temporary folder left


def test_zip_links_and_duplicates_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(BundleError) as info:
        check_zip(tmp_path / "link.zip")
    one_line(info.value, "symbolic link")
    with zipfile.ZipFile(tmp_path / "dup.zip", "w") as zf:
        zf.writestr("a.txt", "1")
        zf.writestr("A.txt", "2")
    with pytest.raises(BundleError, match="twice"):
        check_zip(tmp_path / "dup.zip")


def test_zip_bomb_is_refused_from_its_directory(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros": bytes(200 * 2**20)}, zipfile.ZIP_DEFLATED)
    assert archive.stat().st_size < 2**20
    start = time.perf_counter()
    with pytest.raises(BundleError) as info:
        extract_zip(archive, tmp_path / "out")
    assert time.perf_counter() - start < 1.0  # decided from the directory, nothing decompressed
    one_line(info.value, "zip bomb")
    assert not (tmp_path / "out").exists()


def test_zip_limits_and_member_reading(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "m.zip", {"model/saved_model.pb": b"x" * 1000, "model/other": b"y"})
    assert read_member(archive, "model/saved_model.pb", 2000) == b"x" * 1000
    with pytest.raises(BundleError, match="more than"):
        read_member(archive, "model/saved_model.pb", 10)
    with pytest.raises(BundleError, match="no entry"):
        read_member(archive, "nope", 10)
    with pytest.raises(BundleError, match="entries"):
        check_zip(archive, ZipLimits(max_entries=1))
    target = extract_zip(archive, tmp_path / "out")
    assert (target / "model" / "saved_model.pb").read_bytes() == b"x" * 1000
    extract_zip(_zip(tmp_path / "n.zip", {"new": b"1"}), target)  # kept: another copy was there first
    assert not (target / "new").exists()
    extract_zip(tmp_path / "n.zip", target, replace=True)
    assert sorted(p.name for p in target.iterdir()) == ["new"]


# --------------------------------------------------------------------------- descriptors


def test_billion_laughs_yaml_is_refused_in_milliseconds(tmp_path: Path) -> None:
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    (tmp_path / "rdf.yaml").write_text(text, encoding="utf-8")
    assert len(text) < 3000
    start = time.perf_counter()
    with pytest.raises(BundleError) as info:
        load_yaml(tmp_path / "rdf.yaml")
    assert time.perf_counter() - start < 1.0
    one_line(info.value, "billion laughs")


def test_deep_and_recursive_yaml_are_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 50000 + "]" * 50000, encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_yaml(tmp_path / "deep.yaml")
    one_line(info.value, "nested more than")
    (tmp_path / "loop.yaml").write_text("a: &x [1, *x]\n", encoding="utf-8")
    with pytest.raises(BundleError, match="refers to the node"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "fine.yaml").write_text("a: &x [1, 2]\nb: *x\nc: *x\n", encoding="utf-8")
    assert load_yaml(tmp_path / "fine.yaml") == {
        "a": [1, 2],
        "b": [1, 2],
        "c": [1, 2],
    }  # plain aliases are fine


@pytest.mark.parametrize(
    "source", ["/etc/passwd", "../x.h5", "a/../../x.h5", "~/.ssh/id_rsa", "C:\\x.h5", "..\\x"]
)
def test_descriptor_paths_are_confined(tmp_path: Path, source: str) -> None:
    with pytest.raises(BundleError) as info:
        local_path(tmp_path, source, descriptor=tmp_path / "rdf.yaml", field="weights.onnx.source")
    one_line(info.value, "rdf.yaml", "weights.onnx.source", "outside the bundle folder")


def test_descriptor_paths_inside_are_kept(tmp_path: Path) -> None:
    assert local_path(tmp_path, "./w/../weights.onnx") == tmp_path / "weights.onnx"
    assert local_path(tmp_path, "sub/model.pt") == tmp_path / "sub" / "model.pt"
    assert local_path(tmp_path, "https://zenodo.org/x.onnx") is None


# --------------------------------------------------------------------------- images in


def test_pickled_npy_is_never_unpickled(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputImageError) as info:
        load_npy(tmp_path / "p.npy")
    one_line(info.value, "pickled")


def test_declared_sizes_are_checked_before_allocation(tmp_path: Path) -> None:
    with pytest.raises(InputImageError) as info:
        check_declared_size(tmp_path / "x.tif", (100_000, 100_000), np.dtype("uint16"), 8000)
    one_line(info.value, "100000x100000", "damaged")
    with pytest.raises(InputImageError, match="more than the"):
        check_declared_size(tmp_path / "x.npy", (2**22, 2**22), np.dtype("float64"), 2**50)
    check_declared_size(tmp_path / "x.tif", (4096, 4096), np.dtype("uint8"), 20_000)  # compresses well: fine


def test_check_pixels(tmp_path: Path) -> None:
    image = np.ones((10, 10), np.float32)
    image[0, :3] = np.nan
    image[1, 0] = np.inf
    with pytest.raises(InputImageError) as info:
        check_pixels(image)
    one_line(info.value, "3 NaN and 1 infinite", "--nan=zero")
    clean, replaced = check_pixels(image, "zero")
    assert replaced == 4 and np.all(np.isfinite(clean)) and clean[0, 0] == 0 and np.isnan(image[0, 0])
    clean, _ = check_pixels(image, "mean")
    assert clean[0, 0] == pytest.approx(1.0)
    with pytest.raises(InputImageError, match="complex"):
        check_pixels(np.ones(3, np.complex64))
    image8 = np.ones((2, 2), np.uint8)
    same, replaced = check_pixels(image8)
    assert replaced == 0 and same is image8


# --------------------------------------------------------------------------- outputs


def test_format_follows_the_extension(tmp_path: Path) -> None:
    assert [image_format(tmp_path / n) for n in ("a.tif", "a.TIFF", "a.png", "a.npy")] == [
        "tiff",
        "tiff",
        "png",
        "npy",
    ]
    for name, needle in (("a.jpg", ".jpg"), ("a.ome.zarr", "OME-Zarr"), ("a", "no extension")):
        with pytest.raises(OutputError) as info:
            image_format(tmp_path / name)
        one_line(info.value, needle)
    mask = np.zeros((20, 30), np.float32)
    mask[5:10, 5:10] = 3
    write_image(tmp_path / "mask.png", mask, axes="yx")
    assert (tmp_path / "mask.png").read_bytes()[:4] == b"\x89PNG"
    back = read_image(tmp_path / "mask.png").array
    assert back.dtype == np.uint8 and np.array_equal(back, mask)
    write_image(tmp_path / "big.png", mask * 1000, axes="yx")
    assert read_image(tmp_path / "big.png").array.max() == 3000
    with pytest.raises(InputImageError, match="PNG holds"):
        write_image(tmp_path / "prob.png", mask / 7, axes="yx")
    assert not (tmp_path / "prob.png").exists()


def test_output_checks(tmp_path: Path) -> None:
    image = tmp_path / "in.tif"
    write_image(image, np.zeros((4, 4), np.uint8))
    os.link(image, tmp_path / "hard.tif")
    for out in (image, tmp_path / "x" / ".." / "in.tif", tmp_path / "hard.tif"):
        (tmp_path / "x").mkdir(exist_ok=True)
        with pytest.raises(OutputError) as info:
            check_output_path(out, inputs=[image])
        one_line(info.value, "input of this run")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="is a file"):
        check_output_path(tmp_path / "file" / "deeper" / "o.tif")
    with pytest.raises(OutputError, match="shorter name"):
        check_output_path(tmp_path / ("n" * 300 + ".tif"))
    assert check_output_path(tmp_path / "new" / "o.tif", inputs=[image]) == tmp_path / "new" / "o.tif"


def test_atomic_file_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.npy"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]
    with atomic_file(tmp_path / ("z" * 250 + ".tif")) as tmp:  # the temporary name stays short enough
        tmp.write_bytes(b"ok")
    assert (tmp_path / ("z" * 250 + ".tif")).read_bytes() == b"ok"


def test_replacing_a_folder_never_deletes_inputs_or_user_files(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "model.h5").write_bytes(b"weights")
    with pytest.raises(OutputError, match="holds an input"):
        check_replaceable_folder(tmp_path / "bundle", inputs=[tmp_path / "bundle" / "model.h5"])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.txt").write_text("years", encoding="utf-8")
    with pytest.raises(OutputError, match="not a previous result"):
        check_replaceable_folder(tmp_path / "docs", markers=("rdf.yaml",))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "rdf.yaml").write_text("x", encoding="utf-8")
    check_replaceable_folder(tmp_path / "old", markers=("rdf.yaml",))  # a previous result: may be replaced
