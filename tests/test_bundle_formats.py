"""One place for each fact (issue 16): weight-format names, descriptor names, file checksums, image axes.

The front doors that take a weight-format name -- a ``weights:`` key of a real rdf (the
bioimage.io reader), ``weights_format=`` of the Python API / CLI (:func:`check_bundle`) and
DeepImageJ's ``format=`` of an ImageJ macro (:class:`RunOptions`) -- must resolve every name to
the same format. The bundles are copies of real ones from ../shared/assets with one weights
key renamed (the other files linked, never modified).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from deepimagej.audit.trust import content_hash
from deepimagej.bundle import (
    DESCRIPTOR_NAMES,
    RDF_SUFFIX,
    find_descriptors,
    is_bundle_folder,
    is_descriptor_name,
    load_bundle,
)
from deepimagej.bundle.axes import image_axes
from deepimagej.bundle.formats import (
    AMBIGUOUS_IN_DESCRIPTORS,
    FORMAT_ALIASES,
    RUNNABLE_WEIGHT_FORMATS,
    WEIGHT_FORMATS,
    normalize_format,
    tensorflow_signature,
    tensorflow_tag,
)
from deepimagej.bundle.validate import check_bundle
from deepimagej.checksums import sha256_of
from deepimagej.describe import find_bundles
from deepimagej.errors import BundleError, InputImageError
from deepimagej.imagej.commands.options import FORMAT_CHOICES, RunOptions
from deepimagej.outputs import replace_path

#: A real bundle holding a file of each runnable format's family: (folder, descriptor, key).
SOURCES = {
    "torchscript": ("bioimageio_unet2d_nuclei_broad", "v0_4_9.bioimageio.yaml", "torchscript"),
    "onnx": ("bioimageio_unet2d_nuclei_broad", "v0_4_9.bioimageio.yaml", "onnx"),
    "keras_hdf5": ("unet_pancreatic", "rdf.yaml", "keras_hdf5"),
    "tensorflow_saved_model_bundle": ("unet_pancreatic", "rdf.yaml", "tensorflow_saved_model_bundle"),
}


def _copy_with_key(assets: Path, tmp_path: Path, fmt: str, new_key: str) -> Path:
    """A copy of the real bundle holding ``fmt`` whose weights key ``fmt`` is spelled ``new_key``."""
    folder, descriptor, key = SOURCES[fmt]
    src = assets / folder
    out = tmp_path / f"{folder}-{new_key}"
    out.mkdir()
    for item in src.iterdir():
        if item.name != descriptor:
            os.symlink(item, out / item.name)
    text = (src / descriptor).read_text(encoding="utf-8")
    renamed, n = re.subn(rf"^(\s+){key}:\s*$", rf"\g<1>{new_key}:", text, flags=re.MULTILINE)
    assert n == 1, f"{descriptor}: weights key {key} not found once"
    (out / descriptor).write_text(renamed, encoding="utf-8")
    return out / descriptor


def _present(spec_path: Path, fmt: str) -> None:
    """The TensorFlow SavedModel of the pancreatic U-Net is not in the assets: a stand-in file lets
    the checks before a run (which look for the file, not into it) choose it."""
    spec = load_bundle(spec_path)
    path = spec.weights[fmt].path
    if path is not None and not path.exists():
        path.write_bytes(b"stand-in: only its presence is checked here")


NAMES = sorted(
    (alias, target)
    for alias, target in {**FORMAT_ALIASES, **{f: f for f in WEIGHT_FORMATS}}.items()
    if alias not in AMBIGUOUS_IN_DESCRIPTORS and target in SOURCES
)


@pytest.mark.parametrize(("name", "fmt"), NAMES, ids=[n for n, _ in NAMES])
def test_the_three_front_doors_agree_on_every_name(assets, tmp_path, name, fmt):
    # the rdf reader: a weights entry called `name`
    descriptor = _copy_with_key(assets, tmp_path, fmt, name)
    _present(descriptor, fmt)
    spec = load_bundle(descriptor)
    assert fmt in spec.weights and (name == fmt or name not in spec.weights)
    # the checks before a run (Python API, CLI --weights-format): the same entry is chosen
    for typed in (name, name.upper(), f"  {name.title()} "):
        assert check_bundle(spec, typed, check_sha256=False).format == fmt
    # ImageJ: run("DeepImageJ Run", "model=... format=NAME")
    assert RunOptions.parse(f"model=[x] format={name}").weights_format == fmt
    assert normalize_format(name) == fmt


def test_deepimagej_format_choices_are_torchscript_for_pytorch(assets):
    """DeepImageJ's Run dialog labels (what macros record) name formats the table knows; ``Pytorch``
    is TorchScript (DeepImageJ runs PyTorch through DJL, which loads TorchScript only), so a
    recorded ``format=Pytorch`` picks the TorchScript weights of a real bioimage.io bundle."""
    labels = [c for c in FORMAT_CHOICES if c != "default"]
    assert {RunOptions.parse(f"model=x format={c}").weights_format for c in labels} == {
        "tensorflow_saved_model_bundle",
        "keras_hdf5",
        "onnx",
        "torchscript",
    }
    nuclei = load_bundle(assets / "bioimageio_unet2d_nuclei_broad" / "v0_4_9.bioimageio.yaml")
    assert {"torchscript", "pytorch_state_dict"} <= set(nuclei.weights)
    fmt = RunOptions.parse("model=x format=Pytorch").weights_format
    assert check_bundle(nuclei, fmt).format == "torchscript"
    assert check_bundle(nuclei, "pytorch").format == "torchscript"
    # the 0.3 name DeepImageJ 2.x exported PyTorch models with
    skin = load_bundle(assets / "deepimagej_bundles" / "skin_lesion_classification")
    assert list(skin.weights) == ["torchscript"]


@pytest.mark.parametrize("name", sorted(AMBIGUOUS_IN_DESCRIPTORS))
def test_an_ambiguous_weights_key_in_a_descriptor_is_refused_in_one_line(assets, tmp_path, name):
    descriptor = _copy_with_key(assets, tmp_path, "torchscript", name)
    with pytest.raises(BundleError) as info:
        load_bundle(descriptor)
    message = str(info.value)
    assert "\n" not in message
    for needle in (descriptor.name, f"weights.{name}", "torchscript", "pytorch_state_dict"):
        assert needle in message, message


def test_unknown_names_are_refused_by_each_front_door(assets):
    spec = load_bundle(assets / "unet_pancreatic")
    with pytest.raises(BundleError, match="caffe"):
        check_bundle(spec, "Caffe")
    with pytest.raises(InputImageError, match="unknown format"):
        RunOptions.parse("model=x format=Caffe")
    assert set(RUNNABLE_WEIGHT_FORMATS) <= set(WEIGHT_FORMATS)


def test_tensorflow_keys_from_either_dialect(assets):
    """config.xml (Java constants) and rdf.yaml (TensorFlow values) give the engine the same tag/signature."""
    config = load_bundle(assets / "unet_pancreatic", prefer="deepimagej")
    rdf = load_bundle(assets / "unet_pancreatic")
    for spec in (config, rdf):
        weights = spec.weights["tensorflow_saved_model_bundle"]
        assert (weights.tag, weights.signature) == ("serve", "serving_default")
    assert tensorflow_tag("tf.saved_model.tag_constants.SERVING") == tensorflow_tag(None) == "serve"
    assert tensorflow_signature("DEFAULT_SERVING_SIGNATURE_DEF_KEY") == "serving_default"
    assert tensorflow_tag("custom") == "custom"


# --------------------------------------------------------------------------- descriptor names


@pytest.mark.parametrize("name", [*DESCRIPTOR_NAMES, f"cells{RDF_SUFFIX}"])
def test_every_reader_of_a_models_folder_knows_each_descriptor_name(assets, tmp_path, name):
    """load_bundle, the models folders (ImageJ), `deepimagej list` and the trust hash see the same files."""
    src = assets / "unet_pancreatic"
    descriptor = "config.xml" if name == "config.xml" else "rdf.yaml"
    bundle = tmp_path / "models" / "one"
    bundle.mkdir(parents=True)
    shutil.copyfile(src / descriptor, bundle / name)
    assert is_descriptor_name(name)
    assert is_bundle_folder(bundle)
    rdfs, config = find_descriptors(bundle)
    assert [*rdfs, *([config] if config else [])] == [bundle / name]
    assert find_bundles(tmp_path / "models") == [bundle]
    spec = load_bundle(bundle)
    before = content_hash(spec)
    (bundle / name).write_text((bundle / name).read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert content_hash(spec) != before  # the descriptor is part of what a trust record trusts
    assert not is_descriptor_name("environment.yaml") and not is_bundle_folder(tmp_path / "models")


# --------------------------------------------------------------------------- checksums, replacement


def test_sha256_of_streams_and_notices_a_changed_file(tmp_path):
    path = tmp_path / "w.bin"
    data = os.urandom(3 * 2**20 + 5)  # more than one block
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1])  # another size: the cached digest is not reused
    assert sha256_of(path) == hashlib.sha256(data[:-1]).hexdigest()
    assert sha256_of(path, cached=False) == hashlib.sha256(data[:-1]).hexdigest()


def test_replace_path_keeps_the_old_result_until_the_new_one_is_in_place(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "rdf.yaml").write_text("old", encoding="utf-8")
    new = tmp_path / ".bundle.part"
    new.mkdir()
    (new / "rdf.yaml").write_text("new", encoding="utf-8")
    replace_path(new, target)
    assert (target / "rdf.yaml").read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # nothing left aside
    with pytest.raises(OSError):
        replace_path(tmp_path / "missing", target)  # the rename fails...
    assert (target / "rdf.yaml").read_text(encoding="utf-8") == "new"  # ...and the result is still there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


# --------------------------------------------------------------------------- image axes


@pytest.mark.parametrize(
    ("given", "ndim", "expected"),
    [("yx", 2, "yx"), ("Y,X,C", 3, "yxc"), ("N Y X C", 4, "byxc"), ("tzyx", 4, "tzyx")],
)
def test_image_axes_one_spelling(given, ndim, expected):
    assert image_axes(given, ndim, required="yx") == expected


@pytest.mark.parametrize(
    ("given", "ndim", "kwargs", "needle"),
    [
        ("yx", 3, {}, "name 2 dimension(s) but the image has 3"),
        ("yyx", 3, {}, "distinct letters"),
        ("qyx", 3, {}, "distinct letters"),
        ("zy", 2, {"required": "yx"}, "must include y and x"),
        ("byx", 3, {"letters": "tczyx"}, "among t, c, z, y, x"),  # ImageJ images have no batch axis
        (["y", "x"], 2, {}, "must be a string"),
    ],
)
def test_image_axes_errors_are_one_line(given, ndim, kwargs, needle):
    with pytest.raises(InputImageError) as info:
        image_axes(given, ndim, **kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)
