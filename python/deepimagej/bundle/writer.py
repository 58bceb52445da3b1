"""Write a :class:`ModelSpec` as a DeepImageJ 1.x ``config.xml`` or a bioimage.io 0.4 ``rdf.yaml``.

Both writers use the field names of the real files (see ``../shared/assets``) and write
atomically: the text goes to a temporary file in the target folder which then replaces
the target, so a reader never sees half a descriptor. File references (weights, macros,
test tensors, samples) are written relative to the descriptor's folder; the files themselves
are not copied.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from deepimagej.bundle.axes import to_deepimagej_axes
from deepimagej.bundle.formats import (
    TF_DEFAULT_SIGNATURE,
    TF_DEFAULT_TAG,
    TF_SIGNATURE_CONSTANT,
    TF_TAG_CONSTANT,
    VERSION_FIELDS,
)
from deepimagej.bundle.spec import OWN_CONFIG_KEY, DeepImageJTiling, ModelSpec, TensorSpec, WeightsSpec
from deepimagej.checksums import sha256_of
from deepimagej.errors import BundleError
from deepimagej.outputs import write_text_atomic

RDF_FORMAT_VERSION = "0.4.10"
MACRO_SPEC = "ij.IJ::runMacroFile"


# --------------------------------------------------------------------------- common


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` as ``./name`` (``../x`` when outside; absolute if on another drive)."""
    try:
        rel = os.path.relpath(Path(path), folder)
    except ValueError:  # Windows: another drive
        return str(path)
    rel = rel.replace(os.sep, "/")
    return rel if rel.startswith("..") else f"./{rel}"


def _tiling(spec: ModelSpec) -> DeepImageJTiling:
    """The DeepImageJ tiling of ``spec``; derived from axes when the spec has none."""
    if spec.deepimagej_tiling is not None:
        return spec.deepimagej_tiling
    tensor = spec.inputs[0]
    spatial = [a for a in tensor.axes if a.name in "yx"] or [a for a in tensor.axes if a.is_spatial]
    fixed = bool(spatial) and all(a.size is not None for a in spatial)
    halos = [a.halo for t in (*spec.inputs, *spec.outputs) for a in t.axes if a.is_spatial]
    padding = max(halos, default=0)
    if fixed:
        patch = max(a.size or 1 for a in spatial)
        minimum = patch
    else:
        minimum = max((a.step or a.min for a in spatial if a.size is None), default=1)
        floor = max(a.min for a in spatial)
        patch = max(minimum, floor)
        while patch < 2 * padding + minimum:
            patch += minimum
    return DeepImageJTiling(
        fixed_patch=fixed,
        minimum_size=minimum,
        patch_size=patch,
        padding=padding,
        allow_tiling=bool(spec.extra.get("allow_tiling", True)),
    )


# --------------------------------------------------------------------------- config.xml


