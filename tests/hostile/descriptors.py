"""Hostile and broken descriptors: bombs, deep nesting, paths outside the bundle, bad fields."""

from __future__ import annotations

import os
from pathlib import Path

from hostile.case import ERROR, OK, Case

PANCREATIC = "{M}/inputs/pancreatic"
RDF = (Path(__file__).resolve().parents[2] / "bundles" / "unet-pancreatic" / "rdf.yaml").read_text(
    encoding="utf-8"
)
CONFIG = (Path(__file__).resolve().parents[2] / "bundles" / "unet-pancreatic" / "config.xml").read_text(
    encoding="utf-8"
)


def bundle_with(name: str, text: str | bytes, *, keep_config: bool = False):
    """A copy of the pancreatic bundle (links to its files) whose descriptor ``name`` is ``text``."""

    def setup(case: Path, materials: Path) -> None:
        folder = case / "b"
        folder.mkdir()
        for item in (materials / "inputs" / "pancreatic").iterdir():
            if item.name not in ("rdf.yaml", "config.xml") or (keep_config and item.name == "config.xml"):
                os.symlink(item, folder / item.name)
        data = (
            text.replace("{M}", str(materials)).replace("{C}", str(case)) if isinstance(text, str) else text
        )
        target = folder / name
        target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return setup


def rdf(old: str, new: str) -> str:
    assert old in RDF, old
    return RDF.replace(old, new)


def config(old: str, new: str) -> str:
    assert old in CONFIG, old
    return CONFIG.replace(old, new)


def info(case_id: str, text: str | bytes, says: tuple[str, ...], name: str = "rdf.yaml", **kw) -> Case:
    return Case(
        case_id, ERROR, argv=("info", "--no-layers", "{C}/b"), says=says, setup=bundle_with(name, text), **kw
    )


def run(case_id: str, text: str, says: tuple[str, ...], expect: str = ERROR, **kw) -> Case:
    return Case(
        case_id,
        expect,
        argv=("run", "{C}/b", "{M}/inputs/small.tif", "-o", "{C}/out.tif"),
        says=says,
        setup=bundle_with("rdf.yaml", text),
        **kw,
    )


