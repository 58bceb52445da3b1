"""bioimage.io pre- and post-processing operations in numpy.

:func:`apply_processing` applies a bundle's :class:`~deepimagej.bundle.spec.ProcessingStep`
list to an array whose dimensions are named by an axes string (``"byxc"``...). The same in two
passes: :func:`fit` computes what depends on the whole tensor (percentiles, mean, std) and the
returned :class:`Pipeline` applies the steps to any block of it with those statistics frozen,
so that each tile of a large image is normalised exactly as the whole image would be. Semantics follow
the bioimage.io model spec (0.4 ``name`` / 0.5 ``id``):

* ``scale_range``: ``(x - p_lo) / (p_hi - p_lo + eps)`` where ``p_lo``/``p_hi`` are the
  ``min_percentile`` (default 0) / ``max_percentile`` (default 100) percentiles over ``axes``;
  ``eps`` 1e-6; ``mode`` per_sample | per_dataset; ``reference_tensor`` takes the percentiles
  from another tensor.
* ``zero_mean_unit_variance``: ``(x - mean) / (std + eps)`` over ``axes``, ``eps`` 1e-6;
  ``mode`` per_sample | per_dataset | fixed (0.4; then ``mean``/``std`` are given).
* ``fixed_zero_mean_unit_variance``: ``(x - mean) / (std + eps)`` with given ``mean``/``std``.
* ``scale_linear``: ``x * gain + offset``.
* ``scale_mean_variance``: ``(x - mean) / (std + eps) * (ref_std + eps) + ref_mean``, the
  statistics of ``reference_tensor``.
* ``clip``: ``min <= x <= max`` (either may be left out).
* ``binarize``: ``x > threshold`` -> 1.0, else 0.0.
* ``sigmoid``: ``1 / (1 + exp(-x))``.
* ``softmax``: over ``axis`` (default ``c``).
* ``ensure_dtype``: ``x.astype(dtype)``.

Conventions:

* ``axes`` (op kwarg) lists the axes statistics are *reduced over* (e.g. ``"xy"``); letters the
  array does not have are ignored; ``None`` means every axis but ``b``.
* ``per_sample`` statistics are computed for each batch item (``b`` is never reduced);
  ``per_dataset`` statistics come from ``dataset_stats`` or, when not given, from the whole
  array (all batch items).
* Per-channel parameters (``gain``, ``offset``, ``mean``, ``std``, ``threshold``, ``min``,
  ``max`` given as lists) vary along the op's ``axis`` kwarg (0.5), else along the one
  non-batch axis of matching length that is not in ``axes`` (0.4), preferring ``c``.
* Computation is in float32 (the input is cast first); only ``ensure_dtype`` changes that.
  Statistics are accumulated in float64. The input array is never modified.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepimagej import stats
from deepimagej.bundle.spec import ProcessingStep
from deepimagej.errors import DeepImageJError

__all__ = [
    "SUPPORTED_OPS",
    "Pipeline",
    "ProcessingError",
    "apply_processing",
    "apply_step",
    "fit",
    "needs_statistics",
]

DEFAULT_EPS = 1e-6

_Stats = Mapping[str, Any] | None
_Refs = Mapping[str, tuple[Any, str]] | None
_Transform = Callable[[np.ndarray, tuple[Any, ...]], np.ndarray] | None


class ProcessingError(DeepImageJError):
    """A pre/post-processing step is unknown or its parameters do not fit the tensor."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _float(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (``x`` itself when it already is; ops never write into it)."""
    return x if x.dtype == np.float32 else x.astype(np.float32, copy=False)


def _reduce_axes(axes: str, kwargs: Mapping[str, Any], *, per_dataset: bool) -> tuple[int, ...]:
    """Dimension indices statistics are reduced over."""
    wanted = kwargs.get("axes")
    if wanted is None:
        wanted = axes
    wanted = "".join(str(a) for a in wanted)
    dims = [i for i, a in enumerate(axes) if a in wanted and a != "b"]
    if not dims:  # none of the named axes is in the tensor: reduce over every axis but b
        dims = [i for i, a in enumerate(axes) if a != "b"]
    if per_dataset and "b" in axes:
        dims.append(axes.index("b"))
    return tuple(sorted(dims))