def write_config_xml(spec: ModelSpec, path: Path) -> None:
    """Write ``spec`` as a DeepImageJ 1.x ``config.xml``.

    Only the TensorFlow side is described (DeepImageJ 1.x runs SavedModels): tag and
    signature come from the ``tensorflow_saved_model_bundle`` weights (``serve`` /
    ``serving_default`` are written as DeepImageJ's constant names). The tiling fields come
    from ``spec.deepimagej_tiling`` or are derived from the input axes (fixed size -> fixed
    patch; otherwise MinimumSize = step) and the largest halo (Padding).

    Raises:
        BundleError: the input has axes DeepImageJ 1.x cannot name (``t``, ``i``).
    """
    path = Path(path)
    tensor = spec.inputs[0]
    tiling = _tiling(spec)
    tf = spec.weights.get("tensorflow_saved_model_bundle")
    model = ET.Element("Model")
    info = ET.SubElement(model, "ModelInformation")
    _sub(info, "Name", spec.name)
    _sub(info, "Author", ", ".join(spec.authors))
    _sub(info, "URL", spec.extra.get("url") or spec.extra.get("git_repo"))
    _sub(info, "Credit", spec.extra.get("credit"))
    _sub(info, "Version", spec.extra.get("version"))
    _sub(info, "Date", spec.extra.get("date") or _dt.date.today().strftime("%b %d, %Y"))
    _sub(info, "Reference", "; ".join(spec.cite))
    test = ET.SubElement(model, "ModelTest")
    _sub(test, "InputSize", spec.extra.get("test_input_size"))
    _sub(test, "OutputSize", spec.extra.get("test_output_size"))
    _sub(test, "MemoryPeak", spec.memory_peak)
    _sub(test, "Runtime", spec.runtime)
    _sub(test, "PixelSize", spec.pixel_size)
    mc = ET.SubElement(model, "ModelCharacteristics")
    tag = tf.tag if tf and tf.tag else TF_DEFAULT_TAG
    signature = tf.signature if tf and tf.signature else TF_DEFAULT_SIGNATURE
    _sub(mc, "ModelTag", TF_TAG_CONSTANT if tag == TF_DEFAULT_TAG else tag)
    _sub(mc, "SignatureDefinition", TF_SIGNATURE_CONSTANT if signature == TF_DEFAULT_SIGNATURE else signature)
    _sub(mc, "InputTensorDimensions", _tensor_dimensions(tensor))
    _sub(mc, "NumberOfInputs", str(len(spec.inputs)))
    for i, t in enumerate(spec.inputs):
        _sub(mc, f"InputNames{i}", t.name)
        _sub(
            mc,
            f"InputOrganization{i}",
            to_deepimagej_axes(t.axis_names, source=path, field=f"inputs[{i}].axes"),
        )
    _sub(mc, "NumberOfOutputs", str(len(spec.outputs)))
    for i, t in enumerate(spec.outputs):
        _sub(mc, f"OutputNames{i}", t.name)
        _sub(
            mc,
            f"OutputOrganization{i}",
            to_deepimagej_axes(t.axis_names, source=path, field=f"outputs[{i}].axes"),
        )
    _sub(mc, "Channels", str(_channels(tensor)))
    _sub(mc, "FixedPatch", "true" if tiling.fixed_patch else "false")
    _sub(mc, "MinimumSize", str(tiling.minimum_size))
    _sub(mc, "PatchSize", str(tiling.patch_size))
    _sub(mc, "FixedPadding", "true" if tiling.fixed_padding else "false")
    _sub(mc, "Padding", str(tiling.padding))
    if not tiling.allow_tiling:
        _sub(mc, "AllowTiling", "false")
    _sub(mc, "PreprocessingFile", _macro_field(spec.preprocessing_macros, path.parent, "no preprocessing"))
    _sub(mc, "PostprocessingFile", _macro_field(spec.postprocessing_macros, path.parent, "no postprocessing"))
    _sub(mc, "slices", str(tensor.axis("z").size or 1) if tensor.has_axis("z") else "1")
    ET.indent(model, space="    ")
    text = (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        + ET.tostring(model, encoding="unicode")
        + "\n"
    )
    write_text_atomic(path, text)


def _sub(parent: ET.Element, tag: str, text: Any) -> None:
    ET.SubElement(parent, tag).text = "n/a" if text is None or text == "" else str(text)


def _tensor_dimensions(tensor: TensorSpec) -> str:
    """``",-1,-1,-1,1,"``: fixed sizes, ``-1`` for free ones."""
    dims = [str(a.size) if a.size is not None and a.name != "b" else "-1" for a in tensor.axes]
    return "," + ",".join(dims) + ","


def _channels(tensor: TensorSpec) -> int:
    if not tensor.has_axis("c"):
        return 1
    axis = tensor.axis("c")
    return axis.size if axis.size is not None else axis.min


def _macro_field(paths: tuple[Path, ...], folder: Path, none: str) -> str:
    if not paths:
        return none
    return ",".join(_relative(p, folder).removeprefix("./") for p in paths)


# --------------------------------------------------------------------------- rdf.yaml


