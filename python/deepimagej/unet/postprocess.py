"""From U-Net class probabilities to what a biologist wants: instance labels, a class map or detections.

The exported U-Net bundles output soft-max probabilities (channels last, channel 1 =
foreground, or one channel per class). In Python these functions do the post-processing; in
ImageJ the bundle carries the equivalent macro (:data:`SEGMENTATION_MACRO`, :data:`CLASSES_MACRO`
/ :data:`DETECTION_MACRO`), which DeepImageJ Run executes after the model.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
from scipy import ndimage as ndi

from deepimagej.predict import as_spec

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

#: ImageJ macro shipped as the post-processing of bundles with several classes.
CLASSES_MACRO = """// deepimagej U-Net post-processing: class probabilities -> class map.
// Input: the model output (soft-max probabilities, one channel per class; channel 1 = background).
// Output: an 8-bit image, each pixel the class (0 = background, 1, 2, ...) of highest probability
// (ties: the lower class). Python equivalent: deepimagej.unet.postprocess.to_classes(prob).
source = getTitle();
getDimensions(width, height, channels, slices, frames);
run("Duplicate...", "title=best duplicate channels=1");
run("32-bit");
newImage("classes", "8-bit black", width, height, slices);
for (c = 2; c <= channels; c++) {
    selectImage(source);
    run("Duplicate...", "title=channel duplicate channels=" + c);
    run("32-bit");
    imageCalculator("Subtract create 32-bit stack", "channel", "best");
    rename("higher");
    setThreshold(1e-30, 1e30);
    setOption("BlackBackground", true);
    run("Convert to Mask", "method=Default background=Dark black");
    run("Divide...", "value=255 stack");
    run("Multiply...", "value=" + (c - 1) + " stack");
    imageCalculator("Max stack", "classes", "higher");
    imageCalculator("Max stack", "best", "channel");
    close("higher");
    close("channel");
}
close("best");
selectImage("classes");
rename(source + "_classes");
"""


class DetectionSettings(TypedDict, total=False):
    """Detection post-processing settings: the keyword arguments of :func:`to_detections`."""

    threshold: float
    smooth_sigma: float
    min_distance: int
    cell_threshold: float
    min_cell_area: float
    min_solidity: float


#: Detection post-processing settings used when a bundle does not set its own
#: (``config.deepimagej_py.detection`` in its rdf.yaml; see :func:`detection_settings`).
DETECTION_DEFAULTS: DetectionSettings = {"threshold": 0.5, "smooth_sigma": 1.0, "min_distance": 3}

#: Settings of the cell head of a two-head detection model (:func:`solid_cells`); a bundle that
#: sets ``cell_threshold`` in ``config.deepimagej_py.detection`` uses its cell head.
CELL_DEFAULTS: DetectionSettings = {"cell_threshold": 0.8, "min_cell_area": 1000, "min_solidity": 0.65}

#: ImageJ macro shipped as the post-processing of detection bundles (``{threshold}``,
#: ``{smooth_sigma}`` and ``{min_distance}`` are filled in by :func:`detection_macro`).
DETECTION_MACRO = """// deepimagej U-Net detection post-processing: class probabilities -> one point per object.
// Input: the model output (soft-max probabilities; channel 2 = object centre).
// Output: a multi-point selection (also added to the ROI Manager) and a Results table
// (X, Y, Slice, Probability, Source): the local maxima of the Gaussian-smoothed centre probability
// above the threshold, at least 'radius' pixels apart (ties: the first in reading order).
// A two-head model (4 channels, 2D) also gives the cell probability (channel 4): every solid
// cell (8-connected, holes filled, area >= min_cell_area px, solidity >= min_solidity) of
// probability > cell_threshold gives its centroid (Source "cell", Probability = the cell's mean)
// instead of the peaks inside it; cell_threshold < 0 switches this off.
// Python equivalent: deepimagej.unet.postprocess.to_detections(prob, **detection_settings(bundle)).
threshold = {threshold};
sigma = {smooth_sigma};
radius = {min_distance};
cell_threshold = {cell_threshold};
min_cell_area = {min_cell_area};
min_solidity = {min_solidity};
getDimensions(width, height, channels, slices, frames);
source = getTitle();
source_id = getImageID();
if (channels > 1) {{
    run("Duplicate...", "title=centres duplicate channels=2");
}} else {{
    run("Duplicate...", "title=centres duplicate");
}}
run("32-bit");
centres = getImageID();
if (sigma > 0) run("Gaussian Blur...", "sigma=" + sigma + " stack");
run("Duplicate...", "title=centres_max duplicate");
run("Maximum...", "radius=" + radius + " stack");
imageCalculator("Subtract create 32-bit stack", "centres_max", "centres");
below_max = getImageID();
close("centres_max");
r2 = radius * radius + 1;
px = newArray(0); py = newArray(0); pz = newArray(0); pv = newArray(0);
for (z = 1; z <= nSlices; z++) {{
    selectImage(centres);
    setSlice(z);
    cx = newArray(0); cy = newArray(0); cv = newArray(0);
    for (y = 0; y < height; y++) {{
        for (x = 0; x < width; x++) {{
            v = getPixel(x, y);
            if (v > threshold) {{
                cx = Array.concat(cx, x); cy = Array.concat(cy, y); cv = Array.concat(cv, v);
            }}
        }}
    }}
    selectImage(below_max);
    setSlice(z);
    first = px.length;
    for (i = 0; i < cx.length; i++) {{
        if (getPixel(cx[i], cy[i]) == 0) {{
            keep = true;
            for (j = first; j < px.length && keep; j++) {{
                if ((px[j] - cx[i]) * (px[j] - cx[i]) + (py[j] - cy[i]) * (py[j] - cy[i]) <= r2) keep = false;
            }}
            if (keep) {{
                px = Array.concat(px, cx[i]); py = Array.concat(py, cy[i]);
                pz = Array.concat(pz, z); pv = Array.concat(pv, cv[i]);
            }}
        }}
    }}
}}
close("Result of centres_max");
ps = newArray(px.length);
Array.fill(ps, 0);
if (cell_threshold >= 0 && channels >= 4 && slices * frames == 1) {{
    selectImage(source_id);
    run("Duplicate...", "title=cell_probability duplicate channels=4");
    run("32-bit");
    run("Properties...", "channels=1 slices=1 frames=1 unit=pixel pixel_width=1 pixel_height=1 voxel_depth=1");
    cell_probability = getImageID();
    run("Duplicate...", "title=cell_mask");
    setThreshold(cell_threshold, 1e30);
    setOption("BlackBackground", true);
    run("Convert to Mask");
    // "clear": the Count Masks numbering starts at 1 whatever the Results table holds
    run("Analyze Particles...", "size=" + min_cell_area + "-Infinity pixel show=[Count Masks] clear include");
    cells = getImageID();
    close("cell_mask");
    selectImage(cells);
    getStatistics(area, mean, min, n_cells);
    first_x = newArray(n_cells + 1); first_y = newArray(n_cells + 1); solid = newArray(n_cells + 1);
    Array.fill(first_x, -1);
    for (y = 0; y < height; y++) {{
        for (x = 0; x < width; x++) {{
            v = getPixel(x, y);
            if (v > 0) {{
                if (first_x[v] < 0) {{ first_x[v] = x; first_y[v] = y; }}
            }}
        }}
    }}
    cx = newArray(0); cy = newArray(0); cv = newArray(0);
    for (v = 1; v <= n_cells; v++) {{
        if (first_x[v] >= 0) {{
            selectImage(cells);
            doWand(first_x[v], first_y[v], 0, "8-connected");
            if (getValue("Solidity") >= min_solidity) {{
                solid[v] = 1;
                cx = Array.concat(cx, getValue("X") - 0.5); cy = Array.concat(cy, getValue("Y") - 0.5);
                selectImage(cell_probability);
                run("Restore Selection");
                cv = Array.concat(cv, getValue("Mean"));
            }}
        }}
    }}
    selectImage(cells);
    run("Select None");
    qx = newArray(0); qy = newArray(0); qz = newArray(0); qv = newArray(0);
    for (i = 0; i < px.length; i++) {{
        if (solid[getPixel(px[i], py[i])] == 0) {{
            qx = Array.concat(qx, px[i]); qy = Array.concat(qy, py[i]);
            qz = Array.concat(qz, pz[i]); qv = Array.concat(qv, pv[i]);
        }}
    }}
    ps = newArray(qx.length + cx.length);
    Array.fill(ps, 1);
    for (i = 0; i < qx.length; i++) ps[i] = 0;
    px = Array.concat(qx, cx); py = Array.concat(qy, cy); pv = Array.concat(qv, cv);
    pz = Array.concat(qz, newArray(cx.length));
    for (i = qx.length; i < pz.length; i++) pz[i] = 1;
    close("Count Masks of cell_mask");
    selectImage(cell_probability);
    close();
}}
selectImage(centres);
rename(source + "_detections");
run("Clear Results");
for (i = 0; i < px.length; i++) {{
    setResult("X", i, px[i]);
    setResult("Y", i, py[i]);
    setResult("Slice", i, pz[i]);
    setResult("Probability", i, pv[i]);
    if (ps[i] == 1) setResult("Source", i, "cell");
    else setResult("Source", i, "peak");
}}
updateResults();
if (px.length > 0) {{
    makeSelection("point", px, py);
    roiManager("Add");
}}
print("deepimagej detection: " + px.length + " objects");
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


