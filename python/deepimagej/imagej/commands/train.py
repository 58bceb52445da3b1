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
    run("U-Net Train", "data=[current image + ROI Manager] output=/path/my-unet epochs=50 host=gpu");

With ``host=NAME`` (a server of ``deepimagej remote``) the training runs there as a job, through
``deepimagej train`` (:func:`train_on_host`): the current image and its ROIs, or the folders, are
uploaded, and the trained bundle comes back to ``output``; with ``detach`` the command returns at
once and "DeepImageJ Jobs" installs the bundle when the job is done.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from deepimagej import remote
from deepimagej.errors import TrainingError
from deepimagej.imagej.commands.options import THIS_COMPUTER, parse_options
from deepimagej.imagej.commands.run import host_choices

DATA_CHOICES = ("current image + ROI Manager", "folders")
TASK_CHOICES = ("auto", "segmentation", "detection")
#: ImageJ Roi types that mark one point per object (Roi.POINT = 10)
POINT_ROI_TYPE = 10


def ask_settings(options: str | None) -> dict[str, Any] | None:
    """The command's settings from a GenericDialog (shown, or filled from the macro ``options``).

    Returns ``None`` when the user cancels the dialog.
    """
    from jpype import JClass

    hosts = host_choices()
    wanted = {k.lower(): v for k, v in parse_options(options).items()}.get("host", THIS_COMPUTER).strip()
    if wanted not in hosts:  # ImageJ's own message would only say it is not a valid choice
        remote.host(wanted)
    gd = JClass("ij.gui.GenericDialog")("U-Net Train")
    gd.addChoice("Data", DATA_CHOICES, DATA_CHOICES[0])
    gd.addStringField("Images", "", 30)
    gd.addStringField("Annotations", "", 30)
    gd.addChoice("Task", TASK_CHOICES, TASK_CHOICES[0])
    gd.addStringField("Output", str(Path.home() / ".deepimagej" / "models" / "my-unet"), 30)
    gd.addStringField("Name", "", 20)
    gd.addStringField("From", "", 20)
    gd.addNumericField("Epochs", 10, 0)
    gd.addNumericField("Steps", 50, 0)
    gd.addNumericField("Tile", 256, 0)
    gd.addNumericField("Depth", 3, 0)
    gd.addNumericField("Features", 16, 0)
    gd.addNumericField("Learning_rate", 0.001, 5)
    gd.addNumericField("Radius", 3, 1)
    gd.addChoice("Host", hosts, hosts[0])
    gd.addCheckbox("Detach", False)
    gd.addMessage("Images/Annotations: folders, for Data = folders. From: a bundle to fine-tune (name or folder).\n"
                  "Radius: detection disk radius (px). Output: the bundle folder to write.\n"
                  "Host: train on a server (deepimagej remote add NAME user@server); Detach: do not wait,\n"
                  "'DeepImageJ Jobs' installs the bundle when it is done.")
    gd.showDialog()
    if gd.wasCanceled():
        return None
    return {
        "data": str(gd.getNextChoice()),
        "images": str(gd.getNextString()).strip(),
        "annotations": str(gd.getNextString()).strip(),
        "task": str(gd.getNextChoice()),
        "output": str(gd.getNextString()).strip(),
        "name": str(gd.getNextString()).strip(),
        "from": str(gd.getNextString()).strip(),
        "epochs": int(gd.getNextNumber()),
        "steps": int(gd.getNextNumber()),
        "tile": int(gd.getNextNumber()),
        "depth": int(gd.getNextNumber()),
        "features": int(gd.getNextNumber()),
        "learning_rate": float(gd.getNextNumber()),
        "radius": float(gd.getNextNumber()),
        "host": None if (host := str(gd.getNextChoice())) == THIS_COMPUTER else host,
        "detach": bool(gd.getNextBoolean()),
    }


def roi_manager_zip(folder: Path) -> tuple[Path, bool]:
    """Save the ROI Manager's ROIs as a ``RoiSet.zip`` in ``folder``; returns it and whether they are points.

    Raises:
        TrainingError: no ROI Manager / no ROI, or point and area ROIs mixed.
    """
    from jpype import JClass

    manager = JClass("ij.plugin.frame.RoiManager").getInstance()
    rois = list(manager.getRoisAsArray()) if manager is not None else []
    if not rois:
        raise TrainingError("U-Net Train: the ROI Manager is empty; outline each object (or click one point per "
                            "object for detection) and add it with 't' (Edit > Selection > Add to Manager)")
    points = [int(r.getType()) == POINT_ROI_TYPE for r in rois]
    if any(points) and not all(points):
        raise TrainingError("U-Net Train: the ROI Manager mixes point and area ROIs; use areas (one per object) for "
                            "segmentation or points (one per object) for detection")
    encoder = JClass("ij.io.RoiEncoder")
    path = folder / "RoiSet.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, roi in enumerate(rois):
            zf.writestr(f"{i:04d}.roi", bytes(encoder.saveAsByteArray(roi)))
    return path, all(points)