def _pickled_tensor(case: Path, materials: Path) -> None:
    """The bundle's test input replaced by a pickled object array (unpickling runs code)."""
    import numpy as np

    bundle_with("rdf.yaml", RDF)(case, materials)
    (case / "b" / "exampleImage.npy").unlink()
    np.save(case / "b" / "exampleImage.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _pickled_tensor(case: Path, materials: Path) -> None:
    """The bundle's test input replaced by a pickled object array (unpickling runs code)."""
    import numpy as np

    bundle_with("rdf.yaml", RDF)(case, materials)
    (case / "b" / "exampleImage.npy").unlink()
    np.save(case / "b" / "exampleImage.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)


LAUGHS = (
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    + RDF
)
XML_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Model [\n <!ENTITY a "lollollollollollollollollollol">\n'
    + "".join(f' <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(8))
    + "]>\n<Model><ModelInformation><Name>&i;</Name></ModelInformation></Model>\n"
)
XXE = (
    '<?xml version="1.0"?>\n<!DOCTYPE Model [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    "<Model><ModelInformation><Name>&x;</Name></ModelInformation></Model>\n"
)
V05 = """\
format_version: 0.5.3
type: model
name: v05 with a test tensor outside
inputs:
- id: raw
  axes: [{type: batch}, {type: channel, channel_names: [c]}, {type: space, id: y, size: {min: 8, step: 8}},
         {type: space, id: x, size: {min: 8, step: 8}}]
  test_tensor: {source: /etc/passwd}
outputs:
- id: out
  axes: [{type: batch}, {type: channel, channel_names: [c]}, {type: space, id: y, size: {tensor_id: raw, axis_id: y}},
         {type: space, id: x, size: {tensor_id: raw, axis_id: x}}]
weights:
  torchscript: {source: weights.pt}
"""

CASES = [
    # --- bombs and limits -----------------------------------------------------------------------
    info("yaml_billion_laughs", LAUGHS, ("billion laughs",), timeout=30),
    Case(
        "yaml_billion_laughs_list",
        OK,
        argv=("list", "{C}"),
        says=("BROKEN", "billion laughs"),
        setup=bundle_with("rdf.yaml", LAUGHS),
        timeout=30,
    ),
    run("yaml_billion_laughs_run", LAUGHS, ("billion laughs",), timeout=30),
    info("yaml_deep_flow_list", "a: " + "[" * 20000 + "]" * 20000 + "\n", ("nested",)),
    info("yaml_deep_flow_map", "a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", ("nested",)),
    info(
        "yaml_deep_block_map",
        "".join(" " * i + "a:\n" for i in range(1200)) + " " * 1200 + "b: 1\n",
        ("nested",),
    ),
    info("yaml_recursive_alias", "a: &a [*a]\n" + RDF, ("refers to the node",)),
    info("yaml_huge_file", RDF + "# " + "x" * (5 * 2**20) + "\n", ("too large",)),
    info("yaml_not_utf8", b"\xff\xfe\x00n\x00a\x00m\x00e" + os.urandom(64), ("UTF-8",)),
    info(
        "yaml_python_tag",
        "a: !!python/object/apply:os.system ['touch {M}/pwned/yaml_tag']\n" + RDF,
        ("not valid YAML",),
        forbid=("{M}/pwned/yaml_tag",),
    ),
    info("yaml_empty", "", ("mapping",)),
    info("yaml_top_level_list", "- 1\n- 2\n", ("mapping",)),
    info("yaml_syntax_error", RDF.replace("inputs:", "inputs: [", 1), ("not valid YAML", "line")),
    info("xml_billion_laughs", XML_LAUGHS, ("forbidden constructs",), name="config.xml"),
    info("xml_external_entity", XXE, ("forbidden constructs",), name="config.xml"),
    info(
        "xml_huge_file",
        CONFIG.replace("<Model>", "<Model><!--" + "x" * (5 * 2**20) + "-->", 1),
        ("too large",),
        name="config.xml",
    ),
    info(
        "xml_deep_nesting",
        CONFIG.replace("<Model>", "<Model>" + "<a>" * 50000 + "</a>" * 50000, 1),
        ("nested",),
        name="config.xml",
    ),
    info("xml_not_xml", os.urandom(256), ("config.xml",), name="config.xml"),
    info("xml_wrong_root", "<Mode/>", ("root element",), name="config.xml"),
    # --- file references outside the bundle -----------------------------------------------------
    info(
        "weights_absolute_path",
        rdf("source: ./model.h5", "source: /etc/passwd"),
        ("outside the bundle", "/etc/passwd"),
    ),
    info(
        "weights_dotdot_path",
        rdf("source: ./model.h5", "source: ../../../etc/passwd"),
        ("outside the bundle",),
    ),
    info("weights_home_path", rdf("source: ./model.h5", "source: ~/.ssh/id_rsa"), ("outside the bundle",)),
    info(
        "weights_windows_drive",
        rdf("source: ./model.h5", "source: 'C:/Windows/x.h5'"),
        ("outside the bundle",),
    ),
    info(
        "test_tensor_absolute",
        rdf("test_inputs: [./exampleImage.npy]", "test_inputs: [/etc/passwd]"),
        ("test_inputs[0]", "outside"),
    ),
    info(
        "sample_absolute",
        rdf("sample_inputs: [./exampleImage.tif]", "sample_inputs: [/etc/hostname]"),
        ("sample_inputs[0]", "outside"),
    ),
    info("macro_dotdot_rdf", rdf("kwargs: preprocessing.txt", "kwargs: ../../somewhere.ijm"), ("outside",)),
    info(
        "macro_dotdot_config_xml",
        config("<PreprocessingFile>preprocessing.txt", "<PreprocessingFile>../../x.txt"),
        ("PreprocessingFile", "outside"),
        name="config.xml",
    ),
    info("v05_test_tensor_absolute", V05, ("test_tensor", "outside")),
    Case(
        "documentation_outside_ignored",
        OK,
        argv=("info", "--no-layers", "{C}/b"),
        says=("Pancreatic",),
        setup=bundle_with("rdf.yaml", rdf("documentation: ./README.md", "documentation: /etc/passwd")),
    ),
    # --- fields of the wrong type or value --------------------------------------------------------
    run("kwarg_wrong_type", rdf("min_percentile: 0", "min_percentile: abc"), ("min_percentile", "number")),
    run("kwarg_bool", rdf("threshold: 0.5", "threshold: true"), ("threshold", "number")),
    run("kwarg_nan", rdf("threshold: 0.5", "threshold: .nan"), ("threshold", "number")),
    run("unknown_operation", rdf("name: binarize", "name: rm_rf"), ("rm_rf",)),
    info("data_type_unknown", rdf("data_type: float32", "data_type: float128"), ("data_type", "float128")),
    info("data_type_garbage", rdf("data_type: float32", "data_type: {x: 1}"), ("data_type",)),
    info("halo_negative", rdf("halo: [0, 47, 47, 0]", "halo: [0, -5, 47, 0]"), ("halo",)),
    info("halo_not_numbers", rdf("halo: [0, 47, 47, 0]", "halo: [0, .nan, 47, 0]"), ("halo",)),
    info("shape_min_zero", rdf("min: [1, 8, 8, 1]", "min: [1, 0, 8, 1]"), ("shape.min",)),
    info("shape_step_negative", rdf("step: [1, 8, 8, 0]", "step: [1, -8, 8, 0]"), ("shape.step",)),
    info("shape_huge_numbers", rdf("min: [1, 8, 8, 1]", "min: [1, 1e300, 8, 1]"), ("shape.min",)),
    info("axes_unknown_letter", rdf("axes: byxc", "axes: bqxc"), ("axes",)),
    info(
        "format_version_future", rdf("format_version: 0.4.10", "format_version: 9.9.9"), ("format_version",)
    ),
    info("name_is_a_list", rdf("name: Pancreatic Cell Segmentation (U-Net)", "name: [a, b]"), ("name",)),
    info("inputs_not_a_list", rdf("inputs:\n- name: input", "inputs: 3\nx:\n- name: input"), ("inputs",)),
    info("weights_source_empty", rdf("source: ./model.h5", "source: ''"), ("source",)),
    run("weights_sha256_mismatch", rdf("sha256: daef5cbf", "sha256: 0000000f"), ("sha256", "damaged")),
    run(
        "weights_unknown_format_only",
        RDF[: RDF.index("weights:")]
        + "weights:\n  caffe: {source: ./model.h5}\n"
        + RDF[RDF.index("config:") :],
        ("caffe",),
    ),
    info(
        "config_minimum_size_zero",
        config("<MinimumSize>8", "<MinimumSize>0"),
        ("MinimumSize",),
        name="config.xml",
    ),
    info(
        "config_axes_garbage",
        config("<InputOrganization0>NHWC", "<InputOrganization0>N?!C"),
        ("InputOrganization0",),
        name="config.xml",
    ),
    Case(
        "descriptor_is_a_folder",
        ERROR,
        argv=("info", "--no-layers", "{C}/b"),
        says=("no model descriptor",),
        setup=lambda c, m: (c / "b" / "rdf.yaml").mkdir(parents=True),
    ),
    Case("bundle_missing", ERROR, argv=("info", "{C}/nothing-here"), says=("nothing-here",)),
    Case("test_pickled_npy", ERROR, argv=("test", "{C}/b"), says=("pickled",), setup=_pickled_tensor),
]
