"""``deepimagej test``: run a bundle on its own test input and compare with its reference output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepimagej import predict
from deepimagej.bundle.spec import ModelSpec
from deepimagej.errors import BundleError
from deepimagej.io import read_image

#: Default tolerance on the maximum absolute difference for continuous outputs.
DEFAULT_TOLERANCE = 1e-3
#: Fraction of pixels that must agree for binary / label outputs (a threshold flips a few
#: pixels whose probability is within float error of it between runtimes).
DEFAULT_AGREEMENT = 0.999


@dataclass(frozen=True)
class CheckReport:
    """Result of running a bundle on its test input.

    Attributes:
        weights_format: the weights that ran.
        max_abs_diff: largest absolute difference to the reference.
        agreement: fraction of equal pixels (binary/label references), else ``None``.
        passed: whether the output matches within tolerance.
        reference: file compared against.
        message: one-line summary.
    """

    weights_format: str
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


def _test_pair(spec: ModelSpec) -> tuple[np.ndarray, str, np.ndarray, Path]:
    """Test input (with axes) and reference output of a bundle."""
    tin, tout = spec.inputs[0].test_tensor, spec.outputs[0].test_tensor
    if tin is not None and tout is not None and tin.is_file() and tout.is_file():
        return np.load(tin), spec.inputs[0].axis_names, np.load(tout), tout
    if spec.sample_inputs and spec.sample_outputs and spec.sample_inputs[0].is_file() and spec.sample_outputs[0].is_file():
        image = read_image(spec.sample_inputs[0])
        reference = read_image(spec.sample_outputs[0]).array
        return image.array, image.axes, reference, spec.sample_outputs[0]
    raise BundleError(f"{spec.source.name}: no test input/output (test_inputs/test_outputs or exampleImage/resultImage) to compare")


def check_reference(
    spec: ModelSpec,
    *,
    weights_format: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_agreement: float = DEFAULT_AGREEMENT,
    tile: dict[str, int] | None = None,
) -> CheckReport:
    """Run ``spec`` on its test input and compare with the reference output.

    Continuous references pass when the maximum absolute difference is <= ``tolerance``;
    binary/label references when at least ``min_agreement`` of the pixels are equal.
    """
    image, axes, reference, ref_path = _test_pair(spec)
    # Stages that are ImageJ macros only are not run here (no ImageJ): the reference of a bundle
    # built by deepimagej is computed the same way; the message says so.
    skip_pre = bool(spec.preprocessing_macros) and not spec.inputs[0].processing
    skip_post = bool(spec.postprocessing_macros) and not spec.outputs[0].processing
    output = predict.run(spec, image, axes=axes, weights_format=weights_format, tile=tile,
                         apply_preprocessing=not skip_pre, apply_postprocessing=not skip_post)
    used = weights_format or spec.runnable_weights()[0].format
    output = np.squeeze(output)
    reference = np.squeeze(reference)
    if output.shape != reference.shape:
        return CheckReport(used, float("inf"), None, False, ref_path,
                          f"output shape {output.shape} differs from reference {reference.shape} ({ref_path.name})")
    diff = float(np.max(np.abs(output.astype(np.float64) - reference.astype(np.float64)))) if output.size else 0.0
    if _is_discrete(reference):
        agreement = float(np.mean(output == reference))
        passed = agreement >= min_agreement
        message = f"{used}: {agreement:.4%} of pixels equal to {ref_path.name} (need >= {min_agreement:.1%}), max abs diff {diff:.3g}"
    else:
        agreement = None
        passed = diff <= tolerance
        message = f"{used}: max abs diff to {ref_path.name} = {diff:.3g} (tolerance {tolerance:g})"
    if skip_pre or skip_post:
        message += " (ImageJ macros not run: test them with `deepimagej macro`)"
    return CheckReport(used, diff, agreement, passed, ref_path, message)
