""" "U-Net Train": train or fine-tune a U-Net from annotations made in ImageJ (Falk et al. 2019).

Two sources of training data:

* ``data=[current image + ROI Manager]``: the current image, annotated in the ROI Manager: one
  area ROI per object (segmentation) or point ROIs, one point per object (detection). With one
  image the validation loss is measured on that image (the Log says so); annotate a second
  image and use folders for a real validation.
* ``data=folders``: ``images=[folder]`` and ``annotations=[folder]`` (label masks, ``RoiSet.zip``
  / ``.roi`` files or multi-point ROIs, matched to the images by file name).

Classes: with ``classes`` > 2 the label values of the masks (1, 2, ...) or the ROI names are the
classes (``class_names=[nucleus,cytoplasm]`` names classes 1, 2 and the ROIs that belong to them).
ROIs named ``ignore`` (and ``ignore_label`` in masks) are regions that do not count. The model's
element size (pixel size) is the current image's calibration, or ``element_size`` (micrometres);
calibrated images of another size are resampled to it. The validation curve is drawn in a Plot
window after every epoch (and saved as ``validation_curve.png`` with the checkpoints).

The result is a bundle (``output=[folder]``) that "DeepImageJ Run" executes. The command is an
ImageJ ``GenericDialog``: clicked from the menu it asks for its settings; called from a macro it
reads them from the options (and the Recorder records them)::

    run("U-Net Train", "data=[current image + ROI Manager] task=auto output=/path/my-unet epochs=10");
    run("U-Net Train", "data=folders images=/data/imgs annotations=/data/masks output=/path/my-unet from=isbi2012-em-unet");
    run("U-Net Train", "data=folders images=/data/imgs annotations=/data/labels classes=3 ignore_label=255 output=/path/three");
    run("U-Net Train", "data=[current image + ROI Manager] output=/path/my-unet epochs=50 host=gpu");

With ``host=NAME`` (a server of ``deepimagej remote``) the training runs there as a job, through
``deepimagej train`` (:func:`submit_training`): the current image and its ROIs, or the folders, are
uploaded, and the trained bundle comes back to ``output``; with ``detach`` the command returns at
once and "DeepImageJ Jobs" installs the bundle when the job is done.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej import remote
from deepimagej.errors import TrainingError
from deepimagej.imagej.commands.dialogs import DATA_CHOICES, show, train_dialog
from deepimagej.imagej.commands.options import THIS_COMPUTER, parse_options
from deepimagej.imagej.commands.run import host_choices
from deepimagej.imagej.models import find_model
from deepimagej.resample import to_micrometres
from deepimagej.unet.config import TrainingConfig
from deepimagej.unet.files import ROI_SUFFIXES, load_folder_pairs, spatial_dims
from deepimagej.unet.samples import TrainingSample, load_samples

#: ImageJ Roi types that mark one point per object (Roi.POINT = 10)
POINT_ROI_TYPE = 10
#: Title of the Plot window with the validation curve.
CURVE_TITLE = "U-Net Train: validation curve"


def ask_settings(options: str | None) -> dict[str, Any] | None:
    """The command's settings from a GenericDialog (shown, or filled from the macro ``options``).

    Returns ``None`` when the user cancels the dialog; ``host`` is ``None`` for this computer.
    """
    hosts = host_choices()
    wanted = {k.lower(): v for k, v in parse_options(options).items()}.get("host", THIS_COMPUTER).strip()
    if wanted not in hosts:  # ImageJ's own message would only say it is not a valid choice
        remote.host(wanted)
    settings = show(train_dialog(hosts))
    if settings is not None:
        settings["host"] = None if settings.get("host", THIS_COMPUTER) == THIS_COMPUTER else settings["host"]
        settings.setdefault("detach", False)
    return settings


def rois_are_points(roi_types: Sequence[int]) -> bool:
    """Whether the ROIs (ImageJ ``Roi.getType()`` values) are points (detection) rather than areas.

    Raises:
        TrainingError: no ROI, or point and area ROIs mixed.
    """
    if not roi_types:
        raise TrainingError(
            "U-Net Train: the ROI Manager is empty; outline each object (or click one point per "
            "object for detection) and add it with 't' (Edit > Selection > Add to Manager)"
        )
    points = [int(t) == POINT_ROI_TYPE for t in roi_types]
    if any(points) and not all(points):
        raise TrainingError(
            "U-Net Train: the ROI Manager mixes point and area ROIs; use areas (one per object) for "
            "segmentation or points (one per object) for detection"
        )
    return all(points)


def roi_manager_zip(folder: Path) -> tuple[Path, bool]:
    """Save the ROI Manager's ROIs as a ``RoiSet.zip`` in ``folder``; returns it and whether they are points.

    Raises:
        TrainingError: no ROI Manager / no ROI, or point and area ROIs mixed.
    """
    from deepimagej.imagej.java_classes import jc

    manager = jc.RoiManager.getInstance()
    rois = list(manager.getRoisAsArray()) if manager is not None else []
    points = rois_are_points([int(r.getType()) for r in rois])
    encoder = jc.RoiEncoder
    path = folder / "RoiSet.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, roi in enumerate(rois):
            zf.writestr(f"{i:04d}.roi", bytes(encoder.saveAsByteArray(roi)))
    return path, points


def _calibration(imp: Any, ndim: int) -> tuple[float, ...] | None:
    """The image's pixel size in micrometres (array order), or ``None`` when uncalibrated."""
    cal = imp.getCalibration()
    unit = str(cal.getUnit())
    sizes = [to_micrometres(float(v), unit) for v in (cal.pixelDepth, cal.pixelHeight, cal.pixelWidth)][
        -ndim:
    ]
    known = [v for v in sizes if v is not None]
    return tuple(known) if len(known) == len(sizes) else None