def write_rdf_yaml(spec: ModelSpec, path: Path) -> None:
    """Write ``spec`` as a bioimage.io 0.4 ``rdf.yaml`` with a DeepImageJ ``config`` block.

    Weights get their ``sha256`` (computed when the spec lacks it and the file exists);
    ``test_inputs`` / ``test_outputs`` and ``sample_inputs`` / ``sample_outputs`` list the
    tensors' files; pre/post-processing operations, ``halo``, ``{min, step}`` shapes and
    output ``{reference_tensor, scale, offset}`` shapes follow the 0.4 format; ImageJ macros go
    to ``config.deepimagej.prediction``.

    Raises:
        BundleError: a tensor that cannot be written in 0.4 terms.
    """
    path = Path(path)
    folder = path.parent
    data: dict[str, Any] = {
        "format_version": RDF_FORMAT_VERSION,
        "type": "model",
        "name": spec.name,
        "description": spec.description or spec.name,
        "timestamp": str(spec.extra.get("timestamp") or _dt.datetime.now(_dt.timezone.utc).isoformat()),
        "authors": [{"name": a} for a in spec.authors] or [{"name": "unknown"}],
        "cite": [{"text": c} for c in spec.cite],
        "license": spec.license or "CC-BY-4.0",
        "tags": list(spec.tags) or ["deepimagej"],
    }
    if spec.documentation is not None:
        data["documentation"] = _relative(spec.documentation, folder)
    if spec.extra.get("git_repo"):
        data["git_repo"] = str(spec.extra["git_repo"])
    data["inputs"] = [_tensor_yaml(t, "preprocessing") for t in spec.inputs]
    data["outputs"] = [_tensor_yaml(t, "postprocessing") for t in spec.outputs]
    _file_lists(spec, folder, data)
    data["weights"] = {fmt: _weights_yaml(w, folder) for fmt, w in spec.weights.items()}
    data["config"] = {"deepimagej": _deepimagej_block(spec, folder)}
    own: dict[str, Any] = {}
    if spec.border != "mirror":
        own["border"] = spec.border
    if spec.test_time_augmentation:
        own["test_time_augmentation"] = True
    if spec.extra.get("detection"):
        own["detection"] = {k: _number(v) for k, v in spec.extra["detection"].items()}
    if own:
        data["config"][OWN_CONFIG_KEY] = own
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    write_text_atomic(path, text)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _tensor_yaml(tensor: TensorSpec, processing_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": tensor.name,
        "axes": tensor.axis_names,
        "data_type": tensor.data_type,
    }
    if tensor.description:
        out["description"] = tensor.description
    if tensor.data_range is not None and not any(math.isnan(v) for v in tensor.data_range):
        out["data_range"] = [float(v) if math.isinf(v) else _number(v) for v in tensor.data_range]
    out["shape"] = _shape_yaml(tensor)
    if any(a.halo for a in tensor.axes):
        out["halo"] = [a.halo for a in tensor.axes]
    if tensor.processing:
        out[processing_key] = [
            {"name": s.name, "kwargs": dict(s.kwargs)} if s.kwargs else {"name": s.name}
            for s in tensor.processing
        ]
    return out


def _shape_yaml(tensor: TensorSpec) -> list[int] | dict[str, Any]:
    refs = [a.reference[0] for a in tensor.axes if a.reference is not None]
    if refs:
        return _reference_shape(tensor, refs[0])
    if all(a.size is not None for a in tensor.axes):
        return [int(a.size) for a in tensor.axes]  # type: ignore[arg-type]
    return {
        "min": [a.size if a.size is not None else a.min for a in tensor.axes],
        "step": [0 if a.size is not None else a.step for a in tensor.axes],
    }