def _mode(kwargs: Mapping[str, Any], op: str, allowed: Sequence[str]) -> str:
    mode = str(kwargs.get("mode", "per_sample"))
    if mode not in allowed:
        raise ProcessingError(f"{op}: mode '{mode}' is not supported (use {', '.join(allowed)})")
    return mode


def _param(
    value: Any, x: np.ndarray, axes: str, kwargs: Mapping[str, Any], op: str, name: str
) -> float | np.ndarray:
    """A scalar, or a list broadcast along the axis it varies over."""
    if value is None:
        raise ProcessingError(f"{op}: parameter '{name}' is missing")
    if np.isscalar(value):
        # numpy's isscalar narrows to np.generic | complex | ..., and its stubs give np.generic no __float__
        return float(value)  # type: ignore[arg-type]
    values = np.asarray(value, dtype=np.float64).ravel()
    if values.size == 1:
        return float(values[0])
    along = kwargs.get("axis")
    if along is not None:
        along = str(along)
        if along not in axes:
            raise ProcessingError(
                f"{op}: '{name}' varies along axis '{along}', which the tensor ('{axes}') lacks"
            )
    else:
        joint = "".join(str(a) for a in (kwargs.get("axes") or ""))
        candidates = [
            a for a in axes if a != "b" and a not in joint and x.shape[axes.index(a)] == values.size
        ]
        if "c" in candidates:
            along = "c"
        elif len(candidates) == 1:
            along = candidates[0]
        else:
            raise ProcessingError(
                f"{op}: cannot tell which axis of '{axes}' (shape {x.shape}) the {values.size} values of '{name}' "
                "belong to; give 'axis'"
            )
    dim = axes.index(along)
    if x.shape[dim] != values.size:
        raise ProcessingError(
            f"{op}: '{name}' has {values.size} values but axis '{along}' has {x.shape[dim]} elements"
        )
    shape = [1] * x.ndim
    shape[dim] = values.size
    return values.reshape(shape).astype(np.float32)


def _as_stat(value: Any) -> np.ndarray:
    """A statistic (scalar or array) as float32, so that float32 tensors stay float32."""
    return np.asarray(value, dtype=np.float32)


def _reference(
    kwargs: Mapping[str, Any],
    x: np.ndarray,
    axes: str,
    references: Mapping[str, tuple[np.ndarray, str]] | None,
    op: str,
) -> tuple[np.ndarray, str]:
    """The array statistics are taken from (``reference_tensor`` or ``x`` itself)."""
    name = kwargs.get("reference_tensor")
    if not name:
        return x, axes
    if references and name in references:
        ref, ref_axes = references[name]
        if len(ref.shape) != len(ref_axes):
            raise ProcessingError(
                f"{op}: reference tensor '{name}' has {len(ref.shape)} dimensions but axes '{ref_axes}'"
            )
        return ref, ref_axes
    warnings.warn(
        f"{op}: reference tensor '{name}' was not provided; statistics are taken from the tensor itself",
        stacklevel=3,
    )
    return x, axes


def _stats_shape_for(stat: np.ndarray, ref_axes: str, axes: str, x: np.ndarray) -> np.ndarray:
    """Re-broadcast ``keepdims`` statistics computed on a tensor with ``ref_axes`` onto ``x`` (``axes``)."""
    if stat.ndim == 0:
        return stat
    if ref_axes != axes:
        stat = _reorder_stat(stat, ref_axes, axes)
    if any(n not in (1, m) for n, m in zip(stat.shape, x.shape)):
        raise ProcessingError(
            f"statistics of the reference tensor (shape {stat.shape} in axes '{axes}') do not fit a tensor of shape "
            f"{x.shape}"
        )
    return stat


def _reorder_stat(stat: np.ndarray, ref_axes: str, axes: str) -> np.ndarray:
    """``keepdims`` statistics in ``ref_axes`` order, reshaped to ``axes`` (size 1 where reduced/absent)."""
    foreign = tuple(i for i, a in enumerate(ref_axes) if a not in axes)
    if any(stat.shape[i] != 1 for i in foreign):
        raise ProcessingError(
            f"statistics of a reference tensor with axes '{ref_axes}' cannot be applied to a tensor with axes '{axes}'"
        )
    stat = np.squeeze(stat, axis=foreign) if foreign else stat
    kept = [a for a in ref_axes if a in axes]
    stat = np.transpose(stat, [kept.index(a) for a in axes if a in kept])
    shape = [1] * len(axes)
    sizes = iter(stat.shape)
    for i, a in enumerate(axes):
        if a in kept:
            shape[i] = next(sizes)
    return stat.reshape(shape)