def _samples_from_current_image(
    settings: dict[str, Any], tmp: Path
) -> tuple[list[TrainingSample], TrainingConfig, str]:
    """Training samples from the current image and the ROI Manager of the embedded ImageJ."""
    from deepimagej.imagej.convert import from_imageplus, imageplus_axes
    from deepimagej.imagej.java_classes import jc

    imp = jc.WindowManager.getCurrentImage()
    if imp is None:
        raise TrainingError("U-Net Train: no image open; open the annotated image (or use data=folders)")
    axes = imageplus_axes(imp)
    check_training_axes(axes)
    zip_path, are_points = roi_manager_zip(tmp)
    ndim = 3 if "z" in axes else 2
    samples, config = samples_from_image(
        settings, from_imageplus(imp), axes, zip_path, are_points, tmp, calibration=_calibration(imp, ndim)
    )
    return samples, config, str(imp.getTitle())


def check_training_axes(axes: str) -> None:
    """Refuse images U-Net Train cannot use: time series, and channels with slices.

    Raises:
        TrainingError: the axes name the problem.
    """
    if "t" in axes or ("c" in axes and "z" in axes):
        raise TrainingError(f"U-Net Train: the current image has axes '{axes}'; use a 2D image or a z-stack")


def samples_from_image(
    settings: dict[str, Any],
    image: np.ndarray,
    axes: str,
    rois_zip: Path,
    are_points: bool,
    tmp: Path,
    calibration: tuple[float, ...] | None = None,
) -> tuple[list[TrainingSample], TrainingConfig]:
    """Training samples from one image (axes from ImageJ) annotated by the ROIs in ``rois_zip``.

    Args:
        calibration: the image's pixel size in micrometres (array order), the default element size.
    """
    import tifffile

    check_training_axes(axes)
    ndim = 3 if "z" in axes else 2
    config = _config(settings, _task_is_detection(settings["task"], are_points), ndim, calibration)
    image_path = tmp / "image.tif"  # the image as a file (at the model's element size): the loader of folders
    tifffile.imwrite(image_path, image)
    return load_samples(image_path, rois_zip, config), config


