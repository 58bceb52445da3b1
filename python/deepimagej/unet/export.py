"""Export a trained U-Net as a bundle that every deepimagej front door runs.

The bundle (via :func:`deepimagej.export.build_bundle`) holds the TensorFlow
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
- **Pre-processing**: the steps of the training config (:meth:`TrainingConfig.processing_steps`,
  by default ``scale_range`` per image with percentiles 0 and 100, min-max to [0, 1]): the very
  steps training applied, so training and inference cannot drift apart.
- **Element size**: the model's pixel size (``TrainingConfig.element_size``) goes into the
  bundle's pixel size fields; images of another calibration are resampled to it at inference
  (:func:`deepimagej.predict.run` with ``pixel_size``).
- **Output**: soft-max class probabilities, channels last (channel 1 = foreground, or one channel
  per class). Python post-processing is left to :mod:`deepimagej.unet.postprocess`
  (``to_instances`` / ``to_classes`` / ``to_detections``); the ImageJ macro does the same in ImageJ.

:func:`export_training` exports the result of :func:`deepimagej.unet.train.train` with the facts of
its run (and, for detection, the peak-finding settings that score best on its validation images,
:func:`tune_detection_settings`); :func:`export_two_heads` joins a centre U-Net and a cell U-Net
into one detection bundle (:func:`deepimagej.unet.model.with_cell_head`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.bundle.spec import ModelSpec, ProcessingStep
from deepimagej.errors import TrainingError
from deepimagej.export import build_bundle
from deepimagej.resample import format_pixel_size
from deepimagej.unet.config import TrainingConfig
from deepimagej.unet.evaluate import tune_detection
from deepimagej.unet.model import (
    heads,
    infer_config,
    receptive_halo,
    same_padding_twin,
    size_multiple,
    with_cell_head,
)
from deepimagej.unet.postprocess import (
    CELL_DEFAULTS,
    DETECTION_DEFAULTS,
    MACRO_FILES,
    DetectionSettings,
    write_macro,
)
from deepimagej.unet.samples import TrainingSample
from deepimagej.unet.train import TrainResult


def bundle_tiling(model) -> dict[str, Any]:
    """``min_size``, ``step`` and ``halo`` per spatial axis for a U-Net built by :func:`build_unet`.

    For a two-head model (:func:`~deepimagej.unet.model.with_cell_head`): the step both U-Nets
    accept (least common multiple) and the larger halo, rounded up to that step.
    """
    from math import lcm

    centres, cells = heads(model)
    if cells is not None:
        a, b = bundle_tiling(centres), bundle_tiling(cells)
        step = {ax: lcm(a["step"][ax], b["step"][ax]) for ax in a["axes"]}
        halos = {ax: -(-max(a["halo"][ax], b["halo"][ax]) // step[ax]) * step[ax] for ax in a["axes"]}
        return {"axes": a["axes"], "min_size": dict(step), "step": step, "halo": halos}
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


def _documentation(
    name: str,
    kind: str,
    cfg: dict[str, Any],
    tiling: dict[str, Any],
    training: dict | None,
    description: str,
    border: str = "mirror",
    detection: DetectionSettings | None = None,
    test_time_augmentation: bool = False,
    cell_cfg: dict[str, Any] | None = None,
    channel_names: Sequence[str] = (),
    pixel_size: str | None = None,
) -> str:
    channels = ", ".join(f"{i + 1} = {n}" for i, n in enumerate(channel_names))
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
            + (
                f" The network works at 1/{cfg['downsample']} of the image resolution ({cfg['downsample']} x "
                f"{cfg['downsample']} average in, bilinear up-sampling of the class scores out)."
                if cfg.get("downsample", 1) > 1
                else ""
            )
        ),
        *(
            [
                (
                    f"- Cell head: a second U-Net ({cell_cfg['ndim']}D, depth {cell_cfg['depth']}, "
                    f"{cell_cfg['base_features']} base features, 1/{cell_cfg.get('downsample', 1)} resolution) segments the "
                    "cell interiors; the model outputs both soft-maxes (channels 1-2: background / object centre; "
                    "channels 3-4: membrane / cell interior)."
                )
            ]
            if cell_cfg
            else []
        ),
        (
            f"- Input: {cfg['in_channels']} channel(s), pre-processed as in training (the rdf's preprocessing; by "
            "default min-max per image to [0, 1], scale_range with percentiles 0-100)."
        ),
        (
            f"- Element size (pixel size): {pixel_size}; images of another calibration are resampled to it and the "
            "output back (deepimagej run with the image's pixel size)."
            if pixel_size
            else "- Element size: not set (images are run at their own pixel size)."
        ),
        "- Image border: "
        + (
            "zeros beyond the border, as in training (`config.deepimagej_py.border: zeros`; an object cut by the "
            "border is seen as cut, not mirrored into a whole one)."
            if border == "zeros"
            else "mirror padding (DeepImageJ's default)."
        ),
        *(
            [
                (
                    "- Test-time augmentation: the output is the mean over the 8 rotations/reflections of the image "
                    "(`config.deepimagej_py.test_time_augmentation`; deepimagej only, DeepImageJ in Fiji runs the plain "
                    "network)."
                )
            ]
            if test_time_augmentation
            else []
        ),
        f"- Output: class probabilities, one channel per class (ImageJ channel numbers: {channels}).",
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
            *(
                [
                    (
                        f"- Solid cells replace the peaks inside them by their centroid: 8-connected regions of cell "
                        f"probability > {d.get('cell_threshold')} (holes filled) with at least {d.get('min_cell_area')} px "
                        f"and solidity >= {d.get('min_solidity')} (ImageJ's Solidity: area / convex hull area). Large cells "
                        "have a centre too far from their outline for a sharp peak; cells merged through a gap in their "
                        "membrane are not solid and keep their peaks."
                    )
                ]
                if d.get("cell_threshold") is not None
                else []
            ),
            (
                "- ImageJ: `postprocessing_detection.ijm` (point selection + ROI Manager + Results table X, Y, Slice, "
                "Probability, Source)."
            ),
            "- Python: `deepimagej.unet.postprocess.to_detections(prob, **detection_settings(bundle))`.",
        ]
    elif cfg["n_classes"] > 2:
        lines += [
            "- ImageJ: `postprocessing_classes.ijm` (the class of highest probability per pixel -> 8-bit class map).",
            "- Python: `deepimagej.unet.postprocess.to_classes(prob)`.",
        ]
    else:
        lines += [
            "- ImageJ: `postprocessing_instances.ijm` (threshold 0.5 + Analyze Particles, Count Masks -> labels).",
            "- Python: `deepimagej.unet.postprocess.to_instances(prob)`.",
        ]
    lines += [
        "",
        "## Fine-tuning",
        "`deepimagej train --from <this bundle> ...` reloads `model.h5`"
        + (" (its centre U-Net; the cell U-Net is trained from masks)." if cell_cfg else "."),
        "",
    ]
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


def _channel_names(kind: str, n_classes: int, names: Sequence[str], two_heads: bool) -> tuple[str, ...]:
    if two_heads:
        return ("background", "object centre", "membrane", "cell interior")
    if names:
        return ("background", *names)
    if n_classes == 2:
        return ("background", "object centre" if kind == "detection" else "foreground")
    return ("background", *(f"class {k}" for k in range(1, n_classes)))


def export_unet(
    model: Any,
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
    element_size: Mapping[str, float] | None = None,
    preprocessing: Sequence[ProcessingStep] | None = None,
    class_names: Sequence[str] = (),
    border: str = "mirror",
    detection: DetectionSettings | None = None,
    test_time_augmentation: bool = False,
) -> ModelSpec:
    """Export a U-Net (built by :func:`build_unet`, trained or not) as a bundle folder.

    Args:
        model: the Keras model (valid-padding models are converted to their same-padding twin), or
            a two-head detection model of :func:`~deepimagej.unet.model.with_cell_head`.
        out_dir: bundle folder (replaced if it exists).
        name, description, authors, tags, license: the bundle's metadata.
        kind: ``"segmentation"`` or ``"detection"`` (chooses the post-processing macro and docs).
        example_image: raw image saved as ``exampleImage.tif``; its result is computed by the bundle.
        training: training facts written into the documentation (loss, epochs, time...).
        macro: add the ImageJ post-processing macro (instances; a class map for more than 2
            classes; points for detection).
        element_size: the model's element size in micrometres per axis (``{"y": 0.5, "x": 0.5}``),
            written as the bundle's pixel size (:func:`deepimagej.resample.format_pixel_size`).
        preprocessing: the input's pre-processing steps, as training applied them
            (:meth:`TrainingConfig.processing_steps`); default: the U-Net's min-max normalisation.
        class_names: names of the foreground classes (documentation).
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
    if kind not in ("segmentation", "detection"):
        raise TrainingError(f"kind='{kind}': use 'segmentation' or 'detection'")
    centres, cells = heads(model)
    cfg = dict(getattr(centres, "unet_config", None) or infer_config(centres))
    cell_cfg = None
    if cells is None:
        twin = same_padding_twin(model)
        twin.unet_config = {**cfg, "padding": "same"}
    elif kind != "detection":
        raise TrainingError(
            "a two-head model (centres + cells) is a detection model: export it with kind='detection'"
        )
    else:
        cell_cfg = infer_config(cells)
        twin = with_cell_head(centres, cells, name=model.name)
        detection = {**CELL_DEFAULTS, **(detection or {})}
    tiling = bundle_tiling(twin)
    axes = tiling["axes"]
    out_dir = Path(out_dir)
    name = name or out_dir.name
    if preprocessing is None:
        preprocessing = TrainingConfig(ndim=cfg["ndim"]).processing_steps()
    example, example_axes = _example_layout(example_image, axes)
    settings: DetectionSettings | None = (
        {**DETECTION_DEFAULTS, **(detection or {})} if kind == "detection" else None
    )
    pixel_size = format_pixel_size(element_size or {})
    doc = _documentation(
        name,
        kind,
        cfg,
        tiling,
        training,
        description,
        border,
        settings,
        test_time_augmentation,
        cell_cfg,
        _channel_names(kind, cfg["n_classes"], class_names, cells is not None),
        pixel_size,
    )
    macro_kind = "classes" if kind == "segmentation" and cfg["n_classes"] > 2 else kind
    macro_name = MACRO_FILES[macro_kind]
    with tempfile.TemporaryDirectory() as tmp:
        macros = []
        if macro:
            macro_path = Path(tmp) / macro_name
            write_macro(macro_kind, macro_path, settings)
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
            preprocessing=tuple(preprocessing),
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


