"""Weighted soft-max cross-entropy (Falk et al. 2019, Methods M2) and the tile measures, for Keras ``fit``.

    E = - sum_x w(x) log p_{l(x)}(x)  /  |{x : w(x) > 0}|

``p_k(x)`` is the soft-max probability of class ``k`` at pixel ``x`` (the network output),
``l(x)`` the true class and ``w(x)`` the per-pixel weight (``deepimagej.unet.weights``:
``w = w'_bal + lambda * w_sep``; ``w = 0`` marks ignored pixels, which contribute neither
to the sum nor to the count). The paper sums over the pixels of the output tile; dividing
by the number of non-ignored pixels makes the value independent of tile size and batch
size, so training and validation losses are comparable between runs.

Keras passes one target tensor to a loss, so the class and the weight of each pixel travel
together: :func:`pack_targets` stacks them in a last axis of size 2, which
:class:`WeightedCrossEntropy`, :class:`PixelAccuracy` and :class:`ForegroundIoU` unpack.
The two measures count over all the pixels an epoch sees (not a mean of per-batch values) and
skip ignored pixels.
"""

from __future__ import annotations

import numpy as np

from deepimagej.engines.tensorflow import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402 - after quiet_tensorflow(), which must run first

__all__ = [
    "EPS",
    "ForegroundIoU",
    "PixelAccuracy",
    "WeightedCrossEntropy",
    "pack_targets",
    "weighted_softmax_cross_entropy",
    "weighted_softmax_cross_entropy_np",
]

#: Probabilities are clipped to [EPS, 1] before the logarithm.
EPS = 1e-7


def pack_targets(classes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Classes and weights as one float32 target, ``(..., 2)``: ``[..., 0]`` the class, ``[..., 1]`` the weight."""
    return np.stack([np.asarray(classes, np.float32), np.asarray(weights, np.float32)], axis=-1)


def weighted_softmax_cross_entropy(classes, probs, weights):
    """The loss on tensors: ``classes`` (b, ...spatial), ``probs`` (b, ...spatial, K), ``weights`` (b, ...spatial).

    Returns a scalar tensor (see the module docstring for the normalisation).
    """
    ops = keras.ops
    classes = ops.cast(classes, "int32")
    weights = ops.cast(weights, probs.dtype)
    onehot = ops.one_hot(classes, ops.shape(probs)[-1], dtype=probs.dtype)
    p_true = ops.sum(onehot * probs, axis=-1)
    nll = -ops.log(ops.clip(p_true, EPS, 1.0))
    total = ops.sum(weights * nll)
    count = ops.sum(ops.cast(weights > 0, probs.dtype))
    return total / ops.maximum(count, 1.0)


def weighted_softmax_cross_entropy_np(classes: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> float:
    """The same loss in numpy (for evaluation and tests)."""
    classes = np.asarray(classes, dtype=np.int64)
    p_true = np.take_along_axis(np.asarray(probs, np.float64), classes[..., None], axis=-1)[..., 0]
    nll = -np.log(np.clip(p_true, EPS, 1.0))
    weights = np.asarray(weights, np.float64)
    count = max(int(np.count_nonzero(weights > 0)), 1)
    return float(np.sum(weights * nll) / count)


@keras.saving.register_keras_serializable(package="deepimagej")
class WeightedCrossEntropy(keras.losses.Loss):
    """The loss of the paper for ``fit``: targets packed by :func:`pack_targets`."""

    def __init__(self, name: str = "weighted_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return weighted_softmax_cross_entropy(y_true[..., 0], y_pred, y_true[..., 1])


class _PixelCounts(keras.metrics.Metric):
    """Counts over the non-ignored pixels of packed targets, accumulated over an epoch."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits", dtype="float64")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float64")

    def _counts(self, truth, predicted, valid):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        truth = ops.cast(y_true[..., 0], "int32")
        valid = y_true[..., 1] > 0
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        hits, total = self._counts(truth, predicted, valid)
        self.hits.assign_add(ops.cast(ops.sum(ops.cast(hits, "float32")), "float64"))
        self.total.assign_add(ops.cast(ops.sum(ops.cast(total, "float32")), "float64"))

    def reset_state(self) -> None:
        self.hits.assign(0.0)
        self.total.assign(0.0)


class PixelAccuracy(_PixelCounts):
    """Share of the non-ignored pixels whose most probable class is the true class (``accuracy``)."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def _counts(self, truth, predicted, valid):
        return valid & (truth == predicted), valid

    def result(self):
        ops = keras.ops
        return ops.where(self.total > 0, self.hits / ops.maximum(self.total, 1.0), float("nan"))


class ForegroundIoU(_PixelCounts):
    """Intersection over union of predicted and true foreground (any class > 0) on non-ignored pixels (``iou``)."""

    def __init__(self, name: str = "iou", **kwargs):
        super().__init__(name=name, **kwargs)

    def _counts(self, truth, predicted, valid):
        true_fg, pred_fg = valid & (truth > 0), valid & (predicted > 0)
        return true_fg & pred_fg, true_fg | pred_fg

    def result(self):
        ops = keras.ops
        return ops.where(self.total > 0, self.hits / ops.maximum(self.total, 1.0), 1.0)
