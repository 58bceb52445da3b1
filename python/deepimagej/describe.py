"""Human-readable descriptions of bundles (``deepimagej info`` / ``deepimagej list``, Explore)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from deepimagej.audit import Audit, audit_bundle, audit_weights, require_allowed
from deepimagej.bundle import is_descriptor_name, load_bundle
from deepimagej.bundle.spec import AxisSpec, ModelSpec, TensorSpec
from deepimagej.errors import DeepImageJError
from deepimagej.io import ImageData


def _axis_text(axis: AxisSpec) -> str:
    if axis.size is not None:
        size = str(axis.size)
    elif axis.reference is not None:
        size = f"={axis.reference[0]}.{axis.reference[1]}"
        if axis.scale != 1 or axis.offset:
            size += f"*{axis.scale:g}+{2 * axis.offset:g}"
    elif axis.step == 0:
        size = str(axis.min)
    else:
        size = f"{axis.min}+n*{axis.step}"
    halo = f" halo {axis.halo}" if axis.halo else ""
    return f"{axis.name}:{size}{halo}"


def _tensor_lines(kind: str, tensor: TensorSpec) -> list[str]:
    lines = [
        f"{kind} '{tensor.name}' axes {tensor.axis_names} ({tensor.data_type}): "
        + ", ".join(_axis_text(a) for a in tensor.axes)
    ]
    for step in tensor.processing:
        args = ", ".join(f"{k}={v}" for k, v in step.kwargs.items())
        lines.append(f"    {'pre' if kind == 'input' else 'post'}: {step.name}({args})")
    return lines


def describe(spec: ModelSpec, *, layers: bool = True, trust: bool = False) -> list[str]:
    """Lines describing a bundle: tensors, tiling, processing, weights, the audit and (optionally) layers.

    Layers are summarised by loading the weights, which runs the bundle's code: a bundle whose
    audit refuses something is loaded only when trusted (``trust`` or a trust record).
    """
    lines = [f"name        : {spec.name}", f"descriptor  : {spec.source} ({spec.kind} {spec.format_version})"]
    if spec.description:
        lines.append(f"description : {spec.description.strip().splitlines()[0]}")
    if spec.authors:
        lines.append(f"authors     : {', '.join(spec.authors)}")
    for t in spec.inputs:
        lines += _tensor_lines("input", t)
    for t in spec.outputs:
        lines += _tensor_lines("output", t)
    tiling = spec.deepimagej_tiling
    if tiling is not None:
        lines.append(
            f"tiling      : {'fixed' if tiling.fixed_patch else 'free'} patch {tiling.patch_size}, "
            f"minimum {tiling.minimum_size}, padding {tiling.padding}"
        )
    if spec.border != "mirror":
        lines.append(f"border      : {spec.border} beyond the image (not mirror padding)")
    if spec.test_time_augmentation:
        lines.append("augmented   : output averaged over the 8 rotations/reflections of the image")
    if spec.extra.get("detection"):
        settings = ", ".join(f"{k} {v}" for k, v in spec.extra["detection"].items())
        lines.append(f"detection   : {settings}")
    for path in spec.preprocessing_macros:
        lines.append(f"pre macro   : {path.name}{'' if path.exists() else ' (missing)'}")
    for path in spec.postprocessing_macros:
        lines.append(f"post macro  : {path.name}{'' if path.exists() else ' (missing)'}")
    for fmt, w in spec.weights.items():
        where = "remote" if w.path is None else ("present" if w.path.exists() else "missing")
        lines.append(f"weights     : {fmt}: {w.source} ({where})")
    if spec.pixel_size:
        lines.append(f"pixel size  : {spec.pixel_size}")
    if spec.runtime or spec.memory_peak:
        lines.append(f"measured    : runtime {spec.runtime or '?'}, memory peak {spec.memory_peak or '?'}")
    try:
        report = audit_bundle(spec)
    except DeepImageJError as exc:
        return [*lines, f"audit       : cannot audit the weights: {exc}", "layers      : not loaded"]
    lines += audit_lines(report, spec)
    if layers:
        lines += _layer_lines(spec, trust=trust or report.trust is not None)
    return lines


def audit_lines(report: Audit, spec: ModelSpec) -> list[str]:
    """The audit of a bundle as ``info`` shows it: what was inspected, found, refused; the trust record."""
    checked = ", ".join(report.audited) or "no weights file or macro present"
    if not report.findings:
        return [f"audit       : nothing found in {checked}: computation only"]
    refused = report.refused
    lines = [f"audit       : {len(report.findings)} finding(s) in {checked}, {len(refused)} refused"]
    lines += [
        f"    {'refused' if f.refused else 'note'}: {f.source}: {f.what}: {f.detail}" for f in report.findings
    ]
    if report.trust is not None:
        lines.append(
            f"trust       : trusted on {report.trust.get('trusted_at', '?')} (deepimagej trust --revoke {spec.root})"
        )
    elif refused:
        files = ", ".join(sorted({f.source for f in refused}))
        lines.append(
            f"trust       : not trusted: runs of {files} are refused; `deepimagej trust {spec.root}` or --trust"
        )
    return lines


def _layer_lines(spec: ModelSpec, trust: bool = False) -> list[str]:
    from deepimagej.engines import load_engine

    present = [
        w
        for w in spec.runnable_weights()
        if w.path is not None
        and w.path.exists()
        and w.format != "pytorch_state_dict"  # would run the bundle's code
    ]
    if not present:
        return [
            "layers      : (no runnable weights file present that can be inspected without running its code)"
        ]
    if not trust and any(f.refused for f in audit_weights(present[0], spec.root)):
        return [
            f"layers      : not loaded ({present[0].format}: loading runs what the audit refuses; --trust to load)"
        ]
    try:
        engine = load_engine(
            present[0], [t.name for t in spec.inputs], [t.name for t in spec.outputs], trust_code=trust
        )
    except DeepImageJError as exc:
        return [f"layers      : cannot load {present[0].format}: {exc}"]
    return [f"layers      : {present[0].format} ({engine.runtime})", *engine.describe()]


def find_bundles(folder: Path) -> list[Path]:
    """Bundle folders under ``folder``: every folder holding a descriptor file."""
    found = set()
    for path in folder.rglob("*"):
        if (
            is_descriptor_name(path.name)
            and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        ):
            found.add(path.parent)
    return sorted(found)


def one_line(bundle_dir: Path, root: Path | None = None) -> str:
    """``name-of-folder: model name - description`` or ``folder: ERROR message``."""
    label = str(bundle_dir.relative_to(root)) if root else str(bundle_dir)
    try:
        spec = load_bundle(bundle_dir)
    except DeepImageJError as exc:
        return f"{label}: BROKEN - {exc}"
    desc = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
    if len(desc) > 90:
        desc = desc[:87] + "..."
    formats = (
        ",".join(
            w.format.replace("tensorflow_saved_model_bundle", "tensorflow")
            for w in spec.runnable_weights()
            if w.path is not None and w.path.exists()
        )
        or "no weights"
    )
    return f"{label}: {spec.name} [{formats}]" + (f" - {desc}" if desc else "")


def describe_plan(
    spec: ModelSpec,
    images: Mapping[str, ImageData],
    *,
    tile: dict[str, int] | None = None,
    max_memory: str | int | None = None,
    weights_format: str | None = None,
    trust: bool = False,
) -> list[str]:
    """How a run on ``images`` would go: tiles, batch and the estimated peak memory.

    The model's memory is measured once (a short run in a separate process, cached): a bundle
    whose audit refuses something is run only when trusted (``trust`` or a trust record).
    """
    from deepimagej import predict
    from deepimagej.bundle.validate import check_bundle
    from deepimagej.layout import Layout, is_lazy

    bound = predict.bind_inputs(spec, images)
    weights = check_bundle(spec, weights_format)
    trusted = require_allowed(spec, weights, trust)
    tensors = {}
    for t in spec.inputs:
        mapping = Layout.of(bound[t.name].axes, t)
        tensors[t.name] = (mapping.to_model(bound[t.name].array), mapping.model_axes)
    streamed = any(
        is_lazy(d.array) for d in bound.values()
    )  # too large for memory: read and written by blocks
    run_plan = predict.plan_run(
        spec,
        tensors,
        None,
        weights_format=weights.format,
        tile=tile,
        max_memory=max_memory,
        measure=True,
        trust_code=trusted,
        streamed=streamed,
    )
    shape = ", ".join(f"{n} {tuple(d.array.shape)} [{d.axes}]" for n, d in bound.items())
    how = (
        ["run         : streamed (read block by block; write it to -o RESULT.ome.zarr or .tif)"]
        if streamed
        else []
    )
    return [f"image       : {shape}", *how, *run_plan.describe()]


def describe_architecture(spec: ModelSpec) -> list[str]:
    """Layers / operations of the bundle's first runnable weights (loads the model unless its audit refuses it)."""
    return _layer_lines(spec, trust=audit_bundle(spec).trust is not None)