def to_instances(
    prob: np.ndarray, threshold: float = 0.5, *, min_size: int = 0, channel_axis: int | None = -1
) -> np.ndarray:
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


def to_classes(prob: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Class map: the class of highest probability at every pixel (ties: the lower class), ``uint8``."""
    return np.argmax(np.asarray(prob), axis=channel_axis).astype(np.uint8)


def _relabel(labels: np.ndarray):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)


def imagej_disk(radius: float, ndim: int = 2) -> np.ndarray:
    """The neighbourhood of ImageJ's ``Maximum...`` filter: offsets with ``d^2 <= radius^2 + 1``."""
    r = int(np.floor(np.sqrt(radius * radius + 1)))
    grids = np.meshgrid(*[np.arange(-r, r + 1)] * ndim, indexing="ij")
    return np.asarray(sum(g * g for g in grids) <= radius * radius + 1)


def peaks_to_points(
    prob_map: np.ndarray,
    threshold: float = DETECTION_DEFAULTS["threshold"],
    min_distance: int = DETECTION_DEFAULTS["min_distance"],
    smooth_sigma: float = DETECTION_DEFAULTS["smooth_sigma"],
) -> np.ndarray:
    """Detections: local maxima of a (smoothed) foreground probability map.

    The same steps as the ImageJ macro :data:`DETECTION_MACRO` (Gaussian Blur, Maximum filter,
    threshold), so that Python and ImageJ find the same points: the map is smoothed with a
    Gaussian of ``smooth_sigma`` (edges extended with the nearest pixel, as ImageJ does); a pixel
    is a peak when it equals the maximum over the disk ``d^2 <= min_distance^2 + 1`` around it
    (ImageJ's ``Maximum...`` neighbourhood) and exceeds ``threshold``. Two such pixels closer than
    that are equal maxima (a plateau): the first in reading (raster) order is kept.

    Parameters
    ----------
    prob_map : numpy.ndarray
        2D or 3D foreground probability (e.g. soft-max channel 1 of a detection U-Net).
    threshold : float
        Smallest accepted (smoothed) probability at a peak.
    min_distance : int
        Radius of the neighbourhood a peak is the maximum of, pixels.
    smooth_sigma : float
        Gaussian smoothing before the peak search; 0 disables it.

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(N, ndim)`` array-ordered peak positions.
    """
    p = np.asarray(prob_map, dtype=np.float32)
    if smooth_sigma:
        p = ndi.gaussian_filter(p, smooth_sigma, mode="nearest")
    footprint = imagej_disk(max(1, int(min_distance)), p.ndim)
    peaks = (p == ndi.maximum_filter(p, footprint=footprint, mode="nearest")) & (p > threshold)
    limit = max(1, int(min_distance)) ** 2 + 1
    kept: list[np.ndarray] = []
    for candidate in np.argwhere(peaks):  # raster order
        if not kept or np.min(np.sum((np.asarray(kept) - candidate) ** 2, axis=1)) > limit:
            kept.append(candidate)
    return np.asarray(kept, dtype=np.float64).reshape(-1, p.ndim)


def solid_cells(
    cell_prob: np.ndarray,
    threshold: float = CELL_DEFAULTS["cell_threshold"],
    min_area: float = CELL_DEFAULTS["min_cell_area"],
    min_solidity: float = CELL_DEFAULTS["min_solidity"],
) -> tuple[np.ndarray, np.ndarray]:
    """The confidently segmented cells of a cell probability map, and their centroids (2D).

    A cell is an 8-connected component of ``cell_prob > threshold`` with its holes filled (as
    ImageJ's Analyze Particles with "include holes" traces it) that has at least ``min_area``
    pixels and a solidity of at least ``min_solidity``. Solidity is ImageJ's: the pixel count
    over the area of the convex hull of the traced outline (the hull of the pixels' corners);
    cells merged through a gap in their membrane are far from convex and fail it.

    Parameters
    ----------
    cell_prob : numpy.ndarray
        2D cell-interior probability (e.g. channel 1 of a segmentation U-Net).
    threshold : float
        Probability above which a pixel belongs to a cell.
    min_area : float
        Smallest accepted cell, pixels.
    min_solidity : float
        Smallest accepted solidity, 0-1.

    Returns
    -------
    labels : numpy.ndarray
        ``int32`` image, the accepted cells numbered 1..N in raster order of their first pixel.
    centroids : numpy.ndarray
        ``(N, 2)`` centroids (y, x) in array coordinates (pixel centres at integers).
    """
    from scipy.spatial import ConvexHull

    prob = np.asarray(cell_prob)
    if prob.ndim != 2:
        raise ValueError(f"solid_cells works on 2D cell probabilities, not shape {prob.shape}")
    components, _ = ndi.label(prob > threshold, structure=np.ones((3, 3), bool))
    labels = np.zeros(prob.shape, np.int32)
    inside_measured = np.zeros(prob.shape, bool)  # filled areas of the cells measured so far
    centroids: list[np.ndarray] = []
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    for index, box in enumerate(ndi.find_objects(components), start=1):  # raster order of first pixels
        if inside_measured[box][components[box] == index].any():
            continue  # in a hole of a cell measured before: part of that cell, as in ImageJ
        cell = ndi.binary_fill_holes(components[box] == index)
        area = int(cell.sum())
        if area < max(min_area, 1):
            continue
        inside_measured[box] |= cell
        pixels = np.argwhere(cell)
        hull = ConvexHull((pixels[:, None, :] + corners).reshape(-1, 2))
        if area / hull.volume < min_solidity:  # the 2D hull's "volume" is its area
            continue
        labels[box][cell] = len(centroids) + 1
        centroids.append(pixels.mean(axis=0) + [box[0].start, box[1].start])
    return labels, np.asarray(centroids, dtype=np.float64).reshape(-1, 2)


def detection_settings(bundle: Any = None) -> DetectionSettings:
    """Peak-finding settings of a detection bundle (``config.deepimagej_py.detection``), else the defaults.

    Args:
        bundle: a bundle folder/descriptor, a :class:`~deepimagej.bundle.spec.ModelSpec`, or ``None``.

    Returns:
        ``{"threshold", "smooth_sigma", "min_distance"}`` (:data:`DETECTION_DEFAULTS` for what is not set),
        plus the bundle's cell-head settings (``cell_threshold``, ``min_cell_area``, ``min_solidity``;
        :data:`CELL_DEFAULTS`) when it has them: pass them all to :func:`to_detections`.
    """
    settings = DETECTION_DEFAULTS.copy()
    if bundle is not None:
        settings.update(as_spec(bundle).extra.get("detection") or DetectionSettings())
    return settings


def to_detections(
    prob: np.ndarray,
    threshold: float = DETECTION_DEFAULTS["threshold"],
    *,
    min_distance: int = DETECTION_DEFAULTS["min_distance"],
    smooth_sigma: float = DETECTION_DEFAULTS["smooth_sigma"],
    cell_threshold: float | None = None,
    min_cell_area: float = CELL_DEFAULTS["min_cell_area"],
    min_solidity: float = CELL_DEFAULTS["min_solidity"],
    channel_axis: int | None = -1,
) -> np.ndarray:
    """Detections: :func:`peaks_to_points` of the centre probability (channel 1 of a K-class output).

    With ``cell_threshold`` (a two-head detection model, 2D, 4 channels: the centre soft-max
    and the cell soft-max, :func:`deepimagej.unet.model.with_cell_head`), every confidently
    segmented cell (:func:`solid_cells` of channel 3) gives its centroid instead of the peaks
    inside it: a peak must be sharp to be found, and the centre of a large cell is far from
    anything the centre head sees, while its outline is what the cell head sees best.

    Returns:
        ``(N, ndim)`` array-ordered point coordinates (y, x) or (z, y, x): the peaks (outside the
        solid cells) first, then the cell centroids.
    """
    points = peaks_to_points(foreground(prob, channel_axis), threshold, min_distance, smooth_sigma)
    if cell_threshold is None:
        return points
    heads = np.asarray(prob) if channel_axis is None else np.moveaxis(np.asarray(prob), channel_axis, -1)
    if heads.ndim != 3 or heads.shape[-1] != 4:
        raise ValueError(
            f"cell_threshold needs the 2D output of a two-head detection model (y, x, 4 channels), not shape {heads.shape}"
        )
    cells, centroids = solid_cells(heads[..., 3], cell_threshold, min_cell_area, min_solidity)
    outside = cells[tuple(np.round(points).astype(int).T)] == 0
    return np.concatenate([points[outside], centroids])


def detection_macro(
    threshold: float,
    smooth_sigma: float,
    min_distance: int,
    cell_threshold: float | None = None,
    min_cell_area: float = CELL_DEFAULTS["min_cell_area"],
    min_solidity: float = CELL_DEFAULTS["min_solidity"],
) -> str:
    """The ImageJ detection macro with these settings (the same as :func:`to_detections`)."""
    return DETECTION_MACRO.format(
        threshold=float(threshold),
        smooth_sigma=float(smooth_sigma),
        min_distance=int(min_distance),
        cell_threshold=-1.0 if cell_threshold is None else float(cell_threshold),
        min_cell_area=int(min_cell_area),
        min_solidity=float(min_solidity),
    )


def write_macro(kind: str, path, settings: DetectionSettings | None = None) -> None:
    """Write the post-processing macro of ``kind`` (``segmentation``, ``classes`` or ``detection``) to ``path``.

    ``settings``: detection peak-finding settings (:data:`DETECTION_DEFAULTS` when omitted).
    """
    from pathlib import Path

    if kind == "classes":
        text = CLASSES_MACRO
    elif kind == "segmentation":
        text = SEGMENTATION_MACRO
    else:
        merged = DETECTION_DEFAULTS.copy()
        merged.update(settings or DetectionSettings())
        text = detection_macro(**merged)
    Path(path).write_text(text, encoding="utf-8")
