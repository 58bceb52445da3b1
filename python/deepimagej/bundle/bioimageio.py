"""Read bioimage.io model descriptors (``rdf.yaml``, ``bioimageio.yaml``, ``model.yaml``).

Format versions:

- **0.3 / 0.4**: tensors have ``name``, an ``axes`` string (``byxc``), ``shape`` as a list
  (fixed), ``{min, step}`` (inputs) or ``{reference_tensor | reference_input, scale, offset}``
  (outputs), ``halo`` as a list; ``test_inputs`` / ``test_outputs`` are top-level lists;
  processing steps are ``{name, kwargs}``.
- **0.5**: tensors have ``id`` and a list of axis dicts (``type``, ``id``, ``size`` as an int,
  ``{min, step}`` or ``{tensor_id, axis_id, offset}``, ``halo``, ``scale``, ``channel_names``);
  ``test_tensor`` / ``sample_tensor`` sit on each tensor; processing steps are ``{id, kwargs}``.
- **legacy** (the 2020 DeepImageJ ``*.model.yaml``, ``format_version: null``): 0.3-style
  tensors with a top-level ``model`` weights entry and ``prediction`` block.

DeepImageJ's ``config.deepimagej`` block is read too: ImageJ macros listed under
``prediction.preprocess`` / ``postprocess`` (``spec: ij.IJ::runMacroFile``), the TensorFlow
tag and signature (``model_keys``), ``allow_tiling`` and the measured test information.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, overload

from deepimagej.bundle.axes import axis_id_letter, field_error, normalize_axes, one_line
from deepimagej.bundle.descriptor_yaml import load_yaml
from deepimagej.bundle.files import local_path
from deepimagej.bundle.formats import (
    SAVED_MODEL_PB,
    VERSION_FIELDS,
    descriptor_weight_format,
    tensorflow_signature,
    tensorflow_tag,
)
from deepimagej.bundle.spec import (
    BORDER_MODES,
    DATA_TYPES,
    DETECTION_KEYS,
    OWN_CONFIG_KEY,
    SPATIAL_AXES,
    ArchitectureSpec,
    AxisSpec,
    ModelSpec,
    ProcessingStep,
    TensorSpec,
    WeightsSpec,
)
from deepimagej.errors import BundleError

#: Spec strings of ``config.deepimagej.prediction`` entries that run an ImageJ macro file.
MACRO_SPECS = ("ij.IJ::runMacroFile", "deepimagej.runMacro")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
#: Processing kwargs that hold numbers (or per-channel lists of numbers).
NUMERIC_KWARGS = (
    "min_percentile",
    "max_percentile",
    "eps",
    "gain",
    "offset",
    "mean",
    "std",
    "threshold",
    "min",
    "max",
)
_VERSION_FIELDS = tuple(dict.fromkeys(VERSION_FIELDS.values()))


def read_rdf(path: Path) -> ModelSpec:
    """Read a bioimage.io model descriptor (format 0.3, 0.4, 0.5 or the 2020 DeepImageJ yaml).

    Args:
        path: the YAML file.

    Returns:
        The model description (``kind="bioimageio"``).

    Raises:
        BundleError: unreadable or malformed YAML, unknown ``format_version``, or a missing /
            invalid field (one line, naming the file and the field).
    """
    path = Path(path)
    data = load_yaml(path)
    version = _format_version(path, data)
    reader = _Reader(path, data, version)
    return reader.read()


def _format_version(path: Path, data: dict[str, Any]) -> str:
    """``"0.3"``, ``"0.4"``, ``"0.5"`` or ``"legacy"``."""
    raw = data.get("format_version")
    if raw is None:
        if "model" in data and "inputs" in data:
            return "legacy"
        raise field_error(path, "format_version", "a bioimage.io format version (0.3.x, 0.4.x or 0.5.x)")
    text = str(raw).strip()
    match = re.match(r"^(\d+)\.(\d+)(\.\d+)?$", text)
    if not match or (match.group(1), match.group(2)) not in (("0", "3"), ("0", "4"), ("0", "5")):
        raise field_error(path, "format_version", "0.3.x, 0.4.x or 0.5.x (the formats deepimagej reads)", raw)
    return f"0.{match.group(2)}"


@dataclass
class _RawAxis:
    """A 0.5 axis before size references are resolved."""

    letter: str
    data: dict[str, Any]
    field: str


class _Reader:
    """One descriptor being read; holds the path for error messages."""

    def __init__(self, path: Path, data: dict[str, Any], version: str):
        self.path = path
        self.root = path.parent
        self.data = data
        self.version = version

    # ------------------------------------------------------------------ top level

    def read(self) -> ModelSpec:
        data = self.data
        kind = data.get("type", "model")
        if kind != "model":
            raise field_error(self.path, "type", "'model' (deepimagej runs model descriptors)", kind)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise field_error(self.path, "name", "a non-empty string", name)
        if self.version == "0.5":
            inputs, outputs = self._tensors_v05()
        else:
            inputs, outputs = self._tensors_v04()
        dij = self._deepimagej_config()
        weights = self._weights(inputs, outputs, dij)
        pre, post, java = self._macros(dij)
        sample_in = self._top_paths("sample_inputs")
        sample_out = self._top_paths("sample_outputs")
        if not sample_in:
            sample_in = tuple(t.sample_tensor for t in inputs if t.sample_tensor is not None)
        if not sample_out:
            sample_out = tuple(t.sample_tensor for t in outputs if t.sample_tensor is not None)
        raw_test_info = dij.get("test_information")
        test_info: Mapping[str, Any] = raw_test_info if isinstance(raw_test_info, Mapping) else {}
        extra = self._extra(dij, test_info, java)
        return ModelSpec(
            name=name.strip(),
            source=self.path,
            kind="bioimageio",
            format_version=str(data.get("format_version") or "0.2 (DeepImageJ 2020)"),
            inputs=inputs,
            outputs=outputs,
            weights=weights,
            description=str(data.get("description") or ""),
            authors=self._authors(),
            cite=self._cite(),
            tags=tuple(str(t) for t in (data.get("tags") or []) if t is not None)
            if isinstance(data.get("tags"), list)
            else (),
            license=str(data["license"]) if data.get("license") else None,
            documentation=self._documentation(),
            preprocessing_macros=pre,
            postprocessing_macros=post,
            sample_inputs=sample_in,
            sample_outputs=sample_out,
            pixel_size=_pixel_size(test_info) or self._axes_pixel_size(),
            memory_peak=_text(test_info.get("memory_peak")),
            runtime=_text(test_info.get("runtime")),
            border=self._border(),
            test_time_augmentation=self._test_time_augmentation(),
            extra=extra,
        )

    def _axes_pixel_size(self) -> str | None:
        """0.5: the first input's spatial axes' ``scale`` and ``unit`` as ``"0.5micrometer x ..."`` (x, y, z)."""
        inputs = self.data.get("inputs")
        if (
            self.version != "0.5"
            or not isinstance(inputs, list)
            or not inputs
            or not isinstance(inputs[0], dict)
        ):
            return None
        sizes = {}
        for raw in self._raw_axes_v05(inputs[0].get("axes"), "inputs[0].axes"):
            if raw.letter in SPATIAL_AXES and raw.data.get("unit"):
                sizes[raw.letter] = f"{raw.data.get('scale', 1.0)}{raw.data['unit']}"
        return " x ".join(sizes[a] for a in "xyz" if a in sizes) or None

    def _own_config(self) -> dict[str, Any]:
        """This package's block ``config.deepimagej_py`` (empty when absent)."""
        config = self.data.get("config")
        ours = config.get(OWN_CONFIG_KEY) if isinstance(config, dict) else None
        if ours is not None and not isinstance(ours, dict):
            raise field_error(self.path, f"config.{OWN_CONFIG_KEY}", "a mapping", ours)
        return ours or {}

    def _detection_settings(self) -> dict[str, float] | None:
        """``config.deepimagej_py.detection``: peak-finding settings of a detection model."""
        settings = self._own_config().get("detection")
        if settings is None:
            return None
        field = f"config.{OWN_CONFIG_KEY}.detection"
        if not isinstance(settings, dict):
            raise field_error(
                self.path, field, "a mapping with keys among " + ", ".join(DETECTION_KEYS), settings
            )
        out = {}
        for key, value in settings.items():
            if key not in DETECTION_KEYS:
                raise field_error(self.path, f"{field}.{key}", "one of " + ", ".join(DETECTION_KEYS), key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise field_error(self.path, f"{field}.{key}", "a number >= 0", value)
            out[key] = value
        return out

    def _test_time_augmentation(self) -> bool:
        """``config.deepimagej_py.test_time_augmentation`` (default ``false``)."""
        value = self._own_config().get("test_time_augmentation", False)
        if not isinstance(value, bool):
            raise field_error(
                self.path, f"config.{OWN_CONFIG_KEY}.test_time_augmentation", "true or false", value
            )
        return value

    def _border(self) -> str:
        """``config.deepimagej_py.border`` (default ``"mirror"``)."""
        ours = self._own_config()
        if ours.get("border") is None:
            return "mirror"
        border = ours["border"]
        if border not in BORDER_MODES:
            raise field_error(
                self.path, f"config.{OWN_CONFIG_KEY}.border", " or ".join(map(repr, BORDER_MODES)), border
            )
        return str(border)

    def _list(self, key: str, *, required: bool) -> list[Any]:
        value = self.data.get(key)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (required and not value):
            raise field_error(self.path, key, "a non-empty list" if required else "a list", value)
        return value

    def _mapping(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise field_error(self.path, field, "a mapping (key: value)", value)
        return value

    def _source(self, value: Any, field: str) -> tuple[str, Path | None]:
        """A file reference written as ``path`` or ``{source: path}`` -> (source, local path)."""
        if isinstance(value, dict):
            value = value.get("source")
            field = f"{field}.source"
        if not isinstance(value, str) or not value.strip():
            raise field_error(self.path, field, "a relative file path or URL", value)
        return value.strip(), local_path(self.root, value.strip(), descriptor=self.path, field=field)

    def _top_paths(self, key: str) -> tuple[Path, ...]:
        paths = []
        for i, item in enumerate(self._list(key, required=False)):
            _, local = self._source(item, f"{key}[{i}]")
            if local is not None:
                paths.append(local)
        return tuple(paths)

    # ------------------------------------------------------------------ tensors 0.3 / 0.4

    def _tensors_v04(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        raw_in = self._list("inputs", required=True)
        raw_out = self._list("outputs", required=True)
        names = self._names(raw_in, raw_out, "name")
        inputs: list[TensorSpec] = []
        for i, t in enumerate(raw_in):
            inputs.append(self._tensor_v04(t, f"inputs[{i}]", names[i], "preprocessing", inputs))
        outputs = []
        for i, t in enumerate(raw_out):
            outputs.append(
                self._tensor_v04(t, f"outputs[{i}]", names[len(raw_in) + i], "postprocessing", inputs)
            )
        inputs_t = self._attach_tests(tuple(inputs), "test_inputs", "test_input")
        outputs_t = self._attach_tests(tuple(outputs), "test_outputs", "test_output")
        return self._attach_samples(inputs_t, "sample_inputs"), self._attach_samples(
            outputs_t, "sample_outputs"
        )

    def _attach_samples(self, tensors: tuple[TensorSpec, ...], key: str) -> tuple[TensorSpec, ...]:
        """Top-level ``sample_inputs`` / ``sample_outputs`` -> ``TensorSpec.sample_tensor`` in order."""
        samples = self._top_paths(key)
        return tuple(
            replace(t, sample_tensor=samples[i]) if i < len(samples) else t for i, t in enumerate(tensors)
        )

    def _names(self, raw_in: list[Any], raw_out: list[Any], key: str) -> list[str]:
        """Tensor names, checked for presence and uniqueness across inputs and outputs."""
        names: list[str] = []
        where: dict[str, str] = {}
        for kind, tensors in (("inputs", raw_in), ("outputs", raw_out)):
            for i, t in enumerate(tensors):
                field = f"{kind}[{i}]"
                t = self._mapping(t, field)
                name = t.get(key, t.get("name") if key == "id" else None)
                if not isinstance(name, str) or not name.strip():
                    raise field_error(self.path, f"{field}.{key}", "a non-empty tensor name", name)
                if name in where:
                    raise field_error(
                        self.path, f"{field}.{key}", f"a tensor name not already used by {where[name]}", name
                    )
                where[name] = field
                names.append(name)
        return names

    def _tensor_v04(
        self, t: dict[str, Any], field: str, name: str, processing_key: str, inputs: list[TensorSpec]
    ) -> TensorSpec:
        axes = normalize_axes(t.get("axes"), source=self.path, field=f"{field}.axes")
        shape = t.get("shape")
        if isinstance(shape, list):
            sizes = self._int_list(shape, len(axes), f"{field}.shape", minimum=-1)
            if 0 in sizes:
                raise field_error(self.path, f"{field}.shape", "positive sizes (-1 = any size)", shape)
            spec_axes = [_fixed_or_free(a, n) for a, n in zip(axes, sizes)]
        elif isinstance(shape, dict) and ("min" in shape or "step" in shape):
            mins = self._int_list(shape.get("min"), len(axes), f"{field}.shape.min", minimum=1)
            steps = self._int_list(shape.get("step"), len(axes), f"{field}.shape.step", minimum=0)
            spec_axes = [_parametrized(a, m, s) for a, m, s in zip(axes, mins, steps)]
        elif isinstance(shape, dict):
            spec_axes = self._referenced_v04(shape, axes, field, name, inputs)
        else:
            raise field_error(
                self.path,
                f"{field}.shape",
                "a list of sizes, {min, step} or {reference_tensor, scale, offset}",
                shape,
            )
        halo = t.get("halo")
        if halo is not None:
            halos = self._int_list(halo, len(axes), f"{field}.halo", minimum=0)
            spec_axes = [replace(a, halo=h) for a, h in zip(spec_axes, halos)]
        return TensorSpec(
            name=name,
            axes=tuple(spec_axes),
            data_type=self._data_type(t.get("data_type"), f"{field}.data_type"),
            data_range=self._data_range(t.get("data_range"), f"{field}.data_range"),
            description=str(t.get("description") or ""),
            processing=self._processing(t.get(processing_key), f"{field}.{processing_key}", "name"),
        )

    def _referenced_v04(
        self, shape: dict[str, Any], axes: str, field: str, name: str, inputs: list[TensorSpec]
    ) -> list[AxisSpec]:
        ref_key = "reference_tensor" if "reference_tensor" in shape else "reference_input"
        ref_name = shape.get(ref_key)
        known = {t.name: t for t in inputs}
        if ref_name not in known:
            raise field_error(
                self.path,
                f"{field}.shape.{ref_key}",
                f"the name of an input tensor ({', '.join(known) or 'none yet'})",
                ref_name,
            )
        ref = known[ref_name]
        n = len(axes)
        scales = self._number_list(shape.get("scale", [1.0] * n), n, f"{field}.shape.scale", allow_none=True)
        offsets = self._number_list(
            shape.get("offset", [0.0] * n), n, f"{field}.shape.offset", allow_none=False
        )
        result = []
        for a, s, o in zip(axes, scales, offsets):
            if s is None or s == 0:
                size = round(2 * o)
                if size < 1:
                    raise field_error(
                        self.path,
                        f"{field}.shape.offset",
                        f"an offset giving axis {a!r} a size of at least 1 (size = 2 * offset)",
                        o,
                    )
                result.append(AxisSpec(a, size=size, min=size, step=0))
            elif ref.has_axis(a):
                result.append(AxisSpec(a, reference=(ref.name, a), scale=float(s), offset=float(o)))
            else:  # the reference has no such axis (e.g. an added batch axis): size unknown
                result.append(AxisSpec(a, min=1, step=1))
        return result

    def _attach_tests(
        self, tensors: tuple[TensorSpec, ...], key: str, legacy_key: str
    ) -> tuple[TensorSpec, ...]:
        """Top-level ``test_inputs`` / ``test_outputs`` -> ``TensorSpec.test_tensor`` in order."""
        raw = self.data.get(key)
        if raw is None and isinstance(self.data.get(legacy_key), str):
            raw = [self.data[legacy_key]]
        if raw is None:
            return tensors
        if not isinstance(raw, list):
            raise field_error(self.path, key, "a list of .npy files, one per tensor", raw)
        result = list(tensors)
        for i, item in enumerate(raw[: len(result)]):
            _, local = self._source(item, f"{key}[{i}]")
            result[i] = replace(result[i], test_tensor=local)
        return tuple(result)

    # ------------------------------------------------------------------ tensors 0.5

    def _tensors_v05(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        raw_in = self._list("inputs", required=True)
        raw_out = self._list("outputs", required=True)
        names = self._names(raw_in, raw_out, "id")
        raw_axes: dict[str, list[_RawAxis]] = {}
        fields: list[tuple[str, dict[str, Any], str]] = []
        for kind, tensors, offset in (("inputs", raw_in, 0), ("outputs", raw_out, len(raw_in))):
            for i, t in enumerate(tensors):
                field = f"{kind}[{i}]"
                raw_axes[names[offset + i]] = self._raw_axes_v05(t.get("axes"), f"{field}.axes")
                fields.append((field, t, names[offset + i]))
        tensors_out = []
        for field, t, name in fields:
            processing_key = "preprocessing" if field.startswith("inputs") else "postprocessing"
            axes = tuple(self._axis_v05(raw, raw_axes) for raw in raw_axes[name])
            test_src, test_sha = self._file_entry(t.get("test_tensor"), f"{field}.test_tensor")
            sample_src, _ = self._file_entry(t.get("sample_tensor"), f"{field}.sample_tensor")
            data = t.get("data")
            if isinstance(data, list) and data:
                data = data[0]
            data = data if isinstance(data, dict) else {}
            tensors_out.append(
                TensorSpec(
                    name=name,
                    axes=axes,
                    data_type=self._data_type(data.get("type"), f"{field}.data.type"),
                    data_range=self._data_range(data.get("range"), f"{field}.data.range"),
                    description=str(t.get("description") or ""),
                    processing=self._processing(t.get(processing_key), f"{field}.{processing_key}", "id"),
                    test_tensor=test_src,
                    test_tensor_sha256=test_sha,
                    sample_tensor=sample_src,
                )
            )
        return tuple(tensors_out[: len(raw_in)]), tuple(tensors_out[len(raw_in) :])

    def _raw_axes_v05(self, axes: Any, field: str) -> list[_RawAxis]:
        if isinstance(axes, str):  # tolerate a 0.4-style string in a 0.5 file
            return [
                _RawAxis(
                    a,
                    {"type": {"b": "batch", "c": "channel", "i": "index", "t": "time"}.get(a, "space")},
                    f"{field}[{j}]",
                )
                for j, a in enumerate(normalize_axes(axes, source=self.path, field=field))
            ]
        if not isinstance(axes, list) or not axes:
            raise field_error(
                self.path,
                field,
                "a non-empty list of axes ({type: batch|channel|space|time|index, ...})",
                axes,
            )
        result: list[_RawAxis] = []
        seen: set[str] = set()
        for j, axis in enumerate(axes):
            afield = f"{field}[{j}]"
            axis = self._mapping(axis, afield)
            kind = axis.get("type")
            if kind not in ("batch", "channel", "index", "time", "space"):
                raise field_error(
                    self.path, f"{afield}.type", "one of batch, channel, index, time, space", kind
                )
            default_id = {
                "batch": "batch",
                "channel": "channel",
                "index": "index",
                "time": "time",
                "space": "x",
            }[kind]
            axis_id = axis.get("id", default_id)
            letter = {"batch": "b", "channel": "c", "index": "i", "time": "t"}.get(kind)
            if letter is None:
                if not isinstance(axis_id, str) or axis_id.lower() not in ("x", "y", "z"):
                    raise field_error(self.path, f"{afield}.id", "x, y or z for a space axis", axis_id)
                letter = axis_id.lower()
            if letter in seen:
                raise field_error(
                    self.path, afield, f"a distinct axis (axis {letter!r} appears twice)", axis_id
                )
            seen.add(letter)
            result.append(_RawAxis(letter, axis, afield))
        return result

    def _axis_v05(self, raw: _RawAxis, all_axes: dict[str, list[_RawAxis]]) -> AxisSpec:
        d = raw.data
        halo = self._int(d.get("halo", 0), f"{raw.field}.halo", minimum=0)
        if raw.letter == "c" and d.get("channel_names") is not None:
            names = d["channel_names"]
            if not isinstance(names, list) or not names:
                raise field_error(self.path, f"{raw.field}.channel_names", "a non-empty list of names", names)
            n = len(names)
            return AxisSpec("c", size=n, min=n, step=0, channel_names=tuple(str(x) for x in names))
        size = d.get("size")
        if size is None:
            return AxisSpec(raw.letter, min=1, step=1, halo=halo)
        if isinstance(size, bool):
            raise field_error(
                self.path,
                f"{raw.field}.size",
                "a positive integer, {min, step} or {tensor_id, axis_id}",
                size,
            )
        if isinstance(size, int):
            if size < 1:
                raise field_error(self.path, f"{raw.field}.size", "a positive integer", size)
            return AxisSpec(raw.letter, size=size, min=size, step=0, halo=halo)
        if isinstance(size, dict) and "tensor_id" in size:
            return self._size_reference(raw, size, all_axes, halo)
        if isinstance(size, dict) and "step" in size:
            m = self._int(size.get("min"), f"{raw.field}.size.min", minimum=1)
            s = self._int(size.get("step"), f"{raw.field}.size.step", minimum=0)
            return replace(_parametrized(raw.letter, m, s), halo=halo)
        if isinstance(size, dict) and ("min" in size or "max" in size):  # data-dependent (outputs)
            m = self._int(size.get("min", 1), f"{raw.field}.size.min", minimum=1)
            return AxisSpec(raw.letter, min=m, step=1, halo=halo)
        raise field_error(
            self.path, f"{raw.field}.size", "a positive integer, {min, step} or {tensor_id, axis_id}", size
        )

    def _size_reference(
        self, raw: _RawAxis, size: dict[str, Any], all_axes: dict[str, list[_RawAxis]], halo: int
    ) -> AxisSpec:
        """``{tensor_id, axis_id, offset}``: size = ref.size * ref.scale / axis.scale + offset."""
        tensor_id = size.get("tensor_id")
        if tensor_id not in all_axes:
            raise field_error(
                self.path, f"{raw.field}.size.tensor_id", "the id of a tensor of this model", tensor_id
            )
        try:
            ref_letter = axis_id_letter(size.get("axis_id"))
        except (TypeError, ValueError):
            raise field_error(
                self.path,
                f"{raw.field}.size.axis_id",
                "an axis id of the referenced tensor",
                size.get("axis_id"),
            ) from None
        ref_axis = next((r for r in all_axes[tensor_id] if r.letter == ref_letter), None)
        if ref_axis is None:
            raise field_error(
                self.path,
                f"{raw.field}.size.axis_id",
                f"an axis of tensor {tensor_id!r}",
                size.get("axis_id"),
            )
        offset = self._number(size.get("offset", 0), f"{raw.field}.size.offset")
        own_scale = self._number(raw.data.get("scale", 1.0), f"{raw.field}.scale")
        ref_scale = self._number(ref_axis.data.get("scale", 1.0), f"{ref_axis.field}.scale")
        if own_scale <= 0 or ref_scale <= 0:
            raise field_error(self.path, f"{raw.field}.scale", "a positive number", raw.data.get("scale"))
        return AxisSpec(
            raw.letter,
            reference=(str(tensor_id), ref_letter),
            scale=ref_scale / own_scale,
            offset=offset / 2.0,
            halo=halo,
        )

    def _file_entry(self, value: Any, field: str) -> tuple[Path | None, str | None]:
        if value is None:
            return None, None
        _, local = self._source(value, field)
        sha = value.get("sha256") if isinstance(value, dict) else None
        return local, self._sha256(sha, f"{field}.sha256")

    # ------------------------------------------------------------------ processing

    def _processing(self, steps: Any, field: str, key: str) -> tuple[ProcessingStep, ...]:
        if steps is None:
            return ()
        if not isinstance(steps, list):
            raise field_error(self.path, field, "a list of {" + key + ", kwargs} steps", steps)
        result = []
        for i, step in enumerate(steps):
            sfield = f"{field}[{i}]"
            step = self._mapping(step, sfield)
            name = step.get(key, step.get("name"))
            if not isinstance(name, str) or not name:
                raise field_error(self.path, f"{sfield}.{key}", "the name of a bioimage.io operation", name)
            kwargs = step.get("kwargs") or {}
            kwargs = dict(self._mapping(kwargs, f"{sfield}.kwargs"))
            if isinstance(kwargs.get("axes"), (str, list, tuple)):
                kwargs["axes"] = normalize_axes(
                    kwargs["axes"], source=self.path, field=f"{sfield}.kwargs.axes"
                )
            for kwarg in NUMERIC_KWARGS:
                if kwarg in kwargs and not _numbers(kwargs[kwarg]):
                    raise field_error(
                        self.path, f"{sfield}.kwargs.{kwarg}", "a number or a list of numbers", kwargs[kwarg]
                    )
            if "mode" in kwargs and not isinstance(kwargs["mode"], str):
                raise field_error(
                    self.path, f"{sfield}.kwargs.mode", "a mode name such as per_sample", kwargs["mode"]
                )
            if isinstance(kwargs.get("axis"), str):  # 0.5: one axis id, e.g. "channel"
                kwargs["axis"] = normalize_axes(
                    [kwargs["axis"]], source=self.path, field=f"{sfield}.kwargs.axis"
                )
            result.append(ProcessingStep(name=name, kwargs=kwargs))
        return tuple(result)

    # ------------------------------------------------------------------ weights

    def _weights(
        self, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], dij: dict[str, Any]
    ) -> dict[str, WeightsSpec]:
        raw = self.data.get("weights")
        if raw is None and self.version == "legacy":
            raw = {"tensorflow_saved_model_bundle": self.data.get("model")}
        raw = self._mapping(raw, "weights")
        if not raw:
            raise field_error(
                self.path, "weights", "at least one weights entry (e.g. onnx: {source: weights.onnx})", raw
            )
        tag, signature = self._model_keys(dij)
        weights: dict[str, WeightsSpec] = {}
        for fmt, entry in raw.items():
            field = f"weights.{fmt}"
            entry = self._mapping(entry, field)
            source, local = self._source(entry.get("source"), f"{field}.source")
            if local is not None and local.name == SAVED_MODEL_PB:  # legacy: the SavedModel folder
                local = local.parent
            name = descriptor_weight_format(str(fmt), source=self.path)
            is_tf = name == "tensorflow_saved_model_bundle"
            sha = None if self.version == "legacy" else self._sha256(entry.get("sha256"), f"{field}.sha256")
            version = next((str(entry[k]) for k in _VERSION_FIELDS if entry.get(k) is not None), None)
            weights[name] = WeightsSpec(
                format=name,
                source=source,
                path=local,
                sha256=sha,
                tag=(tag or "serve") if is_tf else None,
                signature=(signature or "serving_default") if is_tf else None,
                input_names=tuple(t.name for t in inputs) if is_tf else (),
                output_names=tuple(t.name for t in outputs) if is_tf else (),
                version=version,
                architecture=self._architecture(entry, field) if name == "pytorch_state_dict" else None,
            )
        return weights

    def _architecture(self, entry: dict[str, Any], field: str) -> ArchitectureSpec | None:
        """``pytorch_state_dict`` architecture: 0.4 ``file.py:Name`` + ``architecture_sha256`` +
        ``kwargs``; 0.5 ``{source | import_from, callable, sha256, kwargs}``."""
        raw = entry.get("architecture")
        if raw is None:
            return None
        name: object  # checked below: the descriptor may hold anything
        source: str | None
        import_from: str | None
        if isinstance(raw, str):  # 0.4
            source, sep, name = raw.rpartition(":")
            if not sep or not source or not name:
                raise field_error(self.path, f"{field}.architecture", "'file.py:CallableName'", raw)
            kwargs = entry.get("kwargs") or {}
            sha = self._sha256(entry.get("architecture_sha256"), f"{field}.architecture_sha256")
            import_from = None
            if not source.endswith(".py"):  # an importable module, e.g. 'my_package.models'
                import_from, source = source, None
        else:
            raw = self._mapping(raw, f"{field}.architecture")
            name = raw.get("callable")
            source, import_from = raw.get("source"), raw.get("import_from")
            kwargs = raw.get("kwargs") or {}
            sha = self._sha256(raw.get("sha256"), f"{field}.architecture.sha256")
        if not isinstance(name, str) or not name.strip():
            raise field_error(
                self.path, f"{field}.architecture.callable", "the name of a class or function", name
            )
        if (source is None) == (import_from is None):
            raise field_error(
                self.path, f"{field}.architecture", "either a source file or an import_from module", raw
            )
        kwargs = self._mapping(kwargs, f"{field}.architecture.kwargs")
        path = None
        if source is not None:
            source, path = self._source(source, f"{field}.architecture.source")
        return ArchitectureSpec(
            callable=name.strip(),
            source=source,
            path=path,
            sha256=sha,
            import_from=str(import_from) if import_from else None,
            kwargs=dict(kwargs),
        )

    def _model_keys(self, dij: dict[str, Any]) -> tuple[str | None, str | None]:
        keys = dij.get("model_keys")
        if not isinstance(keys, dict):
            return None, None
        tag = keys.get("tensorflow_model_tag") or keys.get("model_tag")
        sig = (
            keys.get("tensorflow_siganture_def")
            or keys.get("tensorflow_signature_def")
            or keys.get("signature_definition")
        )
        tag = tensorflow_tag(str(tag)) if tag else None
        sig = tensorflow_signature(str(sig)) if sig else None
        return tag, sig

    def _data_type(self, value: Any, field: str) -> str:
        if value is None:
            return "float32"
        if value not in DATA_TYPES:
            raise field_error(self.path, field, "one of " + ", ".join(DATA_TYPES), value)
        return str(value)

    def _sha256(self, value: Any, field: str) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        if not _SHA256.match(text):
            raise field_error(self.path, field, "a SHA-256 checksum (64 hexadecimal characters)", value)
        return text.lower()

    # ------------------------------------------------------------------ DeepImageJ block

    def _deepimagej_config(self) -> dict[str, Any]:
        config = self.data.get("config")
        dij = config.get("deepimagej") if isinstance(config, dict) else None
        dij = dict(dij) if isinstance(dij, dict) else {}
        if self.version == "legacy" and isinstance(self.data.get("prediction"), dict):
            dij.setdefault("prediction", self.data["prediction"])
        return dij

    def _macros(self, dij: dict[str, Any]) -> tuple[tuple[Path, ...], tuple[Path, ...], list[str]]:
        """ImageJ macro files of ``prediction.preprocess/postprocess`` (+ other Java steps)."""
        prediction = dij.get("prediction")
        if not isinstance(prediction, dict):
            return (), (), []
        java: list[str] = []
        stages = []
        for stage in ("preprocess", "postprocess"):
            entries = prediction.get(stage)
            if isinstance(entries, dict):
                entries = [entries]
            paths = []
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict) or not entry.get("spec"):
                    continue
                spec = str(entry["spec"])
                kwargs = entry.get("kwargs")
                if isinstance(kwargs, dict):  # legacy `kwargs: {preprocessing.txt}`
                    kwargs = next(iter(kwargs), None)
                if spec.startswith(MACRO_SPECS) and isinstance(kwargs, str) and kwargs.strip():
                    field = f"config.deepimagej.prediction.{stage}.kwargs"
                    local = local_path(self.root, kwargs.strip(), descriptor=self.path, field=field)
                    if local is not None:
                        paths.append(local)
                else:
                    java.append(f"{stage}: {spec}" + (f" {kwargs}" if kwargs else ""))
            stages.append(tuple(paths))
        return stages[0], stages[1], java

    # ------------------------------------------------------------------ metadata

    def _authors(self) -> tuple[str, ...]:
        authors = self.data.get("authors")
        if isinstance(authors, (str, dict)):
            authors = [authors]
        result = []
        for a in authors if isinstance(authors, list) else []:
            name = a.get("name") if isinstance(a, dict) else a
            if name:
                result.append(str(name).strip())
        return tuple(result)

    def _cite(self) -> tuple[str, ...]:
        cite = self.data.get("cite")
        if isinstance(cite, dict):
            cite = [cite]
        result = []
        for c in cite if isinstance(cite, list) else []:
            text = c.get("text") if isinstance(c, dict) else c
            if text:
                result.append(one_line(str(text)))
        return tuple(result)

    def _documentation(self) -> Path | None:
        doc = self.data.get("documentation")
        if not isinstance(doc, str) or not doc.strip():
            return None
        try:
            return local_path(self.root, doc.strip())
        except BundleError:  # shown by `info` only: a link outside the bundle is not followed
            return None

    def _extra(self, dij: dict[str, Any], test_info: Mapping[str, Any], java: list[str]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for key in ("timestamp", "git_repo", "version", "download_url", "documentation"):
            if self.data.get(key) is not None:
                extra[key] = str(self.data[key])
        for key in ("allow_tiling", "pyramidal_model"):
            if isinstance(dij.get(key), bool):
                extra[key] = dij[key]
        if java:
            extra["java_processing"] = java
        detection = self._detection_settings()
        if detection is not None:
            extra["detection"] = detection
        inputs = test_info.get("inputs")
        outputs = test_info.get("outputs")
        first_in = inputs[0] if isinstance(inputs, list) and inputs else inputs
        first_out = outputs[0] if isinstance(outputs, list) and outputs else outputs
        if isinstance(first_in, dict) and first_in.get("size"):
            extra["test_input_size"] = str(first_in["size"])
        if isinstance(first_out, dict) and first_out.get("size"):
            extra["test_output_size"] = str(first_out["size"])
        for key, value in (("input_size", "test_input_size"), ("output_size", "test_output_size")):
            if test_info.get(key) and value not in extra:  # legacy
                extra[value] = _text(test_info[key])
        return extra

    # ------------------------------------------------------------------ scalars

    def _int(self, value: Any, field: str, *, minimum: int) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        if isinstance(value, float) and value.is_integer() and value >= minimum:
            return int(value)
        if not ok:
            expected = (
                "a positive integer"
                if minimum >= 1
                else ("a non-negative integer" if minimum == 0 else "an integer (-1 = any size)")
            )
            raise field_error(self.path, field, expected, value)
        return int(value)

    def _number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise field_error(self.path, field, "a number", value)
        return float(value)

    def _int_list(self, values: Any, n: int, field: str, *, minimum: int) -> list[int]:
        if not isinstance(values, list) or len(values) != n:
            raise field_error(self.path, field, f"a list of {n} integers, one per axis", values)
        return [self._int(v, f"{field}[{i}]", minimum=minimum) for i, v in enumerate(values)]

    @overload
    def _number_list(self, values: Any, n: int, field: str, *, allow_none: Literal[False]) -> list[float]: ...

    @overload
    def _number_list(
        self, values: Any, n: int, field: str, *, allow_none: Literal[True]
    ) -> list[float | None]: ...

    def _number_list(
        self, values: Any, n: int, field: str, *, allow_none: bool
    ) -> list[float] | list[float | None]:
        if not isinstance(values, list) or len(values) != n:
            raise field_error(self.path, field, f"a list of {n} numbers, one per axis", values)
        return [
            None if (v is None and allow_none) else self._number(v, f"{field}[{i}]")
            for i, v in enumerate(values)
        ]

    def _data_range(self, value: Any, field: str) -> tuple[float, float] | None:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise field_error(self.path, field, "a list [min, max]", value)
        try:
            low, high = (_float(v) for v in value)
        except (TypeError, ValueError):
            raise field_error(
                self.path, field, "a list [min, max] of numbers (-inf/inf allowed)", value
            ) from None
        return low, high


def _numbers(value: Any, depth: int = 0) -> bool:
    """A number, ``null``, or a (nested) list of numbers: what numeric processing kwargs hold.

    Numbers written as strings count (YAML 1.1 reads ``1e-06`` as a string; ``float`` takes it).
    """
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value is None or math.isfinite(value)
    return isinstance(value, list) and depth < 4 and all(_numbers(v, depth + 1) for v in value)


def _float(value: Any) -> float:
    """Numbers, ``"-inf"``/``"inf"`` strings and ``None`` (= unbounded) -> float."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise TypeError(value)
    return float(value)


def _fixed_or_free(name: str, n: int) -> AxisSpec:
    """A 0.3/0.4 explicit size; ``-1`` (seen in DeepImageJ 2.x yaml) means any size."""
    if n < 1:
        return AxisSpec(name, min=1, step=1)
    return AxisSpec(name, size=n, min=n, step=0)


def _parametrized(name: str, minimum: int, step: int) -> AxisSpec:
    if step == 0:
        return AxisSpec(name, size=minimum, min=minimum, step=0)
    return AxisSpec(name, min=minimum, step=step)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # a YAML flow list split a comma-decimal value: undo it
        value = ",".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _pixel_size(test_info: Mapping[str, Any]) -> str | None:
    """``test_information`` pixel size -> ``"1.30 µm x 1.30 µm"`` (as written, comma decimals kept)."""
    inputs = test_info.get("inputs")
    first = inputs[0] if isinstance(inputs, list) and inputs else inputs
    size = first.get("pixel_size") if isinstance(first, dict) else test_info.get("pixel_size")
    if isinstance(size, dict):
        parts = [_text(size.get(k)) for k in ("x", "y")]
        return " x ".join(p for p in parts if p) or None
    return _text(size)