def _samples_from_current_image(settings: dict[str, Any], tmp: Path) -> tuple[list[Any], bool, str]:
    """Training samples from the current image and the ROI Manager."""
    import tifffile
    from jpype import JClass

    from deepimagej.imagej.convert import from_imageplus, imageplus_axes
    from deepimagej.unet.train import load_samples

    imp = JClass("ij.WindowManager").getCurrentImage()
    if imp is None:
        raise TrainingError("U-Net Train: no image open; open the annotated image (or use data=folders)")
    axes = imageplus_axes(imp)
    if "t" in axes or ("c" in axes and "z" in axes):
        raise TrainingError(f"U-Net Train: the current image has axes '{axes}'; use a 2D image or a z-stack")
    zip_path, are_points = roi_manager_zip(tmp)
    detection = _task_is_detection(settings["task"], are_points)
    image_path = tmp / "image.tif"  # the image as a file: the same loader as for folders
    tifffile.imwrite(image_path, from_imageplus(imp))
    ndim = 3 if "z" in axes else 2
    samples = load_samples(image_path, zip_path, ndim=ndim, detection=detection, radius=settings["radius"],
                           r_ign=2 * settings["radius"], prepare_kw={"lam": 0.0} if detection else None)
    return samples, detection, str(imp.getTitle())


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

    from deepimagej.imagej.models import find_model
    from deepimagej.unet.train import train

    settings = ask_settings(options)
    if settings is None:
        return
    IJ = JClass("ij.IJ")
    output = Path(settings["output"]).expanduser() if settings["output"] else None
    if output is None:
        raise TrainingError("U-Net Train needs output=[folder] (the bundle to write)")
    if settings["epochs"] < 1 or settings["steps"] < 1 or settings["tile"] < 16:
        raise TrainingError("U-Net Train: epochs and steps must be at least 1 and tile at least 16")
    source = find_model(settings["from"]).root if settings["from"] else None
    if settings["host"]:
        train_on_host(settings, source, output)
        return
    work = output.with_name(output.name + "-training")
    with tempfile.TemporaryDirectory() as tmp:
        if settings["data"] == DATA_CHOICES[0]:
            samples, detection, origin = _samples_from_current_image(settings, Path(tmp))
        elif settings["data"] == DATA_CHOICES[1]:
            samples, detection, origin = _samples_from_folders(settings)
        else:
            raise TrainingError(f"U-Net Train: data=[{settings['data']}]; use one of: {', '.join(DATA_CHOICES)}")
        val = None
        if len(samples) == 1:
            val = samples
            IJ.log("[U-Net Train] one annotated image: the validation loss is measured on the training image "
                   "(annotate a second image for a real validation)")
        kind = "detection" if detection else "segmentation"
        IJ.log(f"[U-Net Train] {kind}: {len(samples)} image(s) from {origin}, "
               f"{'fine-tuning ' + source.name if source else 'from scratch'}; checkpoints in {work}")

        def progress(info: dict[str, Any]) -> None:
            IJ.showProgress(info["epoch"], info["epochs"])
            IJ.showStatus(f"U-Net Train: epoch {info['epoch']}/{info['epochs']}, ETA {info['eta_s']:.0f} s")
            IJ.log(f"[U-Net Train] epoch {info['epoch']}/{info['epochs']}  loss {info['loss']:.4f}  "
                   f"val loss {info['val_loss']:.4f}  val IoU {info['val_iou']:.3f}{'  (best)' if info['best'] else ''}"
                   f"  {info['elapsed_s']:.0f} s")

        result = train(
            samples, val_samples=val, out_dir=work, ndim=samples[0].classes.ndim, from_bundle=source,
            depth=settings["depth"], base_features=settings["features"], epochs=settings["epochs"],
            steps_per_epoch=settings["steps"], tile=settings["tile"], learning_rate=settings["learning_rate"],
            border="zeros" if detection else "mirror", progress=progress, bundle_dir=output,
            export_kw={"name": settings["name"] or output.name, "kind": kind},
        )
    IJ.showProgress(1.0)
    IJ.showStatus("")
    IJ.log(f"[U-Net Train] best validation loss {result.best_val_loss:.4f} (epoch {result.best_epoch}); bundle "
           f"written to {output}; run it with run(\"DeepImageJ Run\", \"model=[{output}]\")")


