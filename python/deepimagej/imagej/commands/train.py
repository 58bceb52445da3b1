""""U-Net Train": train or fine-tune a U-Net from annotations made in ImageJ (Falk et al. 2019).

Two sources of training data:

* ``data=[current image + ROI Manager]``: the current image, annotated in the ROI Manager: one
  area ROI per object (segmentation) or point ROIs, one point per object (detection). With one
  image the validation loss is measured on that image (the Log says so); annotate a second
  image and use folders for a real validation.
* ``data=folders``: ``images=[folder]`` and ``annotations=[folder]`` (label masks, ``RoiSet.zip``
  / ``.roi`` files or multi-point ROIs, matched to the images by file name).

The result is a bundle (``output=[folder]``) that "DeepImageJ Run" executes. The command is an
ImageJ ``GenericDialog``: clicked from the menu it asks for its settings; called from a macro it
reads them from the options (and the Recorder records them)::

    run("U-Net Train", "data=[current image + ROI Manager] task=auto output=/path/my-unet epochs=10");
    run("U-Net Train", "data=folders images=/data/imgs annotations=/data/masks output=/path/my-unet from=isbi2012-em-unet");
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import TrainingError
from deepimagej.imagej.commands.dialogs import DATA_CHOICES, show, train_dialog

#: ImageJ Roi types that mark one point per object (Roi.POINT = 10)
POINT_ROI_TYPE = 10


def ask_settings(options: str | None) -> dict[str, Any] | None:
    """The command's settings from a GenericDialog (shown, or filled from the macro ``options``).

    Returns ``None`` when the user cancels the dialog.
    """
    return show(train_dialog())


def rois_are_points(roi_types: Sequence[int]) -> bool:
    """Whether the ROIs (ImageJ ``Roi.getType()`` values) are points (detection) rather than areas.

    Raises:
        TrainingError: no ROI, or point and area ROIs mixed.
    """
    if not roi_types:
        raise TrainingError("U-Net Train: the ROI Manager is empty; outline each object (or click one point per "
                            "object for detection) and add it with 't' (Edit > Selection > Add to Manager)")
    points = [int(t) == POINT_ROI_TYPE for t in roi_types]
    if any(points) and not all(points):
        raise TrainingError("U-Net Train: the ROI Manager mixes point and area ROIs; use areas (one per object) for "
                            "segmentation or points (one per object) for detection")
    return all(points)


def roi_manager_zip(folder: Path) -> tuple[Path, bool]:
    """Save the ROI Manager's ROIs as a ``RoiSet.zip`` in ``folder``; returns it and whether they are points.

    Raises:
        TrainingError: no ROI Manager / no ROI, or point and area ROIs mixed.
    """
    from jpype import JClass

    manager = JClass("ij.plugin.frame.RoiManager").getInstance()
    rois = list(manager.getRoisAsArray()) if manager is not None else []
    points = rois_are_points([int(r.getType()) for r in rois])
    encoder = JClass("ij.io.RoiEncoder")
    path = folder / "RoiSet.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, roi in enumerate(rois):
            zf.writestr(f"{i:04d}.roi", bytes(encoder.saveAsByteArray(roi)))
    return path, points


def _samples_from_current_image(settings: dict[str, Any], tmp: Path) -> tuple[list[Any], bool, str]:
    """Training samples from the current image and the ROI Manager of the embedded ImageJ."""
    from jpype import JClass

    from deepimagej.imagej.convert import from_imageplus, imageplus_axes

    imp = JClass("ij.WindowManager").getCurrentImage()
    if imp is None:
        raise TrainingError("U-Net Train: no image open; open the annotated image (or use data=folders)")
    axes = imageplus_axes(imp)
    check_training_axes(axes)
    zip_path, are_points = roi_manager_zip(tmp)
    samples, detection = samples_from_image(settings, from_imageplus(imp), axes, zip_path, are_points, tmp)
    return samples, detection, str(imp.getTitle())


def check_training_axes(axes: str) -> None:
    """Refuse images U-Net Train cannot use: time series, and channels with slices.

    Raises:
        TrainingError: the axes name the problem.
    """
    if "t" in axes or ("c" in axes and "z" in axes):
        raise TrainingError(f"U-Net Train: the current image has axes '{axes}'; use a 2D image or a z-stack")


def samples_from_image(settings: dict[str, Any], image: np.ndarray, axes: str, rois_zip: Path, are_points: bool,
                       tmp: Path) -> tuple[list[Any], bool]:
    """Training samples from one image (axes from ImageJ) annotated by the ROIs in ``rois_zip``."""
    import tifffile

    from deepimagej.unet.train import load_samples

    check_training_axes(axes)
    detection = _task_is_detection(settings["task"], are_points)
    image_path = tmp / "image.tif"  # the image as a file: the same loader as for folders
    tifffile.imwrite(image_path, image)
    ndim = 3 if "z" in axes else 2
    samples = load_samples(image_path, rois_zip, ndim=ndim, detection=detection, radius=settings["radius"],
                           r_ign=2 * settings["radius"], prepare_kw={"lam": 0.0} if detection else None)
    return samples, detection


def _task_is_detection(task: str, are_points: bool | None) -> bool:
    if task == "detection":
        if are_points is False:
            raise TrainingError("U-Net Train: task=detection needs point ROIs (one point per object)")
        return True
    if task == "segmentation":
        if are_points:
            raise TrainingError("U-Net Train: point ROIs give a detection model; use task=detection (or auto)")
        return False
    if task != "auto":
        raise TrainingError(f"U-Net Train: task={task}; use auto, segmentation or detection")
    return bool(are_points)


def _samples_from_folders(settings: dict[str, Any]) -> tuple[list[Any], bool, str]:
    """Training samples from an image folder and an annotation folder."""
    from deepimagej.unet import data as udata
    from deepimagej.unet.train import load_samples

    images, annotations = Path(settings["images"]), Path(settings["annotations"])
    if not settings["images"] or not images.exists():
        raise TrainingError(f"U-Net Train: images=[{settings['images']}] is not a folder or file")
    if not settings["annotations"] or not annotations.exists():
        raise TrainingError(f"U-Net Train: annotations=[{settings['annotations']}] is not a folder or file")
    files = [annotations] if annotations.is_file() else sorted(annotations.iterdir())
    are_points = None
    if settings["task"] == "auto":
        rois = [f for f in files if f.suffix.lower() in udata.ROI_SUFFIXES]
        are_points = bool(rois) and all(_is_point_file(f) for f in rois)
    detection = _task_is_detection(settings["task"], are_points)
    samples = load_samples(images, annotations, detection=detection, radius=settings["radius"],
                           r_ign=2 * settings["radius"], prepare_kw={"lam": 0.0} if detection else None)
    return samples, detection, images.name


def _is_point_file(path: Path) -> bool:
    import roifile

    try:
        rois = roifile.roiread(path)
    except Exception:  # noqa: BLE001 - not readable as a ROI: load_samples reports it with its name
        return False
    rois = rois if isinstance(rois, list) else [rois]
    return bool(rois) and all(r.roitype == roifile.ROI_TYPE.POINT for r in rois)


def train_command(ij: Any, options: str | None) -> None:
    """The "U-Net Train" command: annotations -> a trained U-Net bundle; called from the Java shim."""
    from jpype import JClass

    settings = ask_settings(options)
    if settings is None:
        return
    IJ = JClass("ij.IJ")

    def status(done: int, total: int, text: str) -> None:
        IJ.showProgress(done, total)
        IJ.showStatus(text)

    train_from_settings(settings, lambda tmp: _samples_from_current_image(settings, tmp), log=IJ.log, status=status)
    IJ.showProgress(1.0)
    IJ.showStatus("")


#: current_image(tmp_folder) -> (samples, detection, image title): the annotated image of "data=current image..."
CurrentImageSamples = Callable[[Path], tuple[list[Any], bool, str]]


def train_from_settings(settings: dict[str, Any], current_image: CurrentImageSamples, *,
                        log: Callable[[str], Any], status: Callable[[int, int, str], Any]) -> Any:
    """Train a U-Net from the dialog's settings; the ImageJ side gives the annotated image, the log and status.

    Args:
        settings: the typed values of :func:`~deepimagej.imagej.commands.dialogs.train_dialog`.
        current_image: makes the samples of ``data=[current image + ROI Manager]`` (in a temporary folder).
        log: writes a line to ImageJ's Log window.
        status: shows ``(epoch, epochs, text)`` in ImageJ's progress and status bars.

    Returns:
        The training result of :func:`deepimagej.unet.train.train` (the bundle is in ``settings["output"]``).

    Raises:
        TrainingError: unusable settings or data.
    """
    from deepimagej.imagej.models import find_model
    from deepimagej.unet.train import train

    output = Path(settings["output"]).expanduser() if settings["output"] else None
    if output is None:
        raise TrainingError("U-Net Train needs output=[folder] (the bundle to write)")
    if settings["epochs"] < 1 or settings["steps"] < 1 or settings["tile"] < 16:
        raise TrainingError("U-Net Train: epochs and steps must be at least 1 and tile at least 16")
    source = find_model(settings["from"]).root if settings["from"] else None
    work = output.with_name(output.name + "-training")
    with tempfile.TemporaryDirectory() as tmp:
        if settings["data"] == DATA_CHOICES[0]:
            samples, detection, origin = current_image(Path(tmp))
        elif settings["data"] == DATA_CHOICES[1]:
            samples, detection, origin = _samples_from_folders(settings)
        else:
            raise TrainingError(f"U-Net Train: data=[{settings['data']}]; use one of: {', '.join(DATA_CHOICES)}")
        val = None
        if len(samples) == 1:
            val = samples
            log("[U-Net Train] one annotated image: the validation loss is measured on the training image "
                "(annotate a second image for a real validation)")
        kind = "detection" if detection else "segmentation"
        log(f"[U-Net Train] {kind}: {len(samples)} image(s) from {origin}, "
            f"{'fine-tuning ' + source.name if source else 'from scratch'}; checkpoints in {work}")

        def progress(info: dict[str, Any]) -> None:
            status(info["epoch"], info["epochs"],
                   f"U-Net Train: epoch {info['epoch']}/{info['epochs']}, ETA {info['eta_s']:.0f} s")
            log(f"[U-Net Train] epoch {info['epoch']}/{info['epochs']}  loss {info['loss']:.4f}  "
                f"val loss {info['val_loss']:.4f}  val IoU {info['val_iou']:.3f}{'  (best)' if info['best'] else ''}"
                f"  {info['elapsed_s']:.0f} s")

        result = train(
            samples, val_samples=val, out_dir=work, ndim=samples[0].classes.ndim, from_bundle=source,
            depth=settings["depth"], base_features=settings["features"], epochs=settings["epochs"],
            steps_per_epoch=settings["steps"], tile=settings["tile"], learning_rate=settings["learning_rate"],
            border="zeros" if detection else "mirror", progress=progress, bundle_dir=output,
            export_kw={"name": settings["name"] or output.name, "kind": kind},
        )
    log(f"[U-Net Train] best validation loss {result.best_val_loss:.4f} (epoch {result.best_epoch}); bundle "
        f"written to {output}; run it with run(\"DeepImageJ Run\", \"model=[{output}]\")")
    return result
