"""Weighted soft-max cross-entropy (Falk et al. 2019, Methods M2).

    E = - sum_x w(x) log p_{l(x)}(x)  /  |{x : w(x) > 0}|

``p_k(x)`` is the soft-max probability of class ``k`` at pixel ``x`` (the network output),
``l(x)`` the true class and ``w(x)`` the per-pixel weight (``deepimagej.unet.weights``:
``w = w'_bal + lambda * w_sep``; ``w = 0`` marks ignored pixels, which contribute neither
to the sum nor to the count). The paper sums over the pixels of the output tile; dividing
by the number of non-ignored pixels makes the value independent of tile size and batch
size, so training and validation losses are comparable between runs.
"""

from __future__ import annotations

import numpy as np

#: Probabilities are clipped to [EPS, 1] before the logarithm.
EPS = 1e-7


def weighted_softmax_cross_entropy(classes, probs, weights):
    """TensorFlow loss: ``classes`` int (b, ...spatial), ``probs`` (b, ...spatial, K), ``weights`` (b, ...spatial).

    Returns a scalar tensor (see the module docstring for the normalisation).
    """
    import tensorflow as tf

    classes = tf.cast(classes, tf.int32)
    weights = tf.cast(weights, probs.dtype)
    n_classes = tf.shape(probs)[-1]
    onehot = tf.one_hot(classes, n_classes, dtype=probs.dtype)
    p_true = tf.reduce_sum(onehot * probs, axis=-1)
    nll = -tf.math.log(tf.clip_by_value(p_true, EPS, 1.0))
    total = tf.reduce_sum(weights * nll)
    count = tf.reduce_sum(tf.cast(weights > 0, probs.dtype))
    return total / tf.maximum(count, 1.0)


def weighted_softmax_cross_entropy_np(classes: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> float:
    """The same loss in numpy (for evaluation and tests)."""
    classes = np.asarray(classes, dtype=np.int64)
    p_true = np.take_along_axis(np.asarray(probs, np.float64), classes[..., None], axis=-1)[..., 0]
    nll = -np.log(np.clip(p_true, EPS, 1.0))
    weights = np.asarray(weights, np.float64)
    count = max(int(np.count_nonzero(weights > 0)), 1)
    return float(np.sum(weights * nll) / count)