def _task_is_detection(task: str, are_points: bool | None) -> bool:
    if task == "detection":
        if are_points is False:
            raise TrainingError("U-Net Train: task=detection needs point ROIs (one point per object)")
        return True
    if task == "segmentation":
        if are_points:
            raise TrainingError(
                "U-Net Train: point ROIs give a detection model; use task=detection (or auto)"
            )
        return False
    if task != "auto":
        raise TrainingError(f"U-Net Train: task={task}; use auto, segmentation or detection")
    return bool(are_points)


def _samples_from_folders(settings: dict[str, Any]) -> tuple[list[TrainingSample], TrainingConfig, str]:
    """Training samples from an image folder and an annotation folder."""
    images, annotations = Path(settings["images"]), Path(settings["annotations"])
    if not settings["images"] or not images.exists():
        raise TrainingError(f"U-Net Train: images=[{settings['images']}] is not a folder or file")
    if not settings["annotations"] or not annotations.exists():
        raise TrainingError(f"U-Net Train: annotations=[{settings['annotations']}] is not a folder or file")
    files = [annotations] if annotations.is_file() else sorted(annotations.iterdir())
    are_points = None
    if settings["task"] == "auto":
        rois = [f for f in files if f.suffix.lower() in ROI_SUFFIXES]
        are_points = bool(rois) and all(_is_point_file(f) for f in rois)
    first = images if images.is_file() else load_folder_pairs(images, annotations)[0][0]
    config = _config(settings, _task_is_detection(settings["task"], are_points), spatial_dims(first), None)
    return load_samples(images, annotations, config), config, images.name


def _config(
    settings: dict[str, Any], detection: bool, ndim: int, calibration: tuple[float, ...] | None
) -> TrainingConfig:
    """The training config of the dialog's settings."""
    element_size = calibration
    if settings["element_size"]:
        try:
            element_size = tuple(float(v) for v in settings["element_size"].split(","))
        except ValueError:
            raise TrainingError(
                f"U-Net Train: element_size=[{settings['element_size']}]; give micrometres, "
                "e.g. 0.5 or 2,0.5,0.5"
            ) from None
    ignore = settings["ignore_label"]
    if ignore and not ignore.lstrip("-").isdigit():
        raise TrainingError(
            f"U-Net Train: ignore_label={ignore}; give the label value of the regions to ignore"
        )
    return TrainingConfig(
        task="detection" if detection else "segmentation",
        ndim=ndim,
        n_classes=settings["classes"],
        class_names=tuple(n.strip() for n in settings["class_names"].split(",") if n.strip()),
        ignore_label=int(ignore) if ignore else None,
        element_size=element_size,
        radius=settings["radius"],
        r_ign=2 * settings["radius"],
        from_bundle=settings["from_bundle"],
        depth=settings["depth"],
        base_features=settings["features"],
        epochs=settings["epochs"],
        steps_per_epoch=settings["steps"],
        tile=settings["tile"],
        learning_rate=settings["learning_rate"],
    )


def _is_point_file(path: Path) -> bool:
    import roifile

    try:
        rois = roifile.roiread(path)
    except Exception:  # noqa: BLE001 - not readable as a ROI: load_samples reports it with its name
        return False
    rois = rois if isinstance(rois, list) else [rois]
    return bool(rois) and all(r.roitype == roifile.ROI_TYPE.POINT for r in rois)


class CurvePlot:
    """The validation curve in an ImageJ Plot window, redrawn after every epoch (one window per training)."""

    def __init__(self) -> None:
        self.window: Any = None
        self.image: Any = None

    def update(self, history: list[dict[str, Any]]) -> None:
        from deepimagej.imagej.java_classes import jc

        plot = jc.Plot(CURVE_TITLE, "epoch", "weighted cross-entropy")
        trained = [h for h in history if h.get("loss") is not None]
        plot.setColor("#1f77b4")
        plot.add(
            "connected circle", [float(h["epoch"]) for h in trained], [float(h["loss"]) for h in trained]
        )
        plot.setColor("#d62728")
        plot.add(
            "connected circle", [float(h["epoch"]) for h in history], [float(h["val_loss"]) for h in history]
        )
        plot.addLegend("training loss\tvalidation loss")
        plot.setLimitsToFit(True)
        if self.window is not None and self.window.isVisible():
            self.window.drawPlot(plot)
            return
        if self.image is not None:  # a macro without windows: the plot is an image; replace it
            self.image.changes = False
            self.image.close()
        self.window = plot.show()
        self.image = plot.getImagePlus() if self.window is None else None


