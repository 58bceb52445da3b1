"""Loss weight maps of the U-Net (Falk et al., Nature Methods 2019, Methods M2).

The per-pixel weight of the soft-max cross-entropy is

.. math:: w(x) = w'_{bal}(x) + \\lambda \\, w_{sep}(x)

* :math:`w'_{bal}` balances foreground and background: foreground pixels weigh 1, background
  pixels weigh ``v_bal`` far from any object and rise smoothly towards 1 close to objects,
  :math:`v_{bal} + (1 - v_{bal}) \\exp(-d_1^2 / 2\\sigma_{bal}^2)` with :math:`d_1` the distance
  to the nearest foreground pixel.
* :math:`w_{sep} = \\exp(-(d_1 + d_2)^2 / 2\\sigma_{sep}^2)` on background pixels, :math:`d_1, d_2`
  the distances to the nearest and second-nearest object instance: large in narrow gaps
  between objects, so that the network learns to separate touching cells.
* Ignored pixels weigh 0.

Defaults (all distances in pixels, or in the physical unit of ``element_size`` when given):

=============  =======  ===========================================================
parameter      default  source
=============  =======  ===========================================================
``v_bal``      0.1      Falk et al. 2019, Methods M2 (background weight)
``sigma_bal``  10.0     Falk et al. 2019, Methods M2 (fall-off of the balancing weight)
``lam``        50.0     Falk et al. 2019, Methods M2 (lambda, separation weight)
``sigma_sep``  6.0      Falk et al. 2019, Methods M2 (sigma_sep); the original U-Net
                        (Ronneberger et al. 2015) used w0 = 10, sigma = 5 px
=============  =======  ===========================================================

Before the weights are computed, touching instances are separated by one-pixel background
ridges (:func:`insert_ridges`), as in the paper ("we insert one-pixel wide background ridges
between touching objects").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "LAMBDA_SEP",
    "SIGMA_BAL",
    "SIGMA_SEP",
    "V_BAL",
    "WeightSettings",
    "class_balance_weights",
    "insert_ridges",
    "labels_to_classes",
    "separation_weights",
    "weight_map",
]

#: Background weight of the class-balancing term (Falk et al. 2019, M2).
V_BAL = 0.1
#: Gaussian fall-off of the balancing weight around foreground, pixels (Falk et al. 2019, M2).
SIGMA_BAL = 10.0
#: Weight lambda of the instance-separation term (Falk et al. 2019, M2).
LAMBDA_SEP = 50.0
#: Gaussian width of the instance-separation term, pixels (Falk et al. 2019, M2).
SIGMA_SEP = 6.0


class WeightSettings(TypedDict):
    """The loss-weight settings of :func:`weight_map` (its keyword arguments of the same names)."""

    v_bal: float
    sigma_bal: float
    lam: float
    sigma_sep: float


# w_sep is evaluated only where d1 + d2 <= _SEP_CUTOFF * sigma_sep; beyond it
# lambda * w_sep <= 50 * exp(-12.5) < 2e-4, i.e. nothing.
_SEP_CUTOFF = 5.0


def element_spacing(element_size, ndim: int) -> np.ndarray:
    """Per-axis pixel size as a float array of length ``ndim`` (1 for pixels)."""
    if element_size is None:
        return np.ones(ndim)
    s = np.asarray(element_size, dtype=float).ravel()
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim or np.any(s <= 0):
        raise ValueError(f"element_size must be one positive value per axis ({ndim}), got {element_size!r}")
    return s


def insert_ridges(labels: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Separate touching instances by one-pixel background ridges.

    A labelled pixel becomes background when its neighbourhood (8-connectivity in 2D,
    26-connectivity in 3D) contains a *higher* instance label. Of two touching instances only
    one side loses its border pixels, so the ridge is exactly one pixel wide (Falk et al. 2019,
    M2), and afterwards no two different instances touch (not even diagonally).

    With several classes, ridges separate touching objects of the same class only: where two
    classes meet (a nucleus inside its cell), the class boundary itself is what the network
    learns, and a background ridge there would be wrong.

    Args:
        labels: instance label image, 2D ``(Y, X)`` or 3D ``(Z, Y, X)``, integer; 0 is background.
        classes: the class of every labelled pixel (same shape), or ``None`` for one class.

    Returns:
        A new label image of the same shape and dtype with the ridge pixels set to 0.
    """
    labels = np.asarray(labels)
    footprint = np.ones((3,) * labels.ndim, dtype=bool)
    out = labels.copy()
    groups = (
        [labels]
        if classes is None
        else [
            np.where(np.asarray(classes) == k, labels, 0) for k in np.unique(np.asarray(classes)[labels > 0])
        ]
    )
    for group in groups:
        neighbour_max = ndi.maximum_filter(group, footprint=footprint, mode="constant", cval=0)
        out[(group > 0) & (neighbour_max > group)] = 0
    return out


