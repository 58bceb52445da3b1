"""Read DeepImageJ 1.x ``config.xml`` descriptors into a :class:`ModelSpec`.

A DeepImageJ 1.x bundle is a TensorFlow SavedModel (``saved_model.pb`` + ``variables/``,
or ``tensorflow_saved_model_bundle.zip``) next to a ``config.xml`` such as::

    <Model>
      <ModelInformation><Name>...</Name><Author>...</Author>...</ModelInformation>
      <ModelTest><InputSize>720x576</InputSize>...<PixelSize>1,60E-04cmx1,60E-04cm</PixelSize></ModelTest>
      <ModelCharacteristics>
        <ModelTag>tf.saved_model.tag_constants.SERVING</ModelTag>
        <InputTensorDimensions>,-1,-1,-1,1,</InputTensorDimensions>
        <InputNames0>input</InputNames0><InputOrganization0>NHWC</InputOrganization0>
        <Channels>1</Channels><FixedPatch>false</FixedPatch><MinimumSize>8</MinimumSize>
        <PatchSize>816</PatchSize><Padding>47</Padding>
        <PreprocessingFile>preprocessing.txt</PreprocessingFile> ...
      </ModelCharacteristics>
    </Model>

The XML is parsed with :mod:`defusedxml` (no entities, no DTDs). Tiling rules become axis
``min``/``step``/``halo`` values (see :func:`read_config_xml`) and are also kept verbatim in
:class:`~deepimagej.bundle.spec.DeepImageJTiling`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as DET

from deepimagej.bundle.axes import deepimagej_axes, field_error, one_line
from deepimagej.bundle.files import local_path
from deepimagej.bundle.formats import SAVED_MODEL_PB, SAVED_MODEL_ZIP, tensorflow_signature, tensorflow_tag
from deepimagej.bundle.spec import AxisSpec, DeepImageJTiling, ModelSpec, TensorSpec, WeightsSpec
from deepimagej.errors import BundleError

#: Values that mean "nothing" in DeepImageJ configs.
_NULLS = {"", "null", "none", "n/a", "no preprocessing", "no postprocessing"}

_MC = "ModelCharacteristics"
_MI = "ModelInformation"
_MT = "ModelTest"
#: A config.xml is a few KB; larger files are refused before parsing.
MAX_CONFIG_BYTES = 4 * 2**20
MAX_CONFIG_DEPTH = 64


def read_config_xml(path: Path) -> ModelSpec:
    """Read a DeepImageJ 1.x ``config.xml``.

    Tensors: the input axes come from ``InputOrganization0`` (``NHWC`` -> ``byxc``) with sizes
    from ``InputTensorDimensions`` (``-1`` = free) and ``Channels``. Spatial axes get
    ``size = PatchSize`` when ``FixedPatch`` is true, else ``min = step = MinimumSize``;
    ``halo = Padding`` on the spatial axes of inputs and outputs. Output spatial and batch axes
    reference the input (scale 1, offset 0); output channels are left free.

    Weights: one ``tensorflow_saved_model_bundle`` entry pointing at
    ``tensorflow_saved_model_bundle.zip`` or, when ``saved_model.pb`` lies next to the config,
    at the folder itself; plus a ``keras_hdf5`` entry when exactly one ``.h5`` file is there.

    Args:
        path: the ``config.xml`` file.

    Returns:
        The model description (``kind="deepimagej"``, ``format_version="deepimagej-1"``).

    Raises:
        BundleError: unreadable or malformed XML, or a missing / invalid field (one line,
            naming the file and the field).
    """
    path = Path(path)
    root = _parse_xml(path)
    info = _Fields(path, root)

    tiling = _read_tiling(info)
    inputs = _read_inputs(info, tiling)
    outputs = _read_outputs(info, tiling, inputs[0])
    _check_unique_names(path, inputs, outputs)

    folder = path.parent
    pre = _macro_paths(path, info.text(f"{_MC}/PreprocessingFile"), f"{_MC}/PreprocessingFile")
    post = _macro_paths(path, info.text(f"{_MC}/PostprocessingFile"), f"{_MC}/PostprocessingFile")
    sample_in = _first_existing(folder, ("exampleImage.tif", "exampleImage.tiff"))
    sample_out = _first_existing(folder, ("resultImage.tif", "resultImage.tiff"))
    if sample_in is not None:
        inputs = (_with_sample(inputs[0], sample_in), *inputs[1:])
    if sample_out is not None:
        outputs = (_with_sample(outputs[0], sample_out), *outputs[1:])

    weights = _read_weights(info, folder, inputs, outputs)
    name = info.text(f"{_MI}/Name") or folder.name
    return ModelSpec(
        name=name,
        source=path,
        kind="deepimagej",
        format_version="deepimagej-1",
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        authors=_split_authors(info.text(f"{_MI}/Author")),
        cite=tuple(c for c in [info.text(f"{_MI}/Reference")] if c),
        preprocessing_macros=pre,
        postprocessing_macros=post,
        sample_inputs=(sample_in,) if sample_in else (),
        sample_outputs=(sample_out,) if sample_out else (),
        deepimagej_tiling=tiling,
        pixel_size=info.text(f"{_MT}/PixelSize"),
        memory_peak=info.text(f"{_MT}/MemoryPeak"),
        runtime=info.text(f"{_MT}/Runtime"),
        extra=_extra(info),
    )


# --------------------------------------------------------------------------- XML access


def _parse_xml(path: Path) -> ET.Element:
    """Parse ``path`` safely; every failure becomes a one-line :class:`BundleError`."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise BundleError(
                f"{path}: {size / 2**20:.1f} MiB, too large for a DeepImageJ config.xml (at most "
                f"{MAX_CONFIG_BYTES // 2**20} MiB); is it the right file?"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(one_line(f"{path}: cannot read the file ({exc.strerror or exc})")) from None
    try:
        root = DET.fromstring(data)
    except DET.ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        where = f" at line {line}, column {col}" if line else ""
        raise BundleError(one_line(f"{path}: not well-formed XML{where} ({_xml_reason(exc)})")) from None
    except defusedxml.DefusedXmlException as exc:
        raise BundleError(
            one_line(
                f"{path}: XML uses forbidden constructs ({type(exc).__name__}); "
                "a DeepImageJ config.xml has no DTD or entities"
            )
        ) from None
    if root.tag != "Model":
        raise field_error(path, "Model", "the root element of a DeepImageJ config.xml", f"<{root.tag}>")
    stack = [(root, 1)]
    while stack:  # a config.xml is three levels deep; refuse absurd nesting like the YAML reader
        element, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise BundleError(f"{path}: refused: elements nested more than {MAX_CONFIG_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in element)
    return root


def _xml_reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(":")[0] if ":" in text else text


class _Fields:
    """Typed access to the text of ``<Model>`` sub-elements, with precise errors."""

    def __init__(self, path: Path, root: ET.Element):
        self.path = path
        self.root = root

    def text(self, field: str) -> str | None:
        """Stripped text of ``field``; ``None`` when absent, empty or ``null``."""
        element = self.root.find(field)
        if element is None or element.text is None:
            return None
        value = element.text.strip()
        return None if value.lower() in _NULLS else value

    def required(self, field: str, expected: str) -> str:
        value = self.text(field)
        if value is None:
            raise field_error(self.path, field, expected)
        return value

    def integer(self, field: str, *, minimum: int, default: int | None = None) -> int:
        """Integer field, at least ``minimum``; ``default`` when absent (required if ``None``)."""
        expected = "a positive integer" if minimum >= 1 else "a non-negative integer"
        value = self.text(field)
        if value is None:
            if default is not None:
                return default
            raise field_error(self.path, field, expected)
        number = _to_int(value)
        if number is None or number < minimum:
            raise field_error(self.path, field, expected, value)
        return number

    def boolean(self, field: str, *, default: bool | None = None) -> bool:
        value = self.text(field)
        if value is None:
            if default is not None:
                return default
            raise field_error(self.path, field, "true or false")
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise field_error(self.path, field, "true or false", value)
        return lowered == "true"


def _to_int(value: str) -> int | None:
    """``"47"`` / ``"47.0"`` -> 47; anything else -> ``None``."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


# --------------------------------------------------------------------------- tensors


def _read_tiling(info: _Fields) -> DeepImageJTiling:
    fixed = info.boolean(f"{_MC}/FixedPatch")
    minimum = info.integer(f"{_MC}/MinimumSize", minimum=1)
    patch = info.integer(f"{_MC}/PatchSize", minimum=1)
    padding = info.integer(f"{_MC}/Padding", minimum=0)
    fixed_padding = info.boolean(f"{_MC}/FixedPadding", default=True)
    allow = info.boolean(f"{_MC}/AllowTiling", default=True)
    if not fixed and patch % minimum != 0:
        raise field_error(info.path, f"{_MC}/PatchSize", f"a multiple of MinimumSize ({minimum})", str(patch))
    return DeepImageJTiling(
        fixed_patch=fixed,
        minimum_size=minimum,
        patch_size=patch,
        padding=padding,
        fixed_padding=fixed_padding,
        allow_tiling=allow,
    )


def _count(info: _Fields, kind: str) -> int:
    """``NumberOfInputs`` / ``NumberOfOutputs``, or the number of ``InputNames<i>`` fields."""
    n = 0
    while info.root.find(f"{_MC}/{kind}Names{n}") is not None:
        n += 1
    declared = info.integer(f"{_MC}/NumberOf{kind}s", minimum=1, default=max(n, 1))
    return declared


def _dimensions(info: _Fields, n_axes: int) -> list[int]:
    """``InputTensorDimensions`` such as ``",-1,256,256,1,"`` -> ``[-1, 256, 256, 1]``."""
    field = f"{_MC}/InputTensorDimensions"
    expected = f"{n_axes} comma-separated integers (-1 = free), one per axis of InputOrganization0"
    raw = info.text(field)
    if raw is None:
        return [-1] * n_axes
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    values = [_to_int(p) for p in parts]
    if len(values) != n_axes or any(v is None or (v < 1 and v != -1) for v in values):
        raise field_error(info.path, field, expected, raw)
    return [int(v) for v in values]  # type: ignore[arg-type]


def _read_inputs(info: _Fields, tiling: DeepImageJTiling) -> tuple[TensorSpec, ...]:
    channels = info.integer(f"{_MC}/Channels", minimum=1)
    tensors = []
    for i in range(_count(info, "Input")):
        name = info.required(f"{_MC}/InputNames{i}", "the name of the model's input tensor")
        org_field = f"{_MC}/InputOrganization{i}"
        axes = deepimagej_axes(
            info.required(org_field, "a DeepImageJ axes string such as NHWC"),
            source=info.path,
            field=org_field,
        )
        dims = _dimensions(info, len(axes)) if i == 0 else [-1] * len(axes)
        if "c" in axes and dims[axes.index("c")] not in (-1, channels):
            raise field_error(
                info.path,
                f"{_MC}/Channels",
                f"equal to the channel size in InputTensorDimensions ({dims[axes.index('c')]})",
                str(channels),
            )
        spec_axes = tuple(_input_axis(a, d, channels, tiling) for a, d in zip(axes, dims))
        tensors.append(TensorSpec(name=name, axes=spec_axes))
    return tuple(tensors)


def _input_axis(name: str, dim: int, channels: int, tiling: DeepImageJTiling) -> AxisSpec:
    if name == "c":
        return AxisSpec("c", size=channels, min=channels, step=0)
    if name in ("y", "x") or (name == "z" and dim == -1):
        if tiling.fixed_patch:
            return AxisSpec(name, size=tiling.patch_size, min=tiling.patch_size, step=0, halo=tiling.padding)
        if dim > 0:
            return AxisSpec(name, size=dim, min=dim, step=0, halo=tiling.padding)
        return AxisSpec(name, min=tiling.minimum_size, step=tiling.minimum_size, halo=tiling.padding)
    if dim > 0:  # fixed z depth, fixed batch
        return AxisSpec(name, size=dim, min=dim, step=0)
    return AxisSpec(name, min=1, step=1)  # free batch / time


def _read_outputs(info: _Fields, tiling: DeepImageJTiling, first_input: TensorSpec) -> tuple[TensorSpec, ...]:
    tensors = []
    for i in range(_count(info, "Output")):
        name = info.required(f"{_MC}/OutputNames{i}", "the name of the model's output tensor")
        org_field = f"{_MC}/OutputOrganization{i}"
        axes = deepimagej_axes(
            info.required(org_field, "a DeepImageJ axes string such as NHWC"),
            source=info.path,
            field=org_field,
        )
        tensors.append(TensorSpec(name=name, axes=tuple(_output_axis(a, first_input, tiling) for a in axes)))
    return tuple(tensors)


def _output_axis(name: str, ref: TensorSpec, tiling: DeepImageJTiling) -> AxisSpec:
    if name in "zyx" and ref.has_axis(name):
        return AxisSpec(name, reference=(ref.name, name), halo=tiling.padding)
    if name == "b" and ref.has_axis("b"):
        return AxisSpec("b", reference=(ref.name, "b"))
    return AxisSpec(name, min=1, step=1)  # channels (unknown count) or an axis the input lacks


def _check_unique_names(path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> None:
    seen: dict[str, str] = {}
    for kind, tensors in (("Input", inputs), ("Output", outputs)):
        for i, t in enumerate(tensors):
            field = f"{_MC}/{kind}Names{i}"
            if t.name in seen:
                raise field_error(path, field, f"a tensor name not already used by {seen[t.name]}", t.name)
            seen[t.name] = field


def _with_sample(tensor: TensorSpec, sample: Path) -> TensorSpec:
    from dataclasses import replace

    return replace(tensor, sample_tensor=sample)


# --------------------------------------------------------------------------- files


def _macro_paths(config: Path, value: str | None, field: str) -> tuple[Path, ...]:
    """``PreprocessingFile`` value -> macro paths in the bundle folder (kept even when missing; validation reports)."""
    if value is None:
        return ()
    names = [v.strip() for v in value.split(",") if v.strip() and v.strip().lower() not in _NULLS]
    paths = (local_path(config.parent, n, descriptor=config, field=field) for n in names)
    return tuple(p for p in paths if p is not None)


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).is_file():
            return folder / n
    return None


def _read_weights(
    info: _Fields, folder: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> dict[str, WeightsSpec]:
    tag = info.text(f"{_MC}/ModelTag")
    signature = info.text(f"{_MC}/SignatureDefinition")
    if (folder / SAVED_MODEL_PB).is_file() and not (folder / SAVED_MODEL_ZIP).exists():
        source, wpath = "./", folder
    else:
        source, wpath = f"./{SAVED_MODEL_ZIP}", folder / SAVED_MODEL_ZIP
    weights = {
        "tensorflow_saved_model_bundle": WeightsSpec(
            format="tensorflow_saved_model_bundle",
            source=source,
            path=wpath,
            tag=tensorflow_tag(tag),
            signature=tensorflow_signature(signature),
            input_names=tuple(t.name for t in inputs),
            output_names=tuple(t.name for t in outputs),
        )
    }
    h5 = (
        sorted(p for p in folder.iterdir() if p.suffix.lower() in (".h5", ".hdf5") and p.is_file())
        if folder.is_dir()
        else []
    )
    if len(h5) == 1:
        weights["keras_hdf5"] = WeightsSpec(format="keras_hdf5", source=f"./{h5[0].name}", path=h5[0])
    return weights


# --------------------------------------------------------------------------- metadata


def _split_authors(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    parts = [p.strip() for chunk in value.split(";") for p in chunk.split(",")]
    return tuple(p for p in parts if p)


def _extra(info: _Fields) -> dict[str, object]:
    """Informative fields kept as written (shown by ``deepimagej info``)."""
    fields = {
        "url": f"{_MI}/URL",
        "credit": f"{_MI}/Credit",
        "version": f"{_MI}/Version",
        "date": f"{_MI}/Date",
        "test_input_size": f"{_MT}/InputSize",
        "test_output_size": f"{_MT}/OutputSize",
        "model_tag": f"{_MC}/ModelTag",
        "signature_definition": f"{_MC}/SignatureDefinition",
        "slices": f"{_MC}/slices",
    }
    extra: dict[str, object] = {}
    for key, field in fields.items():
        value = info.text(field)
        if value is not None:
            extra[key] = value
    return extra