def train_command(ij: Any, options: str | None) -> None:
    """The "U-Net Train" command: annotations -> a trained U-Net bundle; called from the Java shim."""
    from deepimagej.imagej.java_classes import jc

    settings = ask_settings(options)
    if settings is None:
        return
    IJ = jc.IJ
    if settings["host"]:
        output = checked_output(settings)
        source = find_model(settings["from"]).root if settings["from"] else None
        train_on_host(settings, source, output)
        return

    def status(done: int, total: int, text: str) -> None:
        IJ.showProgress(done, total)
        IJ.showStatus(text)

    current = jc.WindowManager.getCurrentImage()  # the plot window must not take its place
    curve = CurvePlot()
    try:
        train_from_settings(
            settings,
            lambda tmp: _samples_from_current_image(settings, tmp),
            log=IJ.log,
            status=status,
            curve=curve.update,
        )
    finally:
        if current is not None:
            IJ.selectWindow(current.getID())
    IJ.showProgress(1.0)
    IJ.showStatus("")


#: current_image(tmp_folder) -> (samples, config, image title): the annotated image of "data=current image..."
CurrentImageSamples = Callable[[Path], tuple[list[TrainingSample], TrainingConfig, str]]


def checked_output(settings: dict[str, Any]) -> Path:
    """The bundle folder ``output=`` names, once the settings are checked (epochs, steps, tile)."""
    if not settings["output"]:
        raise TrainingError("U-Net Train needs output=[folder] (the bundle to write)")
    if settings["epochs"] < 1 or settings["steps"] < 1 or settings["tile"] < 16:
        raise TrainingError("U-Net Train: epochs and steps must be at least 1 and tile at least 16")
    return Path(settings["output"]).expanduser()


def train_from_settings(
    settings: dict[str, Any],
    current_image: CurrentImageSamples,
    *,
    log: Callable[[str], Any],
    status: Callable[[int, int, str], Any],
    curve: Callable[[list[dict[str, Any]]], Any] | None = None,
) -> Any:
    """Train a U-Net from the dialog's settings; the ImageJ side gives the annotated image, the log and status.

    Args:
        settings: the typed values of :func:`~deepimagej.imagej.commands.dialogs.train_dialog`.
        current_image: makes the samples of ``data=[current image + ROI Manager]`` (in a temporary folder).
        log: writes a line to ImageJ's Log window.
        status: shows ``(epoch, epochs, text)`` in ImageJ's progress and status bars.
        curve: redraws the validation curve from the history after each epoch.

    Returns:
        The training result of :func:`deepimagej.unet.train.train` (the bundle is in ``settings["output"]``).

    Raises:
        TrainingError: unusable settings or data.
    """
    # TensorFlow loads with the training modules, when the command runs
    from deepimagej.unet.export import export_training
    from deepimagej.unet.train import train

    output = checked_output(settings)
    settings["from_bundle"] = str(find_model(settings["from"]).root) if settings["from"] else None
    work = output.with_name(output.name + "-training")
    with tempfile.TemporaryDirectory() as tmp:
        if settings["data"] == DATA_CHOICES[0]:
            samples, config, origin = current_image(Path(tmp))
        elif settings["data"] == DATA_CHOICES[1]:
            samples, config, origin = _samples_from_folders(settings)
        else:
            raise TrainingError(
                f"U-Net Train: data=[{settings['data']}]; use one of: {', '.join(DATA_CHOICES)}"
            )
        val = None
        if len(samples) == 1:
            val = samples
            log(
                "[U-Net Train] one annotated image: the validation loss is measured on the training image "
                "(annotate a second image for a real validation)"
            )
        source = settings["from_bundle"]
        log(
            f"[U-Net Train] {config.task}: {len(samples)} image(s) from {origin}"
            f"{f', {config.n_classes} classes' if config.n_classes > 2 else ''}, "
            f"{'fine-tuning ' + Path(source).name if source else 'from scratch'}; checkpoints in {work}"
        )

        def progress(info: dict[str, Any]) -> None:
            status(
                info["epoch"],
                info["epochs"],
                f"U-Net Train: epoch {info['epoch']}/{info['epochs']}, ETA {info['eta_s']:.0f} s",
            )
            log(
                f"[U-Net Train] epoch {info['epoch']}/{info['epochs']}  loss {info['loss']:.4f}  "
                f"val loss {info['val_loss']:.4f}  val IoU {info['val_iou']:.3f}{'  (best)' if info['best'] else ''}"
                f"  {info['elapsed_s']:.0f} s"
            )
            if curve is not None:
                curve(info["history"])

        result = train(samples, config, val_samples=val, out_dir=work, progress=progress)
        export_training(result, output, name=settings["name"] or output.name)
    log(
        f"[U-Net Train] best validation loss {result.best_val_loss:.4f} (epoch {result.best_epoch}); bundle "
        f'written to {output}; run it with run("DeepImageJ Run", "model=[{output}]")'
    )
    return result