def labels_to_classes(labels: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Class image of an instance label image: 0 background (and ridges), else the object's class.

    Args:
        labels: instance label image (0 = background), 2D or 3D.
        classes: the class of every labelled pixel, or ``None``: every object is class 1.

    Returns:
        ``uint8`` image: the class of each pixel that belongs to an instance after
        :func:`insert_ridges`, 0 elsewhere.
    """
    ridged = insert_ridges(labels, classes) > 0
    if classes is None:
        return ridged.astype(np.uint8)
    return np.where(ridged, np.asarray(classes), 0).astype(np.uint8)


def class_balance_weights(
    classes: np.ndarray,
    ignore: np.ndarray | None = None,
    v_bal: float = V_BAL,
    sigma_bal: float = SIGMA_BAL,
    element_size: Sequence[float] | float | None = None,
) -> np.ndarray:
    """Foreground/background balancing weight :math:`w'_{bal}` (Falk et al. 2019, M2).

    Foreground pixels weigh 1; a background pixel at distance ``d`` from the nearest
    foreground pixel weighs ``v_bal + (1 - v_bal) * exp(-d**2 / (2 * sigma_bal**2))``;
    ignored pixels weigh 0. The same map (up to normalisation) is the tile-sampling pdf of the
    augmentation (M3).

    Parameters
    ----------
    classes : numpy.ndarray
        Class image, 2D or 3D; > 0 is foreground.
    ignore : numpy.ndarray or None
        Boolean mask of pixels that do not count (weight 0), same shape as ``classes``.
    v_bal : float
        Background weight far from objects (default 0.1, Falk et al. 2019).
    sigma_bal : float
        Width of the Gaussian fall-off around foreground (default 10 px, Falk et al. 2019),
        in pixels, or in the unit of ``element_size``.
    element_size : float or sequence of float, optional
        Pixel size per axis (e.g. ``(z, y, x)`` in microns) for anisotropic data.

    Returns
    -------
    numpy.ndarray
        ``float32`` weights, same shape as ``classes``.
    """
    classes = np.asarray(classes)
    fg = classes > 0
    w = np.full(classes.shape, v_bal, dtype=np.float32)
    if fg.any():
        d = ndi.distance_transform_edt(~fg, sampling=element_spacing(element_size, classes.ndim))
        w = (v_bal + (1.0 - v_bal) * np.exp(-(d**2) / (2.0 * sigma_bal**2))).astype(np.float32)
        w[fg] = 1.0
    if ignore is not None:
        w[np.asarray(ignore, dtype=bool)] = 0.0
    return w


def _nearest_two_distances(labels: np.ndarray, max_distance: float, spacing: np.ndarray):
    """Distances to the nearest and second-nearest instance, ``inf`` beyond ``max_distance``.

    Each instance's distance transform is computed only in a window around its bounding box
    grown by ``max_distance``, so the cost grows with the number and size of the objects,
    not with (number of objects) x (image size).
    """
    d1 = np.full(labels.shape, np.inf, dtype=np.float32)
    d2 = np.full(labels.shape, np.inf, dtype=np.float32)
    margin = np.ceil(max_distance / spacing).astype(int)
    for index, box in enumerate(ndi.find_objects(labels)):
        if box is None:
            continue
        window = tuple(
            slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margin, labels.shape)
        )
        outside = labels[window] != index + 1
        d = ndi.distance_transform_edt(outside, sampling=spacing).astype(np.float32)
        d[d > max_distance] = np.inf
        w1 = d1[window]
        w2 = d2[window]
        np.minimum(w2, np.maximum(w1, d), out=w2)
        np.minimum(w1, d, out=w1)
    return d1, d2


def separation_weights(
    labels: np.ndarray,
    sigma_sep: float = SIGMA_SEP,
    element_size: Sequence[float] | float | None = None,
) -> np.ndarray:
    """Instance-separation weight :math:`w_{sep}` (Falk et al. 2019, M2).

    ``exp(-(d1 + d2)**2 / (2 * sigma_sep**2))`` on background pixels, where ``d1`` and ``d2``
    are the distances to the nearest and the second-nearest instance; 0 on instances. It is
    close to 1 in one-pixel gaps between touching objects and decays away from them. Values
    where ``d1 + d2 > 5 * sigma_sep`` (< 4e-6) are set to 0.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance label image (0 = background), 2D or 3D, integer. Ridges are *not* inserted
        here; :func:`weight_map` does that first.
    sigma_sep : float
        Width of the separation term (default 6 px, Falk et al. 2019), in pixels or in the
        unit of ``element_size``.
    element_size : float or sequence of float, optional
        Pixel size per axis for anisotropic data.

    Returns
    -------
    numpy.ndarray
        ``float32`` map, same shape as ``labels``.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    spacing = element_spacing(element_size, labels.ndim)
    cutoff = _SEP_CUTOFF * sigma_sep
    d1, d2 = _nearest_two_distances(labels, cutoff, spacing)
    s = d1 + d2
    w = np.zeros(labels.shape, dtype=np.float32)
    near = np.isfinite(s) & (labels == 0)
    w[near] = np.exp(-(s[near] ** 2) / (2.0 * sigma_sep**2))
    return w


def weight_map(
    labels: np.ndarray,
    ignore: np.ndarray | None = None,
    *,
    v_bal: float = V_BAL,
    sigma_bal: float = SIGMA_BAL,
    lam: float = LAMBDA_SEP,
    sigma_sep: float = SIGMA_SEP,
    element_size: Sequence[float] | float | None = None,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """Loss weight map :math:`w = w'_{bal} + \\lambda w_{sep}` of an instance label image.

    Ridges are first inserted between touching instances (:func:`insert_ridges`); the
    foreground of the resulting class image (:func:`labels_to_classes`) is the one that the
    balancing term sees, and the separation term is added on background (including ridge)
    pixels only. Ignored pixels weigh 0.

    Several classes (``classes``) weigh as in the U-Net plugin: every foreground class weighs 1
    and the background ``v_bal`` rising towards objects of any class (class balancing), and the
    separation term acts in the gaps between touching objects of any classes; ridges separate
    touching objects of one class (:func:`insert_ridges`).

    Parameters
    ----------
    labels : numpy.ndarray
        Instance label image (0 = background), 2D ``(Y, X)`` or 3D ``(Z, Y, X)``.
    ignore : numpy.ndarray or None
        Boolean mask of ignored pixels (weight 0).
    v_bal, sigma_bal : float
        Balancing term parameters (defaults 0.1 and 10 px, Falk et al. 2019, M2).
    lam, sigma_sep : float
        Separation term weight and width (defaults 50 and 6 px, Falk et al. 2019, M2).
    element_size : float or sequence of float, optional
        Pixel size per axis. Without it all distances (``sigma_bal``, ``sigma_sep``) are in
        pixels; with it they are in the same physical unit as ``element_size``.
    classes : numpy.ndarray or None
        The class of every labelled pixel (several foreground classes), or ``None``.

    Returns
    -------
    numpy.ndarray
        ``float32`` weights, same shape as ``labels``.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    ridged = insert_ridges(labels, classes)
    w = class_balance_weights(ridged > 0, None, v_bal=v_bal, sigma_bal=sigma_bal, element_size=element_size)
    if lam:
        sep = separation_weights(ridged, sigma_sep=sigma_sep, element_size=element_size)
        w += np.float32(lam) * sep
    if ignore is not None:
        w[np.asarray(ignore, dtype=bool)] = 0.0
    return w