def train_on_host(settings: dict[str, Any], source: Path | None, output: Path) -> remote.Job:
    """"U-Net Train" as a job on ``settings["host"]``: ``deepimagej train`` there, the bundle back to ``output``.

    The current image and the ROI Manager's ROIs (or the two folders) are uploaded. One annotated
    image is uploaded under two names (the same content, sent once), so that ``deepimagej train``
    validates on the training image, as the command does here.
    """
    from jpype import JClass

    from deepimagej.imagej.convert import from_imageplus, imageplus_axes
    from deepimagej.io import ImageData, write_image

    IJ = JClass("ij.IJ")
    host = settings["host"]
    with tempfile.TemporaryDirectory() as tmp:
        args: list[Any] = []
        if settings["data"] == DATA_CHOICES[0]:
            imp = JClass("ij.WindowManager").getCurrentImage()
            if imp is None:
                raise TrainingError("U-Net Train: no image open; open the annotated image (or use data=folders)")
            axes = imageplus_axes(imp)
            if "t" in axes or ("c" in axes and "z" in axes):
                raise TrainingError(f"U-Net Train: the current image has axes '{axes}'; use a 2D image or a z-stack")
            images, annotations = Path(tmp) / "images", Path(tmp) / "annotations"
            images.mkdir()
            annotations.mkdir()
            zip_path, are_points = roi_manager_zip(Path(tmp))
            detection = _task_is_detection(settings["task"], are_points)
            name = re.sub(r"[^\w.-]+", "_", str(imp.getTitle())).strip("._") or "image"
            write_image(images / f"{name}.tif", ImageData(from_imageplus(imp), axes))
            shutil.copyfile(zip_path, annotations / f"{name}.zip")
            for folder, suffix in ((images, ".tif"), (annotations, ".zip")):
                os.link(folder / f"{name}{suffix}", folder / f"{name}-validation{suffix}")
            IJ.log("[U-Net Train] one annotated image: the validation loss is measured on the training image "
                   "(annotate a second image for a real validation)")
            flag = "--points" if detection else "--rois"
            args += ["--3d"] if "z" in axes else []
        elif settings["data"] == DATA_CHOICES[1]:
            images, annotations = Path(settings["images"]), Path(settings["annotations"])
            for key, path in (("images", images), ("annotations", annotations)):
                if not settings[key] or not path.exists():
                    raise TrainingError(f"U-Net Train: {key}=[{settings[key]}] is not a folder or file")
            files = [annotations] if annotations.is_file() else sorted(annotations.iterdir())
            rois = [f for f in files if f.suffix.lower() in (".zip", ".roi")]
            are_points = bool(rois) and all(_is_point_file(f) for f in rois) if settings["task"] == "auto" else None
            detection = _task_is_detection(settings["task"], are_points)
            flag = ("--points" if detection else "--rois") if rois else "--labels"
        else:
            raise TrainingError(f"U-Net Train: data=[{settings['data']}]; use one of: {', '.join(DATA_CHOICES)}")
        args = ["--images", remote.Upload(images), flag, remote.Upload(annotations), *args]
        if source is not None:
            args += ["--from", remote.Upload(source)]
        args += ["--out", remote.Output(output), "--work", remote.Work(), "--name", settings["name"] or output.name,
                 "--epochs", str(settings["epochs"]), "--steps", str(settings["steps"]), "--tile", str(settings["tile"]),
                 "--depth", str(settings["depth"]), "--features", str(settings["features"]),
                 "--lr", repr(settings["learning_rate"])]
        if detection:
            args += ["--detection", "--radius", repr(settings["radius"]), "--r-ign", repr(2 * settings["radius"])]

        def update(job: remote.Job) -> None:
            progress = job.progress or {}
            if "epoch" in progress:
                IJ.showProgress(progress["epoch"], progress.get("epochs", progress["epoch"]))
            IJ.showStatus(f"U-Net Train on {host}: {job.state} {remote.describe_progress(job)}")

        IJ.log(f"[U-Net Train] {'detection' if detection else 'segmentation'} on {host}, "
               f"{'fine-tuning ' + source.name if source else 'from scratch'}")
        job = remote.submit(host, "train", args, detach=settings["detach"], on_update=update,
                            echo=lambda line: IJ.log(f"[U-Net Train] {host}: {line}"),
                            origin={"imagej": "train", "output": str(output)})
    IJ.showProgress(1.0)
    IJ.showStatus("")
    if settings["detach"]:
        IJ.log(f"[U-Net Train] job {job.id} runs on {host}; 'DeepImageJ Jobs' installs the bundle when it is done "
               f"(run(\"DeepImageJ Jobs\", \"action=fetch job={job.id}\"))")
    else:
        IJ.log(f"[U-Net Train] bundle written to {output}; run it with run(\"DeepImageJ Run\", \"model=[{output}]\")")
    return job