@dataclass(frozen=True)
class HostData:
    """Training data as uploaded for ``deepimagej train`` on a server.

    Attributes:
        images, annotations: a file or folder each (uploaded).
        flag: ``--labels``, ``--rois`` or ``--points``: what the annotations are.
        detection: whether the task is detection.
        three_d: the image is a z-stack (``--3d``).
    """

    images: Path
    annotations: Path
    flag: str
    detection: bool
    three_d: bool = False


def one_image_for_host(
    tmp: Path,
    title: str,
    image: Any,
    axes: str,
    rois_zip: Path,
    are_points: bool | None,
    task: str,
    log: Callable[[str], None],
) -> HostData:
    """The current image and its ROIs (``rois_zip``), as folders to upload, in ``tmp``.

    The image is uploaded under two names (the same content, sent once), so that ``deepimagej train``
    validates on the training image, as the command does on this computer.
    """
    from deepimagej.io import ImageData, write_image

    if "t" in axes or ("c" in axes and "z" in axes):
        raise TrainingError(f"U-Net Train: the current image has axes '{axes}'; use a 2D image or a z-stack")
    images, annotations = tmp / "images", tmp / "annotations"
    images.mkdir()
    annotations.mkdir()
    detection = _task_is_detection(task, are_points)
    name = re.sub(r"[^\w.-]+", "_", title).strip("._") or "image"
    write_image(images / f"{name}.tif", ImageData(np.asarray(image), axes))
    shutil.copyfile(rois_zip, annotations / f"{name}.zip")
    for folder, suffix in ((images, ".tif"), (annotations, ".zip")):
        os.link(folder / f"{name}{suffix}", folder / f"{name}-validation{suffix}")
    log(
        "[U-Net Train] one annotated image: the validation loss is measured on the training image "
        "(annotate a second image for a real validation)"
    )
    return HostData(images, annotations, "--points" if detection else "--rois", detection, "z" in axes)


def folders_for_host(settings: dict[str, Any]) -> HostData:
    """``data=folders``: the two folders (or files) as they are, and what their annotations are."""
    images, annotations = Path(settings["images"]), Path(settings["annotations"])
    for key, path in (("images", images), ("annotations", annotations)):
        if not settings[key] or not path.exists():
            raise TrainingError(f"U-Net Train: {key}=[{settings[key]}] is not a folder or file")
    files = [annotations] if annotations.is_file() else sorted(annotations.iterdir())
    rois = [f for f in files if f.suffix.lower() in (".zip", ".roi")]
    points_given = None
    if settings["task"] == "auto":
        points_given = bool(rois) and all(_is_point_file(f) for f in rois)
    detection = _task_is_detection(settings["task"], points_given)
    return HostData(
        images, annotations, ("--points" if detection else "--rois") if rois else "--labels", detection
    )