def training_facts(result: TrainResult) -> dict[str, Any]:
    """What a bundle's documentation says about the run that trained it."""
    cfg = result.config
    return {
        "best_val_loss": result.best_val_loss,
        "best_epoch": result.best_epoch,
        "epochs": cfg.epochs,
        "steps_per_epoch": cfg.steps_per_epoch,
        "tile": list(result.tile),
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "lr_drop_epochs": list(cfg.lr_drop_epochs),
        "n_train": result.n_train,
        "n_val": len(result.val_samples),
        "from_bundle": Path(cfg.from_bundle).name if cfg.from_bundle else None,
        "training_time_s": round(result.history[-1]["elapsed_s"], 1),
    }


def tune_detection_settings(
    model: Any, samples: Sequence[TrainingSample], **export_kw: Any
) -> tuple[DetectionSettings, dict[str, Any]]:
    """Peak-finding (and cell-head) settings of a detection model that maximise the F1 on annotated samples.

    The model is exported to a temporary bundle (with ``export_kw``: its border, test-time
    augmentation...) and run as users will run it; :func:`deepimagej.unet.evaluate.tune_detection`
    scores every setting of its grid.

    Args:
        model: a detection U-Net, or a two-head model.
        samples: validation samples with their annotated ``points``.
        **export_kw: :func:`export_unet` arguments.

    Returns:
        ``(settings, score)`` as :func:`~deepimagej.unet.evaluate.tune_detection`.
    """
    points = [s.points for s in samples if s.points is not None]
    if not samples or len(points) < len(samples):
        raise TrainingError("choosing detection settings needs validation images with annotated points")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        kw = {**export_kw, "example_image": None, "training": None, "kind": "detection"}
        spec = export_unet(model, bundle, **kw)
        return tune_detection(spec, [s.image for s in samples], points)


