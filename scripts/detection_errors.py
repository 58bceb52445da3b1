"""Where a detection bundle's errors are on the held-out ISBI 2012 images, and how far its candidates could go.

Usage: ``python scripts/detection_errors.py [BUNDLE] [--images 20 21 22 23]`` (after ``make setup``;
default bundle ``bundles/isbi2012-em-detection``). Prints:

* precision, recall and F1 pooled over the images with the bundle's own settings;
* the recall by cell size (the cells are the 4-connected interior components of the ISBI labels,
  as in ``scripts/train_detection.py``) and where the false positives lie;
* the **candidate ceiling**: the share of the cells that have *any* candidate within d_match: a
  local maximum of the smoothed centre probability above 0.2 (3 px apart), or (two-head
  bundles) the centroid of any 4-connected component of the cell probability above the
  bundle's cell threshold. No choice among these candidates can reach a higher recall.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
ASSETS = REPO.parent / "shared" / "assets" / "isbi2012_em" / "train"
SIZE_BINS = (0, 50, 300, 1500, np.inf)


def candidates(prob: np.ndarray, settings: dict) -> np.ndarray:
    """Every point a selection of peaks and cell centroids could choose from (see the module doc)."""
    from scipy import ndimage as ndi

    from deepimagej.unet.points import centroids
    from deepimagej.unet.postprocess import peaks_to_points

    points = [peaks_to_points(prob[..., 1], 0.2, 3, settings["smooth_sigma"])]
    if "cell_threshold" in settings:
        points.append(centroids(ndi.label(prob[..., 3] > settings["cell_threshold"])[0]))
    return np.concatenate(points)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path, nargs="?", default=REPO / "bundles" / "isbi2012-em-detection")
    parser.add_argument("--images", type=int, nargs="+", default=[20, 21, 22, 23])
    parser.add_argument("--d-match", type=float, default=5.0)
    args = parser.parse_args()
    if not ASSETS.is_dir():
        sys.exit(f"error: {ASSETS} not found")

    from deepimagej.unet.evaluate import predict_probabilities
    from deepimagej.unet.files import load_image
    from deepimagej.unet.metrics import detection_scores, match_points
    from deepimagej.unet.points import centroids
    from deepimagej.unet.postprocess import detection_settings, to_detections
    from deepimagej.unet.targets import load_mask

    settings = detection_settings(args.bundle)
    sizes, found, in_reach = [], [], []
    tp = fp = fn = 0
    fp_in_cells = 0
    two_heads = "cell_threshold" in settings
    for i in args.images:
        labels = load_mask(ASSETS / "label" / f"{i}.png", mode="semantic")
        gt = centroids(labels)
        prob = predict_probabilities(args.bundle, load_image(ASSETS / "image" / f"{i}.png"))
        points = to_detections(prob, **settings)
        pred_index, gt_index = match_points(points, gt, args.d_match)
        tp, fp, fn = tp + len(gt_index), fp + len(points) - len(gt_index), fn + len(gt) - len(gt_index)
        unmatched = np.setdiff1d(np.arange(len(points)), pred_index)
        if two_heads:
            fp_in_cells += int(np.sum(prob[..., 3][tuple(np.round(points[unmatched]).astype(int).T)] > 0.5))
        hit = np.zeros(len(gt), bool)
        hit[gt_index] = True
        found.append(hit)
        sizes.append(np.bincount(labels.ravel())[1:][: len(gt)])
        distance = np.sqrt(((candidates(prob, settings)[:, None] - gt[None]) ** 2).sum(-1)).min(0)
        in_reach.append(distance <= args.d_match)
    sizes, found, in_reach = map(np.concatenate, (sizes, found, in_reach))
    score = detection_scores(tp, fp, fn)
    print(f"{args.bundle.name}, images {args.images}, d_match {args.d_match:g} px: {len(found)} cells")
    print(
        f"  precision {score['precision']:.3f}  recall {score['recall']:.3f}  F1 {score['f1']:.3f}  "
        f"(tp {tp}, fp {fp}, fn {fn}; settings {settings})"
    )
    if two_heads:
        print(f"  false positives on cell interior (cell probability > 0.5): {fp_in_cells} of {fp}")
    for low, high in itertools.pairwise(SIZE_BINS):
        sel = (sizes >= low) & (sizes < high)
        print(
            f"  cells {low:>5g}-{high:<5g} px: {sel.sum():>4d}  recall {found[sel].mean():.3f}  "
            f"candidate ceiling {in_reach[sel].mean():.3f}"
        )
    print(f"  all cells: recall {found.mean():.3f}, candidate ceiling {in_reach.mean():.3f}")


if __name__ == "__main__":
    main()
