"""deepimagej.bundle: every real descriptor in ../shared/assets parses, broken ones fail in one line.

The real files are read in place; broken variants are copies edited under ``tmp_path``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from deepimagej.bundle import find_descriptors, load_bundle, read_descriptor
from deepimagej.bundle.axes import deepimagej_axes, normalize_axes, to_deepimagej_axes
from deepimagej.bundle.spec import ModelSpec, TensorSpec
from deepimagej.bundle.validate import check_bundle, check_input
from deepimagej.bundle.writer import write_config_xml, write_rdf_yaml
from deepimagej.checksums import sha256_of
from deepimagej.errors import BundleError, DeepImageJError, InputImageError

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
NUCLEI = ASSETS / "bioimageio_unet2d_nuclei_broad"
PANCREATIC = ASSETS / "unet_pancreatic"
DIJ = ASSETS / "deepimagej_bundles"

#: Real descriptors that are invalid on purpose -> the field their error must name.
KNOWN_INVALID = {"invalid_v0_4_0_duplicate_tensor_names.bioimageio.yaml": "outputs[0].name"}


def _descriptors() -> list[Path]:
    if not ASSETS.is_dir():
        return []
    found = [
        p
        for p in ASSETS.rglob("*")
        if p.is_file() and (p.name == "config.xml" or (p.suffix == ".yaml" and p.name != "environment.yaml"))
    ]
    return sorted(found)


DESCRIPTORS = _descriptors()
BUNDLE_DIRS = sorted({p.parent for p in DESCRIPTORS})


def _id(path: Path) -> str:
    return str(path.relative_to(ASSETS))


def assert_one_line(exc: BaseException, *needles: str) -> str:
    """The error is a DeepImageJError, one line, naming each of ``needles``."""
    message = str(exc)
    assert isinstance(exc, DeepImageJError), type(exc)
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def _check_consistent(spec: ModelSpec) -> None:
    """Invariants every parsed spec satisfies."""
    assert spec.inputs and spec.outputs
    names = [t.name for t in (*spec.inputs, *spec.outputs)]
    assert len(set(names)) == len(names)
    for tensor in (*spec.inputs, *spec.outputs):
        letters = tensor.axis_names
        assert letters and set(letters) <= set("bitczyx") and len(set(letters)) == len(letters)
        for axis in tensor.axes:
            assert axis.size is None or axis.size >= 1
            assert axis.min >= 1 and axis.step >= 0 and axis.halo >= 0
            if axis.reference is not None:
                ref = next(t for t in (*spec.inputs, *spec.outputs) if t.name == axis.reference[0])
                assert ref.has_axis(axis.reference[1])
        for step in tensor.processing:
            if "axes" in step.kwargs:
                assert set(step.kwargs["axes"]) <= set("bitczyx")
    assert spec.weights
    for fmt, w in spec.weights.items():
        assert w.format == fmt
        assert (w.path is None) == ("://" in w.source)


# --------------------------------------------------------------------------- every real file


@pytest.mark.parametrize("path", DESCRIPTORS, ids=_id)
def test_every_real_descriptor_parses_or_fails_precisely(path: Path) -> None:
    if path.name in KNOWN_INVALID:
        with pytest.raises(BundleError) as info:
            read_descriptor(path)
        assert_one_line(info.value, path.name, KNOWN_INVALID[path.name])
        return
    spec = read_descriptor(path)
    assert spec.source == path
    assert spec.kind == ("deepimagej" if path.suffix == ".xml" else "bioimageio")
    _check_consistent(spec)


@pytest.mark.parametrize("folder", BUNDLE_DIRS, ids=_id)
@pytest.mark.parametrize("prefer", [None, "deepimagej"])
def test_every_bundle_folder_loads(folder: Path, prefer: str | None) -> None:
    rdfs, config = find_descriptors(folder)
    spec = load_bundle(folder, prefer=prefer)
    _check_consistent(spec)
    if prefer == "deepimagej" and config is not None:
        assert spec.source == config and spec.kind == "deepimagej"
    elif rdfs:
        assert spec.source == rdfs[0]
    assert "secondary_descriptor_error" not in spec.extra


def test_all_asset_folders_were_found() -> None:
    if not ASSETS.is_dir():
        pytest.skip("../shared/assets not found")
    assert len([d for d in BUNDLE_DIRS if d.parent == DIJ]) == 16
    assert len([p for p in DESCRIPTORS if p.name == "config.xml"]) >= 12


# --------------------------------------------------------------------------- known values


@pytest.fixture(autouse=True)
def _need_assets() -> None:
    if not ASSETS.is_dir():
        pytest.skip("../shared/assets not found")


def test_pancreatic_config_xml() -> None:
    spec = load_bundle(PANCREATIC, prefer="deepimagej")
    assert spec.kind == "deepimagej" and spec.source.name == "config.xml"
    tensor = spec.inputs[0]
    assert tensor.name == "input" and tensor.axis_names == "byxc"
    for a in "yx":
        axis = tensor.axis(a)
        assert (axis.size, axis.min, axis.step, axis.halo) == (None, 8, 8, 47)
        assert spec.outputs[0].axis(a).reference == ("input", a)
        assert spec.outputs[0].axis(a).halo == 47
    assert tensor.axis("c").size == 1
    tiling = spec.deepimagej_tiling
    assert tiling is not None
    assert (tiling.fixed_patch, tiling.minimum_size, tiling.patch_size, tiling.padding) == (False, 8, 816, 47)
    assert [p.name for p in spec.preprocessing_macros] == ["preprocessing.txt"]
    assert [p.name for p in spec.postprocessing_macros] == ["postprocessing.txt"]
    tf = spec.weights["tensorflow_saved_model_bundle"]
    assert (tf.tag, tf.signature, tf.input_names, tf.output_names) == (
        "serve",
        "serving_default",
        ("input",),
        ("output",),
    )
    keras = spec.weights["keras_hdf5"]
    assert keras.path == PANCREATIC / "unet_pancreatic_cell_segmentation.h5" and keras.path.is_file()
    assert spec.memory_peak == "172,9 Mb" and spec.runtime == "2,8 s"
    assert spec.pixel_size == "1,60E-04cmx1,60E-04cm"
    assert spec.sample_inputs == (PANCREATIC / "exampleImage.tif",)
    assert spec.extra["test_input_size"] == "720x576"
    # borrowed from the rdf beside it (same tensor names and axes)
    assert spec.inputs[0].test_tensor == PANCREATIC / "exampleImage.npy"
    assert "segmentation" in spec.tags


def test_pancreatic_rdf() -> None:
    spec = load_bundle(PANCREATIC)
    assert spec.kind == "bioimageio" and spec.format_version == "0.3.2"
    tensor = spec.inputs[0]
    assert tensor.axis_names == "byxc"
    assert (tensor.axis("y").min, tensor.axis("y").step) == (8, 8)
    assert tensor.axis("b").size == 1
    assert spec.outputs[0].axis("x").halo == 47
    (pre,) = tensor.processing
    assert pre.name == "scale_range" and pre.kwargs["axes"] == "xy" and pre.kwargs["max_percentile"] == 100
    (post,) = spec.outputs[0].processing
    assert post.name == "binarize" and post.kwargs == {"threshold": 0.5}
    assert tensor.data_range == (-math.inf, math.inf)
    assert [p.name for p in spec.preprocessing_macros] == ["preprocessing.txt"]
    assert set(spec.weights) == {"tensorflow_saved_model_bundle", "keras_hdf5"}
    assert spec.weights["keras_hdf5"].sha256.startswith("b01176c4")
    assert spec.deepimagej_tiling is None
    assert spec.extra["allow_tiling"] is True


def test_nuclei_v05() -> None:
    spec = load_bundle(NUCLEI)
    assert spec.source.name == "bioimageio.yaml" and spec.format_version == "0.5.4"
    tensor = spec.inputs[0]
    assert tensor.name == "raw" and tensor.axis_names == "bcyx"
    assert [a.size for a in tensor.axes] == [1, 1, 512, 512]
    assert tensor.axis("c").channel_names == ("raw_intensity",)
    out = spec.outputs[0]
    assert out.name == "probability" and out.axis_names == "bcyx"
    assert (out.axis("y").halo, out.axis("x").halo) == (32, 32)
    assert out.axis("x").reference == ("raw", "x") and out.axis("x").scale == 1.0
    assert [s.name for s in tensor.processing] == ["ensure_dtype", "zero_mean_unit_variance", "ensure_dtype"]
    assert tensor.processing[1].kwargs == {"axes": "xy"}
    assert [s.name for s in out.processing] == ["sigmoid", "ensure_dtype"]
    assert out.data_range == (0.0, 1.0)
    assert tensor.test_tensor == NUCLEI / "test_input.npy"
    assert tensor.test_tensor_sha256 == sha256_of(NUCLEI / "test_input.npy")
    assert spec.weights["onnx"].path == NUCLEI / "weights.onnx"
    assert spec.weights["onnx"].version == "20"
    assert spec.weights["pytorch_state_dict"].path is None
    assert [w.format for w in spec.runnable_weights()] == ["onnx", "torchscript", "pytorch_state_dict"]


def test_nuclei_v04_variants() -> None:
    spec = read_descriptor(NUCLEI / "v0_4_9.bioimageio.yaml")
    assert spec.inputs[0].processing[0].kwargs == {"mode": "per_sample", "axes": "yx"}
    channel = spec.outputs[0].axis("c")
    assert (channel.size, channel.reference) == (1, None)  # scale 0, offset 0.5
    assert spec.outputs[0].axis("y").reference == ("raw", "y")
    assert spec.inputs[0].test_tensor == NUCLEI / "test_input.npy"
    assert spec.sample_inputs == (NUCLEI / "test_input.png",)
    expanded = read_descriptor(NUCLEI / "expand_output_shape_v0_4.bioimageio.yaml")
    assert expanded.outputs[0].axis_names == "bczyx" and expanded.outputs[0].axis("z").size == 1
    expanded5 = read_descriptor(NUCLEI / "expand_output_shape.bioimageio.yaml")
    assert expanded5.outputs[0].axis_names == "bczyx" and expanded5.outputs[0].axis("z").size == 1


def test_hela_fixed_patch() -> None:
    spec = load_bundle(DIJ / "u-net_hela_segmentation", prefer="deepimagej")
    assert spec.deepimagej_tiling.fixed_patch is True and spec.deepimagej_tiling.patch_size == 256
    assert spec.inputs[0].axis("y").size == 256 and spec.inputs[0].axis("y").halo == 64
    rdf = load_bundle(DIJ / "u-net_hela_segmentation")
    assert [a.size for a in rdf.inputs[0].axes] == [1, 256, 256, 1]
    assert rdf.weights["tensorflow_js"].path is None


def test_deepimagej_variety() -> None:
    jones = read_descriptor(DIJ / "jones_virtual_staining" / "config.xml")
    assert jones.inputs[0].axis_names == "yxc" and jones.inputs[0].axis("y").size == 1224
    assert jones.deepimagej_tiling.padding == 150
    widefield = read_descriptor(DIJ / "widefield_dapi_super-resolution" / "config.xml")
    assert widefield.outputs[0].axis_names == "byxc" and widefield.inputs[0].axis_names == "yxc"
    mulux = read_descriptor(DIJ / "mu-lux_ctc_phc-c2dl-psc" / "config.xml")
    assert mulux.pixel_size == "1.60E-04cmx1.60E-04cm" and mulux.runtime == "4.3 s"
    assert (mulux.inputs[0].axis("x").min, mulux.inputs[0].axis("x").step) == (32, 32)
    deepstorm = read_descriptor(DIJ / "deepstorm_zerocostdl4mic" / "config.xml")
    assert deepstorm.postprocessing_macros[0].name == "postprocessing_LocalMaximaSMLM.ijm"
    assert deepstorm.memory_peak is None  # "null"
    legacy = read_descriptor(PANCREATIC / "bundle_2020" / "UNet2DPancreaticSegmentation.model.yaml")
    assert legacy.weights["tensorflow_saved_model_bundle"].path == PANCREATIC / "bundle_2020"
    assert [p.name for p in legacy.preprocessing_macros] == ["preprocessing.txt"]
    assert legacy.memory_peak == "172,9 Mb"


def test_deepimagej_2x_yaml_variety() -> None:
    usiigaci = read_descriptor(DIJ / "usiigaci" / "model.yaml")
    assert [t.name for t in usiigaci.outputs] == ["mrcnn_detection", "mrcnn_mask"]
    assert usiigaci.extra["allow_tiling"] is False and usiigaci.extra["pyramidal_model"] is True
    assert any("General.jar" in s for s in usiigaci.extra["java_processing"])
    skin = read_descriptor(DIJ / "skin_lesion_classification" / "model.yaml")
    assert set(skin.weights) == {"torchscript"}  # written as pytorch_script (0.3)
    assert skin.outputs[0].axis_names == "bi" and skin.outputs[0].axis("i").size is None
    unet3d = read_descriptor(DIJ / "3du-net_zerocostdl4mic" / "model.yaml")
    assert unet3d.inputs[0].axis_names == "byxzc" and unet3d.inputs[0].axis("z").size == 8
    assert unet3d.postprocessing_macros == ()  # `spec: null`
    stardist = read_descriptor(DIJ / "stardist2D_zerocostdl4mic" / "model.yaml")
    assert stardist.outputs[0].axis("y").scale == 0.5 and stardist.outputs[0].axis("c").scale == 11.0
    assert stardist.inputs[0].processing[0].kwargs["axes"] == "xyc"
    fru = read_descriptor(DIJ / "fru-net_sev_segmentation" / "rdf.yaml")
    assert fru.inputs[0].data_range == (-math.inf, math.inf)
    assert fru.pixel_size == "9.658E-4 µm x 9.658E-4 µm"


# --------------------------------------------------------------------------- axes


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        ("NHWC", "byxc"),
        ("HWC", "yxc"),
        ("NDHWC", "bzyxc"),
        ("nchw", "bcyx"),
        ("BZYXC", "bzyxc"),
        ("TYX", "tyx"),
    ],
)
def test_deepimagej_axes(org: str, expected: str) -> None:
    assert deepimagej_axes(org) == expected


@pytest.mark.parametrize("org", ["NHWQ", "NHHC", "", "N-HWC"])
def test_deepimagej_axes_rejects(org: str) -> None:
    with pytest.raises(BundleError) as info:
        deepimagej_axes(org, source="config.xml", field="InputOrganization0")
    assert_one_line(info.value, "config.xml", "InputOrganization0")


def test_normalize_axes() -> None:
    assert normalize_axes("BYXC") == "byxc"
    assert normalize_axes(["x", "y"]) == "xy"
    assert normalize_axes(["channel", "y", "x"]) == "cyx"
    assert to_deepimagej_axes("bzyxc") == "NDHWC"
    for bad in ("byxq", "byyx", ["x", "w"], 3):
        with pytest.raises(BundleError):
            normalize_axes(bad)


# --------------------------------------------------------------------------- load_bundle


def test_load_bundle_choices(tmp_path: Path) -> None:
    assert load_bundle(PANCREATIC / "config.xml").kind == "deepimagej"
    assert load_bundle(PANCREATIC / "rdf.yaml").kind == "bioimageio"
    assert load_bundle(NUCLEI / "v0_4_0.bioimageio.yaml").format_version == "0.4.0"
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "nothing")
    assert_one_line(info.value, "nothing")
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert_one_line(info.value, str(tmp_path), "config.xml")
    with pytest.raises(BundleError):
        load_bundle(PANCREATIC, prefer="keras")  # type: ignore[arg-type]


def test_rdf_spec_borrows_macros_from_config(tmp_path: Path) -> None:
    (tmp_path / "config.xml").write_text(
        (PANCREATIC / "config.xml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    text = (PANCREATIC / "rdf.yaml").read_text(encoding="utf-8")
    (tmp_path / "rdf.yaml").write_text(text.split("    prediction:")[0], encoding="utf-8")
    spec = load_bundle(tmp_path)
    assert spec.kind == "bioimageio"
    assert [p.name for p in spec.preprocessing_macros] == ["preprocessing.txt"]  # from config.xml
    dij = load_bundle(tmp_path, prefer="deepimagej")
    assert dij.kind == "deepimagej" and dij.postprocessing_macros == (tmp_path / "postprocessing.txt",)


# --------------------------------------------------------------------------- validation


def test_check_bundle_picks_present_weights() -> None:
    spec = load_bundle(NUCLEI)
    assert check_bundle(spec).format == "onnx"
    assert check_bundle(spec, "torchscript").path == NUCLEI / "weights.pt"
    with pytest.raises(BundleError) as info:
        check_bundle(spec, "keras")
    assert_one_line(info.value, "bioimageio.yaml", "keras_hdf5", "available")
    with pytest.raises(BundleError) as info:
        check_bundle(spec, "pytorch_state_dict")
    assert_one_line(info.value, "pytorch_state_dict")


def test_check_bundle_remote_weights() -> None:
    spec = read_descriptor(DIJ / "2du-net_zerocostdl4mic" / "model.yaml")
    with pytest.raises(BundleError) as info:
        check_bundle(spec, "keras_hdf5")
    assert_one_line(info.value, "model.yaml", "https://", "download")


def _nuclei_copy(tmp_path: Path, old: str = "", new: str = "", link_weights: bool = True) -> Path:
    text = (NUCLEI / "bioimageio.yaml").read_text(encoding="utf-8")
    if old:
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "bioimageio.yaml").write_text(text, encoding="utf-8")
    if link_weights:
        os.symlink(NUCLEI / "weights.onnx", tmp_path / "weights.onnx")
    return tmp_path / "bioimageio.yaml"


def test_broken_wrong_sha256(tmp_path: Path) -> None:
    good = "85f5ac80fa977fea3562ef97c8c5950288be2c4f4cdb5d994807df97008ce088"
    spec = load_bundle(_nuclei_copy(tmp_path, good, "ab" * 32))
    with pytest.raises(BundleError) as info:
        check_bundle(spec, "onnx")
    assert_one_line(info.value, "bioimageio.yaml", "weights.onnx", "ab" * 32, good)
    assert check_bundle(spec, "onnx", check_sha256=False).format == "onnx"


def test_broken_missing_weights_file(tmp_path: Path) -> None:
    spec = load_bundle(_nuclei_copy(tmp_path, link_weights=False))
    with pytest.raises(BundleError) as info:
        check_bundle(spec, "onnx")
    msg = assert_one_line(info.value, "bioimageio.yaml", "'onnx'", "weights.onnx", "not found", str(tmp_path))
    assert msg.startswith("bioimageio.yaml: weights 'onnx' file weights.onnx not found in")


def test_broken_missing_macro_file(tmp_path: Path) -> None:
    (tmp_path / "config.xml").write_text(
        (PANCREATIC / "config.xml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    spec = load_bundle(tmp_path, prefer="deepimagej")  # parses although the macros are missing
    assert spec.preprocessing_macros == (tmp_path / "preprocessing.txt",)
    with pytest.raises(BundleError) as info:
        check_bundle(spec, check_sha256=False)
    assert_one_line(info.value, "config.xml", "tensorflow_saved_model_bundle")
    from deepimagej.bundle.validate import check_macro_files

    with pytest.raises(BundleError) as info:
        check_macro_files(spec)
    assert_one_line(info.value, "config.xml", "preprocessing.txt", "not found")


def test_check_input() -> None:
    spec = load_bundle(PANCREATIC)
    check_input(spec, (576, 720), "yx")
    check_input(spec, (5, 576, 720), "tyx")  # looped over like a batch
    check_input(spec, (3, 64, 64), "zyx")  # a stack of 2D slices
    check_input(spec, (2, 2), "yx")  # tiling pads small images
    with pytest.raises(InputImageError) as info:
        check_input(spec, (576, 720, 3), "yxc")
    assert assert_one_line(info.value) == "model expects 1 channel(s) on axis c, image has 3"
    with pytest.raises(InputImageError) as info:
        check_input(spec, (576, 720), "yxz")
    assert_one_line(info.value, "yxz")
    with pytest.raises(InputImageError) as info:
        check_input(spec, (576, 0), "yx")
    assert_one_line(info.value, "'x'", "size 0")
    with pytest.raises(InputImageError) as info:
        check_input(spec, (576,), "x")
    assert_one_line(info.value, "axis 'y'")
    nuclei = load_bundle(NUCLEI)
    with pytest.raises(InputImageError) as info:
        check_input(nuclei, (2, 64, 64), "cyx")
    assert_one_line(info.value, "1 channel(s)", "image has 2")


def test_broken_image_smaller_than_minimum(tmp_path: Path) -> None:
    text = (DIJ / "u-net_pancreatic_segmentation" / "rdf.yaml").read_text(encoding="utf-8")
    (tmp_path / "rdf.yaml").write_text(
        text.replace("allow_tiling: true", "allow_tiling: false"), encoding="utf-8"
    )
    spec = load_bundle(tmp_path)
    check_input(spec, (96, 128), "yx")
    with pytest.raises(InputImageError) as info:
        check_input(spec, (50, 128), "yx")
    assert_one_line(info.value, "50", "axis y", "minimum 96")
    fixed = load_bundle(DIJ / "usiigaci")  # allow_tiling false, min 1
    check_input(fixed, (1, 1, 3), "xyc")


# --------------------------------------------------------------------------- broken descriptors


def _edit(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text(encoding="utf-8")
    assert old in text, old
    dst.write_text(text.replace(old, new), encoding="utf-8")
    return dst


CONFIG = PANCREATIC / "config.xml"
BROKEN_CONFIGS = {
    "non_integer_minimum": (
        "<MinimumSize>8</MinimumSize>",
        "<MinimumSize>abc</MinimumSize>",
        "config.xml: field <ModelCharacteristics/MinimumSize> must be a positive integer, got 'abc'",
    ),
    "missing_minimum": ("<MinimumSize>8</MinimumSize>", "", "ModelCharacteristics/MinimumSize"),
    "negative_padding": ("<Padding>47</Padding>", "<Padding>-3</Padding>", "ModelCharacteristics/Padding"),
    "bad_axes": ("<InputOrganization0>NHWC", "<InputOrganization0>NHWQ", "InputOrganization0"),
    "duplicate_axes": ("<OutputOrganization0>NHWC", "<OutputOrganization0>NHHC", "OutputOrganization0"),
    "missing_input_name": ("<InputNames0>input</InputNames0>", "", "InputNames0"),
    "bad_fixed_patch": ("<FixedPatch>false", "<FixedPatch>maybe", "FixedPatch"),
    "dimensions_mismatch": (",-1,-1,-1,1,", ",-1,-1,1,", "InputTensorDimensions"),
    "wrong_channel_count": ("<Channels>1</Channels>", "<Channels>3</Channels>", "Channels"),
    "malformed_xml": ("</ModelCharacteristics>", "</ModelCharacteristic>", "not well-formed XML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_broken_config_xml(tmp_path: Path, case: str) -> None:
    old, new, needle = BROKEN_CONFIGS[case]
    path = _edit(CONFIG, tmp_path / "config.xml", old, new)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    message = assert_one_line(info.value, "config.xml", needle)
    assert message.startswith((str(tmp_path), "config.xml"))


def test_config_xml_wrong_root(tmp_path: Path) -> None:
    (tmp_path / "config.xml").write_text("<Configuration><Name>x</Name></Configuration>", encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert_one_line(info.value, "config.xml", "<Model>", "<Configuration>")


def test_config_xml_entities_are_refused(tmp_path: Path) -> None:
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE Model [<!ENTITY a "aaaaaaaaaa">]>\n<Model><ModelInformation>'
        "<Name>&a;</Name></ModelInformation></Model>\n"
    )
    (tmp_path / "config.xml").write_text(bomb, encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert_one_line(info.value, "config.xml", "forbidden")


RDF = PANCREATIC / "rdf.yaml"
BROKEN_RDFS = {
    "malformed_yaml": ("    axes: byxc\n    data_type", "    axes: byxc\n   data_type: [", "not valid YAML"),
    "unknown_format_version": ("format_version: 0.3.2", "format_version: 0.9.0", "<format_version>"),
    "missing_format_version": ("format_version: 0.3.2\n", "", "<format_version>"),
    "bad_axes": (
        "    axes: byxc\n    data_type: float32\n    data_range: [-inf, inf]",
        "    axes: bqxc\n    data_type: float32\n    data_range: [-inf, inf]",
        "<inputs[0].axes>",
    ),
    "duplicate_axes": (
        "    axes: byxc\n    data_type: float32\n    data_range: [0, 1]",
        "    axes: byyc\n    data_type: float32\n    data_range: [0, 1]",
        "<outputs[0].axes>",
    ),
    "short_min": ("min: [1, 8, 8, 1]", "min: [1, 8, 8]", "<inputs[0].shape.min>"),
    "unknown_reference": (
        "reference_input: input",
        "reference_input: raw",
        "<outputs[0].shape.reference_input>",
    ),
    "bad_sha256": ("sha256: b01176c4", "sha256: xyz", "<weights.keras_hdf5.sha256>"),
    "missing_inputs": ("inputs:\n  - name: input", "inputz:\n  - name: input", "<inputs>"),
    "duplicate_names": ("  - name: output", "  - name: input", "<outputs[0].name>"),
    "bad_halo": ("halo: [0, 47, 47, 0]", "halo: [0, 47, 47]", "<outputs[0].halo>"),
    "no_weights": ("weights:\n", "weightz:\n", "<weights>"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_RDFS))
def test_broken_rdf_yaml(tmp_path: Path, case: str) -> None:
    old, new, needle = BROKEN_RDFS[case]
    _edit(RDF, tmp_path / "rdf.yaml", old, new)
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert_one_line(info.value, "rdf.yaml", needle)


BROKEN_V05 = {
    "bad_axis_type": (
        "      - type: channel\n        channel_names:\n          - raw_intensity",
        "      - type: colour\n        channel_names:\n          - raw_intensity",
        "<inputs[0].axes[1].type>",
    ),
    "bad_space_id": (
        "          axis_id: y\n        id: y",
        "          axis_id: y\n        id: q",
        "<outputs[0].axes[2].id>",
    ),
    "bad_reference": (
        "          tensor_id: raw\n          axis_id: x",
        "          tensor_id: rav\n          axis_id: x",
        "<outputs[0].axes[3].size.tensor_id>",
    ),
    "duplicate_space_axis": (
        "      - size: 512\n        id: y",
        "      - size: 512\n        id: x",
        "<inputs[0].axes[3]>",
    ),
    "bad_size": (
        "      - size: 512\n        id: y",
        "      - size: -4\n        id: y",
        "<inputs[0].axes[2].size>",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_V05))
def test_broken_v05(tmp_path: Path, case: str) -> None:
    old, new, needle = BROKEN_V05[case]
    path = _edit(NUCLEI / "bioimageio.yaml", tmp_path / "bioimageio.yaml", old, new)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    assert_one_line(info.value, "bioimageio.yaml", needle)


# --------------------------------------------------------------------------- writing


def _linked_copy(folder: Path, target: Path) -> Path:
    """A copy of a bundle folder made of links to its files (a descriptor may only name its own files)."""
    import shutil

    shutil.copytree(folder, target, copy_function=os.symlink)
    return target


def _without_files(tensors: tuple[TensorSpec, ...]) -> list[TensorSpec]:
    import dataclasses

    return [
        dataclasses.replace(
            t,
            sample_tensor=None,
            test_tensor_sha256=None,
            axes=tuple(dataclasses.replace(a, channel_names=()) for a in t.axes),
        )
        for t in tensors
    ]


@pytest.mark.parametrize(
    "source",
    [
        RDF,
        DIJ / "u-net_pancreatic_segmentation" / "rdf.yaml",
        DIJ / "fru-net_sev_segmentation" / "rdf.yaml",
        NUCLEI / "v0_4_9.bioimageio.yaml",
        DIJ / "stardist2D_zerocostdl4mic" / "model.yaml",
    ],
    ids=_id,
)
def test_rdf_round_trip(tmp_path: Path, source: Path) -> None:
    bundle = _linked_copy(source.parent, tmp_path / "bundle")
    spec = read_descriptor(bundle / source.name)
    write_rdf_yaml(spec, bundle / "out.yaml")
    again = read_descriptor(bundle / "out.yaml")
    assert again.inputs == spec.inputs and again.outputs == spec.outputs
    assert {f: (w.path, w.sha256, w.tag, w.signature) for f, w in again.weights.items()} == {
        f: (w.path, w.sha256, w.tag, w.signature) for f, w in spec.weights.items()
    }
    assert again.preprocessing_macros == spec.preprocessing_macros
    assert again.sample_inputs == spec.sample_inputs and again.authors == spec.authors
    assert not [p.name for p in bundle.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_v05_written_as_v04(tmp_path: Path) -> None:
    bundle = _linked_copy(NUCLEI, tmp_path / "bundle")
    spec = load_bundle(bundle)
    write_rdf_yaml(spec, bundle / "rdf.yaml")
    again = read_descriptor(bundle / "rdf.yaml")
    assert again.format_version.startswith("0.4")
    assert _without_files(again.inputs) == _without_files(spec.inputs)
    assert [a.halo for a in again.outputs[0].axes] == [0, 0, 32, 32]
    assert again.outputs[0].axis("c").size == 1
    assert again.weights["onnx"].sha256 == spec.weights["onnx"].sha256


@pytest.mark.parametrize("source", [p for p in DESCRIPTORS if p.name == "config.xml"], ids=_id)
def test_config_xml_round_trip(tmp_path: Path, source: Path) -> None:
    bundle = _linked_copy(source.parent, tmp_path / "bundle")
    spec = read_descriptor(bundle / source.name)
    write_config_xml(spec, bundle / "config.xml")
    again = read_descriptor(bundle / "config.xml")
    assert _without_files(again.inputs) == _without_files(spec.inputs)
    assert _without_files(again.outputs) == _without_files(spec.outputs)
    assert again.deepimagej_tiling == spec.deepimagej_tiling
    tf, tf2 = spec.weights["tensorflow_saved_model_bundle"], again.weights["tensorflow_saved_model_bundle"]
    assert (tf2.tag, tf2.signature, tf2.input_names) == (tf.tag, tf.signature, tf.input_names)
    assert (again.name, again.pixel_size, again.memory_peak) == (spec.name, spec.pixel_size, spec.memory_peak)
    assert [p.name for p in again.preprocessing_macros] == [p.name for p in spec.preprocessing_macros]


def test_written_bundle_loads_from_its_folder(tmp_path: Path) -> None:
    """A folder with both descriptors written from one spec (as the bundle builder does)."""
    tmp_path = _linked_copy(PANCREATIC, tmp_path / "bundle")
    spec = load_bundle(tmp_path / "rdf.yaml")
    write_rdf_yaml(spec, tmp_path / "rdf.yaml")
    write_config_xml(spec, tmp_path / "config.xml")
    rdf = load_bundle(tmp_path)
    dij = load_bundle(tmp_path, prefer="deepimagej")
    assert rdf.kind == "bioimageio" and dij.kind == "deepimagej"
    assert rdf.inputs[0].axis("y").min == dij.inputs[0].axis("y").min == 8
    assert dij.deepimagej_tiling.padding == 47 and not dij.deepimagej_tiling.fixed_patch
    assert rdf.inputs[0].processing == spec.inputs[0].processing
    assert [p.name for p in dij.preprocessing_macros] == ["preprocessing.txt"]


@pytest.mark.parametrize(
    ("good", "bad", "field"),
    [
        ("border: zeros", "border: wrap", "<config.deepimagej_py.border>"),
        (
            "test_time_augmentation: true",
            "test_time_augmentation: 8",
            "<config.deepimagej_py.test_time_augmentation>",
        ),
        ("threshold: 0.6", "threshold: high", "<config.deepimagej_py.detection.threshold>"),
    ],
    ids=["border", "tta", "detection"],
)
def test_own_settings_round_trip_and_are_checked(tmp_path: Path, good: str, bad: str, field: str) -> None:
    """``config.deepimagej_py``: written, read back, kept when config.xml is preferred, checked."""
    import dataclasses

    tmp_path = _linked_copy(PANCREATIC, tmp_path / "bundle")
    original = load_bundle(tmp_path / "rdf.yaml")
    assert (original.border, original.test_time_augmentation, original.extra.get("detection")) == (
        "mirror",
        False,
        None,
    )
    spec = dataclasses.replace(
        original,
        border="zeros",
        test_time_augmentation=True,
        extra={**original.extra, "detection": {"threshold": 0.6, "min_distance": 3}},
    )
    write_rdf_yaml(spec, tmp_path / "rdf.yaml")
    write_config_xml(spec, tmp_path / "config.xml")
    again = read_descriptor(tmp_path / "rdf.yaml")
    assert (again.border, again.test_time_augmentation) == ("zeros", True)
    assert again.extra["detection"] == {"threshold": 0.6, "min_distance": 3}
    merged = load_bundle(tmp_path, prefer="deepimagej")  # config.xml has no field for them
    assert (merged.border, merged.test_time_augmentation) == ("zeros", True)
    text = (tmp_path / "rdf.yaml").read_text(encoding="utf-8")
    assert good in text
    (tmp_path / "rdf.yaml").write_text(text.replace(good, bad), encoding="utf-8")
    with pytest.raises(BundleError) as info:
        read_descriptor(tmp_path / "rdf.yaml")
    assert_one_line(info.value, "rdf.yaml", field)