# --------------------------------------------------------------------------------------------
# operations: statistics (whole tensor) and application (any block of it)
# --------------------------------------------------------------------------------------------
#
# Each operation is a pair: ``stats(x, axes, kw, dataset_stats, references) -> {name: array}``
# computes what depends on the whole tensor (percentiles, mean, std: ``keepdims`` arrays in
# ``x``'s axes), and ``apply(x, axes, kw, stats) -> array`` transforms any block of the tensor
# with those statistics frozen -- so a tile is normalised exactly as the whole image would be.


def _number(kw: Mapping[str, Any], name: str, default: float | None, op: str) -> float:
    """A scalar kwarg as float, with a one-line error for anything else."""
    value = kw.get(name, default)
    if value is None:
        raise ProcessingError(f"{op}: parameter '{name}' is missing")
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    except (TypeError, ValueError):
        raise ProcessingError(f"{op}: parameter '{name}' must be a number, got {value!r}") from None


def _no_stats(
    x: Any, axes: str, kw: Mapping[str, Any], dataset_stats: _Stats, references: _Refs, transform: _Transform
) -> dict:
    return {}


def _scale_range_stats(
    x: Any, axes: str, kw: Mapping[str, Any], dataset_stats: _Stats, references: _Refs, transform: _Transform
) -> dict[str, np.ndarray]:
    op = "scale_range"
    mode = _mode(kw, op, ("per_sample", "per_dataset"))
    lo_p = _number(kw, "min_percentile", 0.0, op)
    hi_p = _number(kw, "max_percentile", 100.0, op)
    if not 0 <= lo_p < hi_p <= 100:
        raise ProcessingError(
            f"{op}: need 0 <= min_percentile < max_percentile <= 100, got {lo_p} and {hi_p}"
        )
    _number(kw, "eps", DEFAULT_EPS, op)
    if mode == "per_dataset" and dataset_stats is not None:
        table = dict(dataset_stats.get("percentiles") or {})
        table.setdefault(0.0, dataset_stats.get("min"))
        table.setdefault(100.0, dataset_stats.get("max"))
        lo, hi = table.get(lo_p), table.get(hi_p)
        if (lo is None) != (hi is None):
            raise ProcessingError(f"{op}: dataset_stats give only one of the {lo_p} / {hi_p} percentiles")
        if lo is not None:
            return {"lo": _as_stat(lo), "hi": _as_stat(hi)}
    ref, ref_axes = _reference(kw, x, axes, references, op)
    own = transform if ref is x else None
    dims = _reduce_axes(ref_axes, kw, per_dataset=mode == "per_dataset")
    if lo_p == 0 and hi_p == 100:  # min-max: the same numbers, with a single pass
        lo, hi = stats.minmax(ref, dims, own)
    else:
        lo, hi = stats.percentiles(ref, dims, [lo_p, hi_p], own)
    return {
        "lo": _as_stat(_stats_shape_for(lo, ref_axes, axes, x)),
        "hi": _as_stat(_stats_shape_for(hi, ref_axes, axes, x)),
    }