def _reference_shape(tensor: TensorSpec, ref: str) -> dict[str, Any]:
    scales: list[int | float] = []
    offsets: list[int | float] = []
    for a in tensor.axes:
        if a.reference is not None:
            if a.reference[0] != ref or a.reference[1] != a.name:
                raise BundleError(
                    f"tensor '{tensor.name}': axis {a.name} follows {a.reference[0]}.{a.reference[1]}, which a "
                    f"0.4 rdf.yaml cannot express next to references to '{ref}'"
                )
            scales.append(_number(a.scale))
            offsets.append(_number(a.offset))
        elif a.size is not None:  # fixed: size = 0 * ref + 2 * offset
            scales.append(0)
            offsets.append(_number(a.size / 2))
        else:  # unknown size (e.g. DeepImageJ output channels): assume it follows the reference
            scales.append(1)
            offsets.append(0)
    return {"reference_tensor": ref, "scale": scales, "offset": offsets}


def _file_lists(spec: ModelSpec, folder: Path, data: dict[str, Any]) -> None:
    for key, tensors in (("test_inputs", spec.inputs), ("test_outputs", spec.outputs)):
        files = [t.test_tensor for t in tensors if t.test_tensor is not None]
        if len(files) == len(tensors):  # one per tensor, or none at all
            data[key] = [_relative(p, folder) for p in files]
    if spec.sample_inputs:
        data["sample_inputs"] = [_relative(p, folder) for p in spec.sample_inputs]
    if spec.sample_outputs:
        data["sample_outputs"] = [_relative(p, folder) for p in spec.sample_outputs]


def _weights_yaml(weights: WeightsSpec, folder: Path) -> dict[str, Any]:
    source = _relative(weights.path, folder) if weights.path is not None else weights.source
    out: dict[str, Any] = {"source": source}
    sha = weights.sha256
    if sha is None and weights.path is not None and weights.path.is_file():
        sha = sha256_of(weights.path)
    if sha:
        out["sha256"] = sha
    if weights.version and weights.format in VERSION_FIELDS:
        version: Any = weights.version
        if weights.format == "onnx" and str(version).isdigit():
            version = int(version)
        out[VERSION_FIELDS[weights.format]] = version
    return out


def _deepimagej_block(spec: ModelSpec, folder: Path) -> dict[str, Any]:
    tf = spec.weights.get("tensorflow_saved_model_bundle")
    block: dict[str, Any] = {
        "pyramidal_model": bool(spec.extra.get("pyramidal_model", False)),
        "allow_tiling": spec.deepimagej_tiling.allow_tiling
        if spec.deepimagej_tiling
        else bool(spec.extra.get("allow_tiling", True)),
    }
    if tf is not None:
        tag = tf.tag or TF_DEFAULT_TAG
        sig = tf.signature or TF_DEFAULT_SIGNATURE
        block["model_keys"] = {
            "tensorflow_model_tag": TF_TAG_CONSTANT if tag == TF_DEFAULT_TAG else tag,
            "tensorflow_siganture_def": TF_SIGNATURE_CONSTANT if sig == TF_DEFAULT_SIGNATURE else sig,
        }
    info: dict[str, Any] = {}
    test_in: dict[str, Any] = {}
    if spec.sample_inputs:
        test_in["name"] = spec.sample_inputs[0].name
    if spec.extra.get("test_input_size"):
        test_in["size"] = str(spec.extra["test_input_size"])
    if spec.pixel_size:
        test_in["pixel_size"] = spec.pixel_size
    if test_in:
        info["inputs"] = [test_in]
    test_out: dict[str, Any] = {}
    if spec.sample_outputs:
        test_out.update(name=spec.sample_outputs[0].name, type="image")
    if spec.extra.get("test_output_size"):
        test_out["size"] = str(spec.extra["test_output_size"])
    if test_out:
        info["outputs"] = [test_out]
    if spec.memory_peak:
        info["memory_peak"] = spec.memory_peak
    if spec.runtime:
        info["runtime"] = spec.runtime
    if info:
        block["test_information"] = info
    prediction: dict[str, Any] = {}
    for stage, paths in (
        ("preprocess", spec.preprocessing_macros),
        ("postprocess", spec.postprocessing_macros),
    ):
        if paths:
            prediction[stage] = [
                {"spec": MACRO_SPEC, "kwargs": _relative(p, folder).removeprefix("./")} for p in paths
            ]
    if prediction:
        block["prediction"] = prediction
    return block
