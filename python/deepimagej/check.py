"""``deepimagej test``: run a bundle on its own test inputs and compare every output with its reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepimagej import predict
from deepimagej.bundle.spec import ModelSpec
from deepimagej.errors import BundleError
from deepimagej.io import ImageData, load_npy, read_image

#: Default tolerance on the maximum absolute difference for continuous outputs.
DEFAULT_TOLERANCE = 1e-3
#: Fraction of pixels that must agree for binary / label outputs (a threshold flips a few
#: pixels whose probability is within float error of it between runtimes).
DEFAULT_AGREEMENT = 0.999


@dataclass(frozen=True)
class OutputCheck:
    """One output compared with its reference.

    Attributes:
        name: the output tensor.
        max_abs_diff: largest absolute difference to the reference (``inf`` on a shape mismatch).
        agreement: fraction of equal pixels (binary/label references), else ``None``.
        passed: whether the output matches within tolerance.
        reference: the file compared against.
        message: one-line summary.
    """

    name: str
    max_abs_diff: float
    agreement: float | None
    passed: bool
    reference: Path
    message: str


@dataclass(frozen=True)
class CheckReport:
    """Result of running a bundle on its test inputs, for one weights format.

    Attributes:
        weights_format: the weights that ran.
        outputs: one :class:`OutputCheck` per output.
        max_abs_diff: the largest difference over every output.
        agreement: the smallest agreement over the discrete outputs, else ``None``.
        passed: whether every output matches.
        reference: the first reference file.
        message: one-line summary of every output.
    """

    weights_format: str
    outputs: tuple[OutputCheck, ...]
    max_abs_diff: float
    agreement: float | None
    passed: bool
    reference: Path
    message: str


def _is_discrete(reference: np.ndarray) -> bool:
    if np.issubdtype(reference.dtype, np.integer) or reference.dtype == np.bool_:
        return True
    values = np.unique(reference[: min(reference.shape[0], 4)])
    return values.size <= 256 and bool(np.all(values == np.round(values)))


def _test_data(spec: ModelSpec) -> tuple[dict[str, ImageData], dict[str, tuple[np.ndarray, str, Path]]]:
    """Test inputs (with axes) and reference outputs (array, axes, file) of a bundle."""
    tensors = [*spec.inputs, *spec.outputs]
    files = [t.test_tensor for t in tensors if t.test_tensor is not None and t.test_tensor.is_file()]
    if len(files) == len(tensors):
        n = len(spec.inputs)
        inputs = {t.name: ImageData(load_npy(f), t.axis_names) for t, f in zip(spec.inputs, files[:n])}
        refs = {t.name: (load_npy(f), t.axis_names, f) for t, f in zip(spec.outputs, files[n:])}
        return inputs, refs
    if (
        len(spec.inputs) == 1
        and len(spec.outputs) == 1
        and spec.sample_inputs
        and spec.sample_outputs
        and spec.sample_inputs[0].is_file()
        and spec.sample_outputs[0].is_file()
    ):
        image = read_image(spec.sample_inputs[0])
        reference = read_image(spec.sample_outputs[0])
        refs = {spec.outputs[0].name: (reference.array, reference.axes, spec.sample_outputs[0])}
        return {spec.inputs[0].name: image}, refs
    raise BundleError(
        f"{spec.source.name}: no test input/output for every tensor (test_tensor / test_inputs + test_outputs, "
        "or exampleImage + resultImage) to compare"
    )


def _in_axes(array: np.ndarray, axes: str, target: str) -> np.ndarray:
    """``array`` (axes ``axes``) laid out in ``target``'s order: size-1 axes dropped or added as needed."""
    for a in [a for a in axes if a not in target]:
        if array.shape[axes.index(a)] != 1:
            return array  # not comparable axis by axis: the shape check reports it
        array = array.take(0, axis=axes.index(a))
        axes = axes.replace(a, "")
    for a in target:
        if a not in axes:
            array = array[..., np.newaxis]
            axes += a
    return np.transpose(array, [axes.index(a) for a in target])