def _scale_range(
    x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    eps = np.float32(_number(kw, "eps", DEFAULT_EPS, "scale_range"))
    x = _float(x)
    return ((x - stats["lo"]) / (stats["hi"] - stats["lo"] + eps)).astype(np.float32, copy=False)


def _zero_mean_unit_variance_stats(
    x: Any, axes: str, kw: Mapping[str, Any], dataset_stats: _Stats, references: _Refs, transform: _Transform
) -> dict[str, np.ndarray]:
    op = "zero_mean_unit_variance"
    mode = _mode(kw, op, ("per_sample", "per_dataset", "fixed"))
    _number(kw, "eps", DEFAULT_EPS, op)
    if mode == "fixed":
        return {}
    given = dataset_stats if mode == "per_dataset" and dataset_stats is not None else {}
    if "mean" in given and "std" in given:
        return {"mean": _as_stat(given["mean"]), "std": _as_stat(given["std"])}
    dims = _reduce_axes(axes, kw, per_dataset=mode == "per_dataset")
    mean, std = stats.mean_std(x, dims, transform)
    return {"mean": _as_stat(mean), "std": _as_stat(std)}


def _zero_mean_unit_variance(
    x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    if str(kw.get("mode", "per_sample")) == "fixed":
        return _fixed_zero_mean_unit_variance(x, axes, kw, stats)
    eps = np.float32(_number(kw, "eps", DEFAULT_EPS, "zero_mean_unit_variance"))
    x = _float(x)
    return ((x - stats["mean"]) / (stats["std"] + eps)).astype(np.float32, copy=False)


def _fixed_zero_mean_unit_variance(
    x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    op = "fixed_zero_mean_unit_variance"
    eps = np.float32(_number(kw, "eps", DEFAULT_EPS, op))
    x = _float(x)
    m = _param(kw.get("mean"), x, axes, kw, op, "mean")
    s = _param(kw.get("std"), x, axes, kw, op, "std")
    return ((x - m) / (s + eps)).astype(np.float32, copy=False)


def _scale_linear(
    x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    op = "scale_linear"
    x = _float(x)
    gain = _param(kw.get("gain", 1.0), x, axes, kw, op, "gain")
    offset = _param(kw.get("offset", 0.0), x, axes, kw, op, "offset")
    return (x * gain + offset).astype(np.float32, copy=False)


def _scale_mean_variance_stats(
    x: Any, axes: str, kw: Mapping[str, Any], dataset_stats: _Stats, references: _Refs, transform: _Transform
) -> dict[str, np.ndarray]:
    op = "scale_mean_variance"
    mode = _mode(kw, op, ("per_sample", "per_dataset"))
    _number(kw, "eps", DEFAULT_EPS, op)
    if not kw.get("reference_tensor"):
        raise ProcessingError(f"{op}: parameter 'reference_tensor' is missing")
    ref, ref_axes = _reference(kw, x, axes, references, op)
    per_dataset = mode == "per_dataset"
    dims = _reduce_axes(axes, kw, per_dataset=per_dataset)
    ref_dims = _reduce_axes(ref_axes, kw, per_dataset=per_dataset)
    mean, std = stats.mean_std(x, dims, transform)
    ref_mean, ref_std = stats.mean_std(ref, ref_dims, transform if ref is x else None)
    return {
        "mean": _as_stat(mean),
        "std": _as_stat(std),
        "ref_mean": _as_stat(_stats_shape_for(ref_mean, ref_axes, axes, x)),
        "ref_std": _as_stat(_stats_shape_for(ref_std, ref_axes, axes, x)),
    }


def _scale_mean_variance(
    x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    e = np.float32(_number(kw, "eps", DEFAULT_EPS, "scale_mean_variance"))
    x = _float(x)
    scaled = (x - stats["mean"]) / (stats["std"] + e) * (stats["ref_std"] + e) + stats["ref_mean"]
    return scaled.astype(np.float32, copy=False)


def _clip(x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]) -> np.ndarray:
    op = "clip"
    x = _float(x)
    lo = kw.get("min")
    hi = kw.get("max")
    if lo is None and hi is None:
        raise ProcessingError(f"{op}: give 'min' and/or 'max'")
    lo = None if lo is None else _param(lo, x, axes, kw, op, "min")
    hi = None if hi is None else _param(hi, x, axes, kw, op, "max")
    return np.clip(x, lo, hi).astype(np.float32, copy=False)


def _binarize(x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]) -> np.ndarray:
    op = "binarize"
    x = _float(x)
    threshold = _param(kw.get("threshold"), x, axes, kw, op, "threshold")
    return (x > threshold).astype(np.float32, copy=False)


def _sigmoid(x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]) -> np.ndarray:
    x = _float(x)
    # 1 / (1 + exp(-x)) without overflow warnings for large |x|
    return np.exp(-np.logaddexp(np.float32(0), -x)).astype(np.float32, copy=False)


def _softmax(x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]) -> np.ndarray:
    op = "softmax"
    x = _float(x)
    along = str(kw.get("axis", "c"))
    if along not in axes:
        raise ProcessingError(f"{op}: the tensor (axes '{axes}') has no axis '{along}'")
    dim = axes.index(along)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return (e / e.sum(axis=dim, keepdims=True)).astype(np.float32, copy=False)


def _ensure_dtype(
    x: np.ndarray, axes: str, kw: Mapping[str, Any], stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    op = "ensure_dtype"
    name = kw.get("dtype")
    if name is None:
        raise ProcessingError(f"{op}: parameter 'dtype' is missing")
    try:
        dtype = np.dtype(str(name))
    except TypeError:
        raise ProcessingError(f"{op}: unknown dtype '{name}'") from None
    return x.astype(dtype)


@dataclass(frozen=True)
class _Op:
    stats: Callable[..., dict[str, np.ndarray]]
    apply: Callable[..., np.ndarray]


_OPS: dict[str, _Op] = {
    "scale_range": _Op(_scale_range_stats, _scale_range),
    "zero_mean_unit_variance": _Op(_zero_mean_unit_variance_stats, _zero_mean_unit_variance),
    "fixed_zero_mean_unit_variance": _Op(_no_stats, _fixed_zero_mean_unit_variance),
    "scale_linear": _Op(_no_stats, _scale_linear),
    "scale_mean_variance": _Op(_scale_mean_variance_stats, _scale_mean_variance),
    "clip": _Op(_no_stats, _clip),
    "binarize": _Op(_no_stats, _binarize),
    "sigmoid": _Op(_no_stats, _sigmoid),
    "softmax": _Op(_no_stats, _softmax),
    "ensure_dtype": _Op(_no_stats, _ensure_dtype),
}

#: Names of the operations :func:`apply_processing` knows.
SUPPORTED_OPS: tuple[str, ...] = tuple(_OPS)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def needs_statistics(step: ProcessingStep) -> bool:
    """Whether a step depends on statistics of the whole tensor (else it works pixel by pixel)."""
    op = _op(step)
    if op.stats is _no_stats:
        return False
    return not (step.name == "zero_mean_unit_variance" and str((step.kwargs or {}).get("mode")) == "fixed")


def _op(step: ProcessingStep) -> _Op:
    op = _OPS.get(step.name)
    if op is None:
        raise ProcessingError(
            f"unknown processing operation '{step.name}'; supported: {', '.join(SUPPORTED_OPS)}"
        )
    return op


@dataclass(frozen=True)
class Pipeline:
    """Processing steps with their whole-tensor statistics computed (:func:`fit`).

    Attributes:
        steps: the steps, in order.
        stats: per step, its statistics as ``keepdims`` arrays in the fitted tensor's axes (size
            1 along reduced axes; along ``b`` either 1 or one value per item).
        axes: the axes of the tensor it was fitted on.
    """

    steps: tuple[ProcessingStep, ...]
    stats: tuple[dict[str, np.ndarray], ...]
    axes: str

    def varies_along(self, axis: str) -> bool:
        """Whether a statistic differs along ``axis`` (then a block must hold that axis whole)."""
        if axis not in self.axes:
            return False
        dim = self.axes.index(axis)
        return any(
            s.ndim == len(self.axes) and s.shape[dim] > 1 for stats in self.stats for s in stats.values()
        )

    def apply(self, block: np.ndarray, region: tuple[Any, ...] | None = None) -> np.ndarray:
        """Apply the steps to the whole tensor or any block of it (same axes, any size along the others).

        Args:
            block: the tensor, or a block of it.
            region: where ``block`` lies in the fitted tensor (a slice or index per axis), when
                it is a block: statistics that vary along an axis (per item along ``b``, per
                channel...) are taken over that part.

        Returns:
            A new array: float32, unless an ``ensure_dtype`` step says otherwise; with no steps,
            ``block`` cast to float32 (a copy).
        """
        x = np.asarray(block)
        if x.ndim != len(self.axes):
            raise ProcessingError(
                f"the tensor has {x.ndim} dimensions but axes '{self.axes}' name {len(self.axes)}"
            )
        if not self.steps:
            return x.astype(np.float32)
        for step, stats_ in zip(self.steps, self.stats):
            if region is not None:
                stats_ = {k: _in_region(v, region) for k, v in stats_.items()}
            x = _op(step).apply(x, self.axes, dict(step.kwargs or {}), stats_)
        if x is block:  # pragma: no cover - every op returns a new array; keep the promise anyway
            x = x.copy()
        return x


def _in_region(stat: np.ndarray, region: tuple[Any, ...]) -> np.ndarray:
    """The part of a ``keepdims`` statistic over ``region`` (axes where it has size 1 broadcast)."""
    if stat.ndim != len(region):
        return stat
    index = tuple(
        (r if isinstance(r, slice) else slice(r, r + 1)) if n > 1 else slice(None)
        for n, r in zip(stat.shape, region)
    )
    return stat[index]


def fit(
    steps: Sequence[ProcessingStep],
    array: np.ndarray,
    axes: str,
    *,
    dataset_stats: Mapping[str, Any] | None = None,
    references: Mapping[str, tuple[np.ndarray, str]] | None = None,
) -> Pipeline:
    """Compute the whole-tensor statistics of ``steps`` on ``array`` (see :class:`Pipeline`).

    Statistics are computed block by block (:mod:`deepimagej.stats`), so ``array`` may be larger
    than memory (zarr, dask); a step's statistics are taken on the tensor as the steps before it
    leave it (those steps are applied to each block as it is read); steps without statistics
    cost nothing here.

    Args: see :func:`apply_processing` (``array`` may be any array with numpy indexing).

    Raises:
        ProcessingError: unknown operation, or parameters that do not fit the tensor.
    """
    if len(array.shape) != len(axes):
        raise ProcessingError(
            f"the tensor has {len(array.shape)} dimensions but axes '{axes}' name {len(axes)}"
        )
    fitted: list[dict[str, np.ndarray]] = []
    for k, step in enumerate(steps):
        op = _op(step)
        kw = dict(step.kwargs or {})
        if op.stats is _no_stats:
            fitted.append({})
            continue
        before = Pipeline(tuple(steps[:k]), tuple(fitted), axes)
        fitted.append(op.stats(array, axes, kw, dataset_stats, references, before.apply if k else None))
    return Pipeline(tuple(steps), tuple(fitted), axes)


def apply_step(
    array: np.ndarray,
    axes: str,
    step: ProcessingStep,
    *,
    dataset_stats: Mapping[str, Any] | None = None,
    references: Mapping[str, tuple[np.ndarray, str]] | None = None,
) -> np.ndarray:
    """Apply one processing step; see :func:`apply_processing`."""
    return apply_processing(array, axes, [step], dataset_stats=dataset_stats, references=references)


def apply_processing(
    array: np.ndarray,
    axes: str,
    steps: Sequence[ProcessingStep],
    *,
    dataset_stats: Mapping[str, Any] | None = None,
    references: Mapping[str, tuple[np.ndarray, str]] | None = None,
) -> np.ndarray:
    """Apply bioimage.io processing steps in order to a whole tensor.

    Args:
        array: the tensor; never modified.
        axes: letters naming ``array``'s dimensions, e.g. ``"byxc"``.
        steps: the operations (see the module docstring for names and parameters).
        dataset_stats: statistics for ``mode: per_dataset``: ``"mean"``, ``"std"`` (scalars or
            arrays broadcastable to ``array``) and ``"percentiles"`` (``{percentile: value}``,
            e.g. ``{1.0: 12.0, 99.8: 840.0}``; ``"min"``/``"max"`` stand in for 0/100). Without
            them, per-dataset statistics are computed over the whole array.
        references: tensors named by ``reference_tensor`` kwargs, as ``{name: (array, axes)}``.
            A missing reference falls back to the tensor itself (with a warning).

    Returns:
        A new array: float32, unless an ``ensure_dtype`` step says otherwise. With no steps,
        ``array`` cast to float32 (a copy).

    Raises:
        ProcessingError: unknown operation, or parameters that do not fit the tensor.
    """
    pipeline = fit(steps, array, axes, dataset_stats=dataset_stats, references=references)
    return pipeline.apply(np.asarray(array))
