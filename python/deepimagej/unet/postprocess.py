"""From U-Net class probabilities to what a biologist wants: instance labels or detections.

The exported U-Net bundles output soft-max probabilities (channels last, channel 1 =
foreground). In Python these functions do the post-processing; in ImageJ the bundle
carries the equivalent macro (:data:`SEGMENTATION_MACRO` / :data:`DETECTION_MACRO`),
which DeepImageJ Run executes after the model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: ImageJ macro shipped as the post-processing of segmentation bundles.
SEGMENTATION_MACRO = """// deepimagej U-Net post-processing: class probabilities -> instance labels.
// Input: the model output (soft-max probabilities; channel 2 = foreground / cell).
// Output: a 16-bit label image, one grey value per object (8-connected components of
// foreground probability > 0.5, as Analyze Particles "Count Masks" makes them; "clear" restarts
// the numbering at 1 whatever the Results table holds).
// Python equivalent: deepimagej.unet.postprocess.to_instances(prob, threshold=0.5).
threshold = 0.5;
getDimensions(width, height, channels, slices, frames);
source = getTitle();
if (channels > 1) {
    run("Duplicate...", "title=foreground duplicate channels=2");
} else {
    run("Duplicate...", "title=foreground duplicate");
}
setThreshold(threshold, 1e30);
setOption("BlackBackground", true);
if (nSlices > 1) {
    run("Convert to Mask", "method=Default background=Dark black");
    run("Analyze Particles...", "size=0-Infinity show=[Count Masks] clear stack");
} else {
    run("Convert to Mask");
    run("Analyze Particles...", "size=0-Infinity show=[Count Masks] clear");
}
rename(source + "_labels");
close("foreground");
"""

#: ImageJ macro shipped as the post-processing of detection bundles.
DETECTION_MACRO = """// deepimagej U-Net detection post-processing: class probabilities -> one point per object.
// Input: the model output (soft-max probabilities; channel 2 = object centre).
// Output: a multi-point selection on the foreground probability (local maxima with
// probability > 0.5 and prominence 0.1), also added to the ROI Manager.
// Python equivalent: deepimagej.unet.postprocess.to_detections(prob, threshold=0.5).
getDimensions(width, height, channels, slices, frames);
source = getTitle();
if (channels > 1) {
    run("Duplicate...", "title=" + source + "_detections duplicate channels=2");
} else {
    run("Duplicate...", "title=" + source + "_detections duplicate");
}
run("Gaussian Blur...", "sigma=1 stack");
run("Find Maxima...", "prominence=0.1 strict exclude output=[Point Selection] light=false");
if (selectionType() == 10) {
    getSelectionCoordinates(xs, ys);
    keep_x = newArray(xs.length);
    keep_y = newArray(xs.length);
    n = 0;
    for (i = 0; i < xs.length; i++) {
        if (getPixel(xs[i], ys[i]) > 0.5) {
            keep_x[n] = xs[i];
            keep_y[n] = ys[i];
            n++;
        }
    }
    if (n > 0) {
        makeSelection("point", Array.trim(keep_x, n), Array.trim(keep_y, n));
        roiManager("Add");
    } else {
        run("Select None");
    }
}
"""


def foreground(prob: np.ndarray, channel_axis: int | None = -1) -> np.ndarray:
    """Foreground probability: channel 1 of a K-class output (K <= 8 on ``channel_axis``).

    An array whose ``channel_axis`` is not a small class axis (or ``channel_axis=None``) is
    taken to be the foreground probability map already.
    """
    prob = np.asarray(prob)
    if channel_axis is not None and prob.ndim >= 3 and 2 <= prob.shape[channel_axis] <= 8:
        return np.take(prob, 1, axis=channel_axis)
    return prob


def to_instances(prob: np.ndarray, threshold: float = 0.5, *, min_size: int = 0, channel_axis: int | None = -1) -> np.ndarray:
    """Instance labels: connected components (8-connected in 2D, 26 in 3D) of foreground > ``threshold``.

    Args:
        prob: U-Net output (``..., K`` probabilities) or a foreground probability map.
        threshold: probability above which a pixel is foreground.
        min_size: drop objects smaller than this many pixels.

    Returns:
        ``int32`` labels, 0 = background, objects numbered 1..N.
    """
    fg = foreground(prob, channel_axis) > threshold
    labels, n = ndi.label(fg, structure=np.ones((3,) * fg.ndim, bool))
    if min_size > 0 and n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
        labels, _, _ = _relabel(labels)
    return labels.astype(np.int32)


def _relabel(labels: np.ndarray):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)


def to_detections(
    prob: np.ndarray, threshold: float = 0.5, *, min_distance: int = 3, smooth_sigma: float = 1.0, channel_axis: int | None = -1
) -> np.ndarray:
    """Detections: local maxima of the (smoothed) foreground probability above ``threshold``.

    Returns:
        ``(N, ndim)`` array-ordered point coordinates (y, x) or (z, y, x).
    """
    from deepimagej.unet.metrics import peaks_to_points

    return peaks_to_points(foreground(prob, channel_axis), threshold, min_distance, smooth_sigma)


def write_macro(kind: str, path) -> None:
    """Write the post-processing macro of ``kind`` (``segmentation`` or ``detection``) to ``path``."""
    from pathlib import Path

    text = SEGMENTATION_MACRO if kind == "segmentation" else DETECTION_MACRO
    Path(path).write_text(text, encoding="utf-8")