def export_training(result: TrainResult, bundle_dir: str | Path, **export_kw: Any) -> ModelSpec:
    """Export the model of a training run as a bundle, with the facts of the run.

    The run's config gives the task, border, element size, pre-processing and class names; its
    first validation image is the example unless ``example_image`` is given. A detection model
    gets the peak-finding settings that score best on the validation images
    (:func:`tune_detection_settings`) unless ``detection`` is given.

    Args:
        result: what :func:`deepimagej.unet.train.train` returned.
        bundle_dir: the bundle folder to write (replaced).
        **export_kw: more :func:`export_unet` arguments (``name``, ``description``, ``tags``,
            ``test_time_augmentation``, ...).

    Returns:
        The spec of the written bundle.
    """
    cfg = result.config
    kw: dict[str, Any] = {
        "kind": cfg.task,
        "border": cfg.border_mode,
        "element_size": cfg.element_sizes() or None,
        "preprocessing": cfg.processing_steps(),
        "class_names": cfg.class_names,
        "example_image": result.val_samples[0].image if result.val_samples else None,
        "training": training_facts(result),
        **export_kw,
    }
    if (
        kw["kind"] == "detection"
        and "detection" not in kw
        and all(s.points is not None for s in result.val_samples)
    ):
        kw["detection"], score = tune_detection_settings(result.model, result.val_samples, **kw)
        kw["training"] = {
            **(kw["training"] or {}),
            "detection_settings_from_validation": {"settings": kw["detection"], **score},
        }
    return export_unet(result.model, bundle_dir, **kw)


