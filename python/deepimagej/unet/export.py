"""Export a trained U-Net as a bundle that every deepimagej front door runs.

The bundle (via :func:`deepimagej.bundle.build.build_bundle`) holds the TensorFlow
SavedModel, ``model.h5`` (the Keras model, used to fine-tune later with ``--from``),
``config.xml`` + ``rdf.yaml``, the example image and the result it computes, and an ImageJ
post-processing macro (instance labels for segmentation, points for detection).

Design choices:

- **Output size = input size.** A valid-padding network (the paper's) is exported through
  its same-padding twin (same weights, :func:`deepimagej.unet.model.same_padding_twin`).
  The bundle declares a halo of :func:`deepimagej.unet.model.receptive_halo` pixels: tiles
  overlap by twice the halo and only their centres, which are farther than the receptive
  radius from the tile border, are kept. There the twin computes exactly what the valid
  network computes on the mirror-padded image: the paper's overlap-tile strategy. Tile
  sizes are multiples of the pooling factor and so is the halo, so every tile sits on the
  same pooling grid.
- **Pre-processing**: ``scale_range`` per image with percentiles 0 and 100 (min-max to
  [0, 1]), the normalisation used in training (:func:`deepimagej.unet.train.normalize`).
- **Output**: soft-max class probabilities, channels last (channel 1 = foreground).
  Python post-processing is left to :mod:`deepimagej.unet.postprocess`
  (``to_instances`` / ``to_detections``); the ImageJ macro does the same in ImageJ.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import TrainingError


def bundle_tiling(model) -> dict[str, Any]:
    """``min_size``, ``step`` and ``halo`` per spatial axis for a U-Net built by :func:`build_unet`.

    For a two-head model (:func:`~deepimagej.unet.model.with_cell_head`): the step both U-Nets
    accept (least common multiple) and the larger halo, rounded up to that step.
    """
    from math import lcm

    from deepimagej.unet.model import heads, infer_config, receptive_halo, size_multiple

    centres, cells = heads(model)
    if cells is not None:
        a, b = bundle_tiling(centres), bundle_tiling(cells)
        step = {ax: lcm(a["step"][ax], b["step"][ax]) for ax in a["axes"]}
        halo = {ax: -(-max(a["halo"][ax], b["halo"][ax]) // step[ax]) * step[ax] for ax in a["axes"]}
        return {"axes": a["axes"], "min_size": dict(step), "step": step, "halo": halo}
    cfg = getattr(model, "unet_config", None) or infer_config(model)
    ndim, depth, aniso, downsample = cfg["ndim"], cfg["depth"], cfg["anisotropy"], cfg.get("downsample", 1)
    axes = "yx" if ndim == 2 else "zyx"
    mult = size_multiple(depth, ndim, aniso, downsample)
    halo = receptive_halo(depth, ndim, aniso, downsample)
    return {
        "axes": axes,
        "min_size": dict(zip(axes, mult)),
        "step": dict(zip(axes, mult)),
        "halo": dict(zip(axes, halo)),
    }


def _documentation(name: str, kind: str, cfg: dict[str, Any], tiling: dict[str, Any], training: dict | None,
                   description: str, border: str = "mirror", detection: dict[str, float] | None = None,
                   test_time_augmentation: bool = False, cell_cfg: dict[str, Any] | None = None) -> str:
    lines = [
        f"# {name}",
        "",
        description or f"U-Net ({kind}) trained with deepimagej (Falk et al., Nature Methods 2019).",
        "",
        "## Model",
        (
            f"- U-Net (Falk et al. 2019): {cfg['ndim']}D, depth {cfg['depth']}, {cfg['base_features']} base "
            f"features, leaky ReLU 0.1, {cfg['n_classes']} classes with soft-max; trained with "
            f"{cfg['padding']} convolutions, exported with same padding and a halo of "
            f"{', '.join(f'{a}={h}' for a, h in tiling['halo'].items())} px (overlap-tile)."
            + (f" The network works at 1/{cfg['downsample']} of the image resolution ({cfg['downsample']} x "
               f"{cfg['downsample']} average in, bilinear up-sampling of the class scores out)."
               if cfg.get("downsample", 1) > 1 else "")
        ),
        *([(f"- Cell head: a second U-Net ({cell_cfg['ndim']}D, depth {cell_cfg['depth']}, "
            f"{cell_cfg['base_features']} base features, 1/{cell_cfg.get('downsample', 1)} resolution) segments the "
            "cell interiors; the model outputs both soft-maxes (channels 1-2: background / object centre; "
            "channels 3-4: membrane / cell interior).")] if cell_cfg else []),
        "- Input: one channel, normalised per image to [0, 1] (scale_range, percentiles 0-100).",
        "- Image border: "
        + ("zeros beyond the border, as in training (`config.deepimagej_py.border: zeros`; an object cut by the "
           "border is seen as cut, not mirrored into a whole one)." if border == "zeros"
           else "mirror padding (DeepImageJ's default)."),
        *([("- Test-time augmentation: the output is the mean over the 8 rotations/reflections of the image "
            "(`config.deepimagej_py.test_time_augmentation`; deepimagej only, DeepImageJ in Fiji runs the plain "
            "network).")] if test_time_augmentation else []),
        "- Output: class probabilities (channel 2 in ImageJ / index 1 in Python = "
        + ("object centre" if kind == "detection" else "foreground") + ").",
        "",
        "## Post-processing",
    ]
    if kind == "detection":
        d = detection or {}
        lines += [
            (
                f"- Detections: local maxima of the object-centre probability smoothed with a Gaussian of sigma "
                f"{d.get('smooth_sigma')} px, above {d.get('threshold')}, at least {d.get('min_distance')} px "
                "apart (`config.deepimagej_py.detection` in `rdf.yaml`)."
            ),
            *([(f"- Solid cells replace the peaks inside them by their centroid: 8-connected regions of cell "
                f"probability > {d.get('cell_threshold')} (holes filled) with at least {d.get('min_cell_area')} px "
                f"and solidity >= {d.get('min_solidity')} (ImageJ's Solidity: area / convex hull area). Large cells "
                "have a centre too far from their outline for a sharp peak; cells merged through a gap in their "
                "membrane are not solid and keep their peaks.")] if d.get("cell_threshold") is not None else []),
            ("- ImageJ: `postprocessing_detection.ijm` (point selection + ROI Manager + Results table X, Y, Slice, "
             "Probability, Source)."),
            "- Python: `deepimagej.unet.postprocess.to_detections(prob, **detection_settings(bundle))`.",
        ]
    else:
        lines += [
            "- ImageJ: `postprocessing_instances.ijm` (threshold 0.5 + Analyze Particles, Count Masks -> labels).",
            "- Python: `deepimagej.unet.postprocess.to_instances(prob)`.",
        ]
    lines += ["", "## Fine-tuning", "`deepimagej train --from <this bundle> ...` reloads `model.h5`"
              + (" (its centre U-Net; the cell U-Net is trained from masks)." if cell_cfg else "."), ""]
    if training:
        lines += ["## Training", "```json", json.dumps(training, indent=1, default=str), "```", ""]
    lines += ["Built by deepimagej-py (`deepimagej.unet.export`).", ""]
    return "\n".join(lines)


def _example_layout(image: np.ndarray | None, axes: str) -> tuple[np.ndarray | None, str | None]:
    """The example image with an explicit channel axis in ImageJ's TZCYX order (``cyx`` / ``zcyx``).

    The result then has the same axes with the class channels, a valid ImageJ hyperstack.
    """
    if image is None:
        return None, None
    image = np.asarray(image)
    if image.ndim == len(axes):
        image = image[..., np.newaxis]
    if image.ndim != len(axes) + 1:
        raise TrainingError(f"example image of shape {image.shape} does not fit axes '{axes}'")
    if axes == "yx":
        return np.moveaxis(image, -1, 0), "cyx"
    return np.moveaxis(image, -1, 1), "zcyx"


def export_unet(
    model,
    out_dir: str | Path,
    *,
    name: str | None = None,
    description: str = "",
    kind: str = "segmentation",
    example_image: np.ndarray | None = None,
    authors: Sequence[str] = ("deepimagej-py",),
    tags: Sequence[str] = (),
    license: str = "BSD-2-Clause",
    training: dict[str, Any] | None = None,
    macro: bool = True,
    pixel_size: str | None = None,
    border: str = "mirror",
    detection: dict[str, float] | None = None,
    test_time_augmentation: bool = False,
):
    """Export a U-Net (built by :func:`build_unet`, trained or not) as a bundle folder.

    Args:
        model: the Keras model (valid-padding models are converted to their same-padding twin), or
            a two-head detection model of :func:`~deepimagej.unet.model.with_cell_head`.
        out_dir: bundle folder (replaced if it exists).
        kind: ``"segmentation"`` or ``"detection"`` (chooses the post-processing macro and docs).
        example_image: raw image saved as ``exampleImage.tif``; its result is computed by the bundle.
        training: training facts written into the documentation (loss, epochs, time...).
        macro: add the ImageJ post-processing macro.
        border: what the model saw beyond the image border in training (``"mirror"`` or
            ``"zeros"``); the bundle is run the same way (:attr:`ModelSpec.border`).
        detection: peak-finding settings of a detection model (``threshold``, ``smooth_sigma``,
            ``min_distance``; :data:`~deepimagej.unet.postprocess.DETECTION_DEFAULTS` for what is
            missing), written to the rdf and into the ImageJ macro. A two-head model
            (:func:`~deepimagej.unet.model.with_cell_head`) also has ``cell_threshold``,
            ``min_cell_area`` and ``min_solidity`` (:data:`~deepimagej.unet.postprocess.CELL_DEFAULTS`).
        test_time_augmentation: the bundle averages the U-Net over the 8 rotations/reflections
            of the image (:attr:`ModelSpec.test_time_augmentation`; 8 times slower, steadier).

    Returns:
        The :class:`~deepimagej.bundle.spec.ModelSpec` of the written bundle.
    """
    from deepimagej.bundle.build import build_bundle
    from deepimagej.bundle.spec import ProcessingStep
    from deepimagej.unet.model import heads, infer_config, same_padding_twin, with_cell_head
    from deepimagej.unet.postprocess import CELL_DEFAULTS, DETECTION_DEFAULTS, write_macro

    if kind not in ("segmentation", "detection"):
        raise TrainingError(f"kind='{kind}': use 'segmentation' or 'detection'")
    centres, cells = heads(model)
    cfg = dict(getattr(centres, "unet_config", None) or infer_config(centres))
    cell_cfg = None
    if cells is None:
        twin = same_padding_twin(model)
        twin.unet_config = {**cfg, "padding": "same"}
    elif kind != "detection":
        raise TrainingError("a two-head model (centres + cells) is a detection model: export it with kind='detection'")
    else:
        cell_cfg = infer_config(cells)
        twin = with_cell_head(centres, cells, name=model.name)
        detection = {**CELL_DEFAULTS, **(detection or {})}
    tiling = bundle_tiling(twin)
    axes = tiling["axes"]
    out_dir = Path(out_dir)
    name = name or out_dir.name
    pre = [ProcessingStep("scale_range", {"mode": "per_sample", "axes": axes, "min_percentile": 0.0,
                                          "max_percentile": 100.0, "eps": 1e-6})]
    example, example_axes = _example_layout(example_image, axes)
    settings = {**DETECTION_DEFAULTS, **(detection or {})} if kind == "detection" else None
    doc = _documentation(name, kind, cfg, tiling, training, description, border, settings, test_time_augmentation,
                         cell_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        macros = []
        if macro:
            macro_path = Path(tmp) / ("postprocessing_detection.ijm" if kind == "detection" else "postprocessing_instances.ijm")
            write_macro(kind, macro_path, settings)
            macros.append(macro_path)
        spec = build_bundle(
            twin,
            out_dir,
            name=name,
            description=description or f"U-Net {kind} model trained with deepimagej (Falk et al. 2019).",
            input_axes="b" + axes + "c",
            output_axes="b" + axes + "c",
            min_size=tiling["min_size"],
            step=tiling["step"],
            halo=tiling["halo"],
            preprocessing=pre,
            postprocessing=(),
            postprocessing_macros=macros,
            example_image=example,
            example_axes=example_axes,
            authors=tuple(authors),
            tags=("unet", "deepimagej", kind, f"{cfg['ndim']}d", *tags),
            license=license,
            documentation=doc,
            pixel_size=pixel_size,
            border=border,
            test_time_augmentation=test_time_augmentation,
            extra={"detection": settings} if settings else None,
            overwrite=True,
        )
    return spec
