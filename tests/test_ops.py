"""bioimage.io pre/post-processing operations (deepimagej.ops), checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej.bundle.spec import ProcessingStep
from deepimagej.errors import DeepImageJError
from deepimagej.ops import SUPPORTED_OPS, ProcessingError, apply_processing


def run(x, tensor_axes, name, **kwargs):
    return apply_processing(np.asarray(x), tensor_axes, [ProcessingStep(name, kwargs)])


# --------------------------------------------------------------------------------------------
# general behaviour
# --------------------------------------------------------------------------------------------


def test_input_is_never_modified_and_output_is_float32():
    x = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    before = x.copy()
    for step in [
        ProcessingStep("scale_linear", {"gain": 2.0, "offset": 1.0}),
        ProcessingStep("zero_mean_unit_variance", {"mode": "per_sample", "axes": "xy"}),
        ProcessingStep("clip", {"min": 0.0, "max": 5.0}),
        ProcessingStep("sigmoid", {}),
    ]:
        out = apply_processing(x, "byx", [step])
        assert out.dtype == np.float32 and out is not x
        assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)
    empty = apply_processing(x, "byx", [])
    assert empty is not x and empty.dtype == np.float32


def test_integer_input_is_computed_in_float32():
    x = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    out = run(x, "bx", "scale_linear", gain=1 / 255, offset=0.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 100 / 255, 200 / 255, 1.0]], rtol=1e-6)


def test_unknown_op_names_it_and_lists_supported():
    with pytest.raises(ProcessingError) as err:
        run(np.zeros((1, 2)), "bx", "stardist_magic")
    message = str(err.value)
    assert isinstance(err.value, DeepImageJError)
    assert "stardist_magic" in message and "scale_range" in message and "\n" not in message
    assert set(SUPPORTED_OPS) >= {
        "scale_range",
        "zero_mean_unit_variance",
        "fixed_zero_mean_unit_variance",
        "scale_linear",
        "clip",
        "binarize",
        "sigmoid",
        "softmax",
        "ensure_dtype",
        "scale_mean_variance",
    }


def test_axes_string_must_match_ndim():
    with pytest.raises(ProcessingError, match="2 dimensions"):
        run(np.zeros((2, 2)), "byx", "sigmoid")


def test_steps_are_applied_in_order():
    x = np.array([[-2.0, 0.0, 2.0]])
    steps = [ProcessingStep("scale_linear", {"gain": 2.0}), ProcessingStep("clip", {"min": -1.0, "max": 1.0})]
    np.testing.assert_array_equal(apply_processing(x, "bx", steps), [[-1, 0, 1]])
    steps = steps[::-1]
    np.testing.assert_array_equal(apply_processing(x, "bx", steps), [[-2, 0, 2]])


# --------------------------------------------------------------------------------------------
# normalisations
# --------------------------------------------------------------------------------------------


def test_zero_mean_unit_variance_per_sample():
    # two batch items, stats per item over y and x
    x = np.array([[[1.0, 3.0]], [[10.0, 30.0]]])  # b y x
    out = run(x, "byx", "zero_mean_unit_variance", mode="per_sample", axes="xy")
    # item 0: mean 2, std 1 -> (-1, 1) / (1 + 1e-6); item 1: mean 20, std 10
    np.testing.assert_allclose(out[0, 0], [-1 / (1 + 1e-6), 1 / (1 + 1e-6)], rtol=1e-6)
    np.testing.assert_allclose(out[1, 0], [-10 / (10 + 1e-6), 10 / (10 + 1e-6)], rtol=1e-6)


def test_zero_mean_unit_variance_eps_and_per_channel_axes():
    x = np.zeros((1, 2, 2, 2))  # b y x c
    x[..., 0] = [[1, 1], [1, 1]]  # constant channel: std 0 -> divided by eps only
    x[..., 1] = [[0, 2], [4, 6]]  # mean 3, std sqrt(5)
    out = run(x, "byxc", "zero_mean_unit_variance", axes="xy", eps=0.5)  # mode defaults to per_sample
    np.testing.assert_allclose(out[..., 0], 0.0)
    np.testing.assert_allclose(
        out[0, :, :, 1], (np.array([[0, 2], [4, 6]]) - 3) / (np.sqrt(5) + 0.5), rtol=1e-6
    )
    # axes "xyc": one mean/std over both channels
    joint = run(x, "byxc", "zero_mean_unit_variance", axes="xyc")
    values = x.ravel()
    np.testing.assert_allclose(joint.ravel(), (values - values.mean()) / (values.std() + 1e-6), rtol=1e-5)
    # axes missing in the tensor are ignored ("z" here)
    np.testing.assert_allclose(
        run(x, "byxc", "zero_mean_unit_variance", axes="zyx"),
        out * 0 + run(x, "byxc", "zero_mean_unit_variance", axes="xy"),
        rtol=1e-6,
    )


def test_zero_mean_unit_variance_per_dataset():
    x = np.array([[[0.0, 2.0]], [[4.0, 6.0]]])  # b y x: dataset mean 3, std sqrt(5)
    out = run(x, "byx", "zero_mean_unit_variance", mode="per_dataset", axes="xy")
    np.testing.assert_allclose(out.ravel(), (x.ravel() - 3) / (np.sqrt(5) + 1e-6), rtol=1e-6)
    stats = {"mean": 1.0, "std": 2.0}
    out = apply_processing(
        x,
        "byx",
        [ProcessingStep("zero_mean_unit_variance", {"mode": "per_dataset", "axes": "xy"})],
        dataset_stats=stats,
    )
    np.testing.assert_allclose(out.ravel(), (x.ravel() - 1) / (2 + 1e-6), rtol=1e-6)


def test_fixed_zero_mean_unit_variance_scalar_and_per_channel():
    x = np.array([[[[10.0, 20.0], [30.0, 40.0]]]])  # b y x c with y=1, x=2, c=2
    out = run(x, "byxc", "fixed_zero_mean_unit_variance", mean=10.0, std=5.0)
    np.testing.assert_allclose(out, (x - 10) / (5 + 1e-6), rtol=1e-6)
    out = run(x, "byxc", "fixed_zero_mean_unit_variance", mean=[10.0, 20.0], std=[1.0, 2.0])  # along c
    np.testing.assert_allclose(out[0, 0], [[0, 0], [20 / (1 + 1e-6), 20 / (2 + 1e-6)]], rtol=1e-6)
    # 0.4 form: zero_mean_unit_variance, mode fixed, lists along the axis not in ``axes``
    out04 = run(
        x, "byxc", "zero_mean_unit_variance", mode="fixed", axes="yx", mean=[10.0, 20.0], std=[1.0, 2.0]
    )
    np.testing.assert_allclose(out04, out)
    with pytest.raises(ProcessingError, match="3 values"):
        run(x, "byxc", "fixed_zero_mean_unit_variance", mean=[1.0, 2.0, 3.0], std=1.0, axis="c")


def test_scale_range_percentiles_per_sample():
    x = np.stack([np.arange(101.0), np.arange(101.0) * 2]).reshape(2, 1, 101)  # b y x
    out = run(x, "byx", "scale_range", mode="per_sample", axes="xy", min_percentile=10, max_percentile=90)
    # item 0: p10 = 10, p90 = 90; item 1: 20, 180
    np.testing.assert_allclose(out[0, 0, [10, 50, 90]], np.array([0, 40, 80]) / (80 + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(out[1, 0, [10, 50, 90]], np.array([0, 80, 160]) / (160 + 1e-6), rtol=1e-6)
    # defaults 0 / 100 percentiles = min / max
    out = run(x, "byx", "scale_range", axes="xy")
    np.testing.assert_allclose(out[:, 0, [0, 100]], [[0, 1], [0, 1]], atol=1e-6)


def test_scale_range_per_dataset_and_eps():
    x = np.array([[[0.0, 5.0]], [[10.0, 20.0]]])  # dataset min 0, max 20
    out = run(x, "byx", "scale_range", mode="per_dataset", axes="xy", eps=1.0)
    np.testing.assert_allclose(out.ravel(), x.ravel() / 21.0, rtol=1e-6)
    stats = {"percentiles": {1.0: 2.0, 99.0: 12.0}}
    step = ProcessingStep("scale_range", {"mode": "per_dataset", "min_percentile": 1, "max_percentile": 99})
    out = apply_processing(x, "byx", [step], dataset_stats=stats)
    np.testing.assert_allclose(out.ravel(), (x.ravel() - 2) / (10 + 1e-6), rtol=1e-6)


def test_scale_range_reference_tensor():
    x = np.array([[0.0, 1.0, 2.0]])  # b x
    ref = np.array([[10.0], [20.0], [30.0]])  # axes "xb": another axis order, range 10..30
    step = ProcessingStep("scale_range", {"reference_tensor": "raw", "axes": "x"})
    out = apply_processing(x, "bx", [step], references={"raw": (ref, "xb")})
    np.testing.assert_allclose(out, (x - 10) / (20 + 1e-6), rtol=1e-6)
    with pytest.warns(UserWarning, match="raw"):
        out = apply_processing(x, "bx", [step])  # reference missing: falls back to the tensor itself
    np.testing.assert_allclose(out, x / (2 + 1e-6), rtol=1e-6)
    two_items = np.array([[10.0, 30.0]])  # x b: two batch items against one
    with pytest.raises(ProcessingError, match="reference"):
        apply_processing(x, "bx", [step], references={"raw": (two_items, "xb")})


def test_scale_mean_variance():
    x = np.array([[0.0, 2.0]])  # mean 1, std 1
    ref = np.array([[10.0, 30.0]])  # mean 20, std 10
    step = ProcessingStep("scale_mean_variance", {"reference_tensor": "raw", "axes": "x", "eps": 0.0})
    out = apply_processing(x, "bx", [step], references={"raw": (ref, "bx")})
    np.testing.assert_allclose(out, ref, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# element-wise operations
# --------------------------------------------------------------------------------------------


def test_scale_linear_scalar_and_per_channel():
    x = np.ones((1, 2, 2, 3))  # b y x c
    out = run(x, "byxc", "scale_linear", gain=2.0, offset=-1.0)
    np.testing.assert_array_equal(out, np.ones_like(x))
    out = run(x, "byxc", "scale_linear", axes="xy", gain=[1.0, 2.0, 3.0], offset=[0.0, 0.5, 1.0])
    np.testing.assert_allclose(out[0, 1, 1], [1.0, 2.5, 4.0])
    out = run(x, "byxc", "scale_linear", axis="c", gain=[1.0, 2.0, 3.0])  # 0.5 form
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 2.0, 3.0])
    with pytest.raises(ProcessingError, match="give 'axis'"):
        run(np.ones((1, 3, 3)), "byx", "scale_linear", gain=[1.0, 2.0, 3.0])


def test_clip():
    x = np.array([[-5.0, 0.5, 5.0]])
    np.testing.assert_array_equal(run(x, "bx", "clip", min=0.0, max=1.0), [[0, 0.5, 1]])
    np.testing.assert_array_equal(run(x, "bx", "clip", min=0.0), [[0, 0.5, 5]])
    with pytest.raises(ProcessingError, match="min"):
        run(x, "bx", "clip")


def test_binarize_scalar_and_per_channel():
    x = np.array([[[0.2, 0.5, 0.7]]])  # b x c ... here c = 3 on the last axis
    out = run(x, "bxc", "binarize", threshold=0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[0, 0, 1]]])  # strictly greater than
    out = run(x, "bxc", "binarize", threshold=[0.1, 0.6, 0.6], axis="c")
    np.testing.assert_array_equal(out, [[[1, 0, 1]]])


def test_sigmoid_is_stable():
    x = np.array([[-1000.0, -1.0, 0.0, 1.0, 1000.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = run(x, "bx", "sigmoid")
    np.testing.assert_allclose(
        out, [[0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0]], rtol=1e-6, atol=1e-30
    )


def test_softmax_over_channels():
    x = np.zeros((1, 2, 3))  # b x c
    x[0, 0] = [0.0, np.log(2.0), np.log(5.0)]
    x[0, 1] = [1000.0, 1000.0, 1000.0]  # overflow-safe
    out = run(x, "bxc", "softmax")
    np.testing.assert_allclose(out[0, 0], [1 / 8, 2 / 8, 5 / 8], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], [1 / 3] * 3, rtol=1e-6)
    out = run(x, "bxc", "softmax", axis="x")
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ProcessingError, match="no axis 'c'"):
        run(np.zeros((1, 3)), "bx", "softmax")


def test_ensure_dtype():
    x = np.array([[0.4, 1.6, 255.0]])
    out = run(x, "bx", "ensure_dtype", dtype="uint8")
    assert out.dtype == np.uint8 and out.tolist() == [[0, 1, 255]]
    steps = [
        ProcessingStep("ensure_dtype", {"dtype": "float64"}),
        ProcessingStep("binarize", {"threshold": 1.0}),
    ]
    out = apply_processing(x, "bx", steps)
    assert out.dtype == np.float32  # later ops compute in float32 again
    with pytest.raises(ProcessingError, match="dtype"):
        run(x, "bx", "ensure_dtype", dtype="not-a-dtype")