def _compare(
    name: str,
    output: ImageData,
    reference: np.ndarray,
    ref_axes: str,
    ref_path: Path,
    tolerance: float,
    min_agreement: float,
) -> OutputCheck:
    out = np.squeeze(_in_axes(output.array, output.axes, ref_axes))
    ref = np.squeeze(reference)
    label = f"'{name}' vs {ref_path.name}"
    if out.shape != ref.shape:
        return OutputCheck(
            name,
            float("inf"),
            None,
            False,
            ref_path,
            f"{label}: output shape {out.shape} differs from the reference {ref.shape}",
        )
    diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) if out.size else 0.0
    if _is_discrete(ref):
        agreement = float(np.mean(out == ref))
        return OutputCheck(
            name,
            diff,
            agreement,
            agreement >= min_agreement,
            ref_path,
            f"{label}: {agreement:.4%} of pixels equal (need >= {min_agreement:.1%}), max abs diff {diff:.3g}",
        )
    return OutputCheck(
        name,
        diff,
        None,
        diff <= tolerance,
        ref_path,
        f"{label}: max abs diff {diff:.3g} (tolerance {tolerance:g})",
    )


def check_reference(
    spec: ModelSpec,
    *,
    weights_format: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_agreement: float = DEFAULT_AGREEMENT,
    tile: dict[str, int] | None = None,
    trust_code: bool = False,
    after_macros: Callable[[ModelSpec, dict[str, ImageData], str], dict[str, ImageData]] | None = None,
) -> CheckReport:
    """Run ``spec`` on its test inputs and compare every output with its reference.

    Continuous references pass when the maximum absolute difference is <= ``tolerance``;
    binary/label references when at least ``min_agreement`` of the pixels are equal.

    Args:
        after_macros: runs the bundle with its own ImageJ macros on the test inputs (the weights
            format given), for a bundle whose pre- or post-processing is a macro only: when the
            model's output differs from a reference, the reference is a result of the macros
            (DeepImageJ's resultImage), and the output after them is compared instead.
    """
    inputs, refs = _test_data(spec)
    # Stages that are ImageJ macros only are not run here (no ImageJ): the reference of a bundle
    # built by deepimagej is computed the same way; the message says so.
    skip_pre = bool(spec.preprocessing_macros) and not any(t.processing for t in spec.inputs)
    skip_post = bool(spec.postprocessing_macros) and not any(t.processing for t in spec.outputs)
    bound = predict.bind_inputs(
        spec, {n: d.array for n, d in inputs.items()}, {n: d.axes for n, d in inputs.items()}
    )
    result = predict.predict(
        spec,
        bound,
        weights_format=weights_format,
        tile=tile,
        trust_code=trust_code,
        apply_preprocessing=not skip_pre,
        apply_postprocessing=not skip_post,
    )
    used = result.run_plan.weights_format
    checks = tuple(
        _compare(name, result.outputs[name], ref, ref_axes, path, tolerance, min_agreement)
        for name, (ref, ref_axes, path) in refs.items()
    )
    note = " (ImageJ macros not run: test them with `deepimagej macro`)"
    if (skip_pre or skip_post) and after_macros is not None and not all(c.passed for c in checks):
        outputs = after_macros(spec, inputs, used)
        checks = tuple(
            _compare(name, outputs[name], ref, ref_axes, path, tolerance, min_agreement)
            for name, (ref, ref_axes, path) in refs.items()
        )
        macros = [
            *(spec.preprocessing_macros if skip_pre else ()),
            *(spec.postprocessing_macros if skip_post else ()),
        ]
        note = f" (after the bundle's ImageJ macros {', '.join(Path(m).name for m in macros)})"
    message = f"{used}: " + "; ".join(c.message for c in checks)
    if skip_pre or skip_post:
        message += note
    agreements = [c.agreement for c in checks if c.agreement is not None]
    return CheckReport(
        weights_format=used,
        outputs=checks,
        max_abs_diff=max(c.max_abs_diff for c in checks),
        agreement=min(agreements) if agreements else None,
        passed=all(c.passed for c in checks),
        reference=checks[0].reference,
        message=message,
    )