def export_two_heads(
    centres: TrainResult, cells: TrainResult, bundle_dir: str | Path, **export_kw: Any
) -> ModelSpec:
    """One detection bundle from a centre U-Net and a cell U-Net (:func:`~deepimagej.unet.model.with_cell_head`).

    The settings of both heads (peaks; cell threshold, area and solidity) are chosen on the centre
    run's validation images (:func:`tune_detection_settings`); the documentation gets the facts of
    both runs.

    Args:
        centres: the run of the object-centre U-Net (detection, with point annotations).
        cells: the run of the cell-segmentation U-Net (2 classes; same input channels).
        bundle_dir: the bundle folder to write (replaced).
        **export_kw: more :func:`export_unet` arguments (``name``, ``test_time_augmentation``...).

    Returns:
        The spec of the written bundle.
    """
    model = with_cell_head(centres.model, cells.model)
    kw: dict[str, Any] = {
        "kind": "detection",
        "border": centres.config.border_mode,
        "element_size": centres.config.element_sizes() or None,
        "preprocessing": centres.config.processing_steps(),
        "example_image": centres.val_samples[0].image if centres.val_samples else None,
        **export_kw,
    }
    settings, score = tune_detection_settings(model, centres.val_samples, **kw)
    kw["detection"] = settings
    kw["training"] = {
        "centre_unet": training_facts(centres),
        "cell_unet": {**training_facts(cells), "depth": infer_config(cells.model)["depth"]},
        "detection_settings_from_validation": {"settings": settings, **score},
    }
    return export_unet(model, bundle_dir, **kw)