def submit_training(
    settings: dict[str, Any],
    data: HostData,
    source: Path | None,
    output: Path,
    log: Callable[[str], None],
    on_update: Callable[[remote.Job], None],
) -> remote.Job:
    """ "U-Net Train" as a job on ``settings["host"]`` (``deepimagej train`` there); the bundle back to ``output``.

    Used by the embedded ImageJ (:func:`train_on_host`) and by the plugin jar's worker; ``log`` gets
    the Log lines, ``on_update`` the job at every look at it.
    """
    host = settings["host"]
    args: list[Any] = ["--images", remote.Upload(data.images), data.flag, remote.Upload(data.annotations)]
    args += ["--3d"] if data.three_d else []
    if source is not None:
        args += ["--from", remote.Upload(source)]
    args += [
        "--out",
        remote.Output(output),
        "--work",
        remote.Work(),
        "--name",
        settings["name"] or output.name,
        "--epochs",
        str(settings["epochs"]),
        "--steps",
        str(settings["steps"]),
        "--tile",
        str(settings["tile"]),
        "--depth",
        str(settings["depth"]),
        "--features",
        str(settings["features"]),
        "--lr",
        repr(settings["learning_rate"]),
    ]
    if data.detection:
        args += ["--detection", "--radius", repr(settings["radius"]), "--r-ign", repr(2 * settings["radius"])]
    if int(settings.get("classes") or 2) != 2:
        args += ["--classes", str(int(settings["classes"]))]
    for key, flag in (
        ("class_names", "--class-names"),
        ("ignore_label", "--ignore-label"),
        ("element_size", "--element-size"),
    ):
        if settings.get(key):
            args += [flag, str(settings[key])]
    log(
        f"[U-Net Train] {'detection' if data.detection else 'segmentation'} on {host}, "
        f"{'fine-tuning ' + source.name if source else 'from scratch'}"
    )
    job = remote.submit(
        host,
        "train",
        args,
        detach=settings["detach"],
        on_update=on_update,
        echo=lambda line: log(f"[U-Net Train] {host}: {line}"),
        origin={"imagej": "train", "output": str(output)},
    )
    if settings["detach"]:
        log(
            f"[U-Net Train] job {job.id} runs on {host}; 'DeepImageJ Jobs' installs the bundle when it is done "
            f'(run("DeepImageJ Jobs", "action=fetch job={job.id}"))'
        )
    else:
        log(
            f'[U-Net Train] bundle written to {output}; run it with run("DeepImageJ Run", "model=[{output}]")'
        )
    return job


def train_on_host(settings: dict[str, Any], source: Path | None, output: Path) -> remote.Job:
    """ "U-Net Train" as a job on ``settings["host"]`` from the embedded ImageJ: the current image and the
    ROI Manager's ROIs (or the two folders) uploaded (:func:`submit_training`)."""
    from deepimagej.imagej.convert import from_imageplus, imageplus_axes
    from deepimagej.imagej.java_classes import jc

    IJ = jc.IJ
    host = settings["host"]

    def update(job: remote.Job) -> None:
        progress = job.progress or {}
        if "epoch" in progress:
            IJ.showProgress(progress["epoch"], progress.get("epochs", progress["epoch"]))
        IJ.showStatus(f"U-Net Train on {host}: {job.state} {remote.describe_progress(job)}")

    with tempfile.TemporaryDirectory() as tmp:
        if settings["data"] == DATA_CHOICES[0]:
            imp = jc.WindowManager.getCurrentImage()
            if imp is None:
                raise TrainingError(
                    "U-Net Train: no image open; open the annotated image (or use data=folders)"
                )
            zip_path, are_points = roi_manager_zip(Path(tmp))
            data = one_image_for_host(
                Path(tmp),
                str(imp.getTitle()),
                from_imageplus(imp),
                imageplus_axes(imp),
                zip_path,
                are_points,
                settings["task"],
                IJ.log,
            )
        elif settings["data"] == DATA_CHOICES[1]:
            data = folders_for_host(settings)
        else:
            raise TrainingError(
                f"U-Net Train: data=[{settings['data']}]; use one of: {', '.join(DATA_CHOICES)}"
            )
        job = submit_training(settings, data, source, output, lambda line: IJ.log(line), update)
    IJ.showProgress(1.0)
    IJ.showStatus("")
    return job
