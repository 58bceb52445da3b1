""" "DeepImageJ Run": a bundle on the current image, with its ImageJ macros, inside ImageJ."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from deepimagej import remote, stores
from deepimagej.errors import BundleError, InputImageError
from deepimagej.imagej.commands.dialogs import run_dialog, show
from deepimagej.imagej.commands.options import THIS_COMPUTER, RunOptions
from deepimagej.io import ImageData, read_image, write_image
from deepimagej.remote.store import config_dir

if TYPE_CHECKING:  # pragma: no cover
    from deepimagej.imagej.session import ImageJ


def macro_files(spec, names: list[str] | None, stage: str) -> list[Path]:
    """The macro files of a stage: the bundle's own (``names`` None) or those named, in the bundle folder."""
    default = list(spec.preprocessing_macros if stage == "preprocessing" else spec.postprocessing_macros)
    if names is None:
        return [Path(p) for p in default]
    files = []
    for name in names:
        cand = Path(name)
        if not cand.is_absolute():
            cand = spec.root / name
        if not cand.is_file():
            raise BundleError(f"{stage} macro '{name}' not found in the bundle folder {spec.root}")
        files.append(cand)
    return files


def output_title(spec, post_macros: list[Path]) -> str:
    """Title of the output image: the one the post-processing macros select, else the output's name.

    DeepImageJ 2.x post-processing macros may ``selectWindow("Output probability")``; naming the
    output that way keeps them working.
    """
    for path in post_macros:
        text = path.read_text(encoding="utf-8", errors="replace")
        if "Output probability" in text:
            return "Output probability"
    name = spec.outputs[0].name if spec.outputs else "output"
    return name if name and name.lower() not in ("output", "output0", "output_0") else "Output probability"


class PredictSettings(TypedDict):
    """How DeepImageJ Run runs the model step: these :func:`deepimagej.predict.predict` arguments."""

    tile: dict[str, int] | None
    weights_format: str | None
    apply_preprocessing: bool
    apply_postprocessing: bool


class Progress:
    """Progress in ImageJ's status and progress bars and the Log (the paper's monitoring window)."""

    def __init__(self, model: str, logging: str) -> None:
        from deepimagej.imagej.java_classes import jc

        self._IJ = jc.IJ
        self._Runtime = jc.Runtime.getRuntime()
        self.model = model
        self.verbose = logging in ("debug", "verbose")
        self.quiet = logging in ("none", "quiet", "off")
        self.start = time.perf_counter()
        self.tiles = (0, 0)
        self.rss = 0
        self.host: str | None = None  # the server running the model, if not this computer

    def __call__(self, done: int, total: int, elapsed: float, rss: int) -> None:
        self.tiles, self.rss = (done, total), rss
        self._IJ.showStatus(f"DeepImageJ Run: {self.model}: tile {done}/{total}, {elapsed:.1f} s")
        self._IJ.showProgress(done, max(total, 1))
        if self.verbose:
            self._IJ.log(f"[DeepImageJ] tile {done}/{total}  {elapsed:6.1f} s  {self.memory()}")

    def memory(self) -> str:
        import psutil

        total = psutil.virtual_memory().total
        java_used = int(self._Runtime.totalMemory()) - int(self._Runtime.freeMemory())
        return (
            f"memory: process peak {self.rss / 2**20:.0f} MB of {total / 2**20:.0f} MB; "
            f"Java {java_used / 2**20:.0f} MB of {int(self._Runtime.maxMemory()) / 2**20:.0f} MB"
        )

    def log(self, text: str) -> None:
        if not self.quiet:
            self._IJ.log(f"[DeepImageJ] {text}")

    def remote(self, job: Any) -> None:
        """Where a remote job is, in the status and progress bars."""
        from deepimagej.remote import describe_progress

        self.host = job.host
        tiles = (job.progress or {}).get("tiles")
        if tiles:
            self.tiles = tuple(tiles)
            self._IJ.showProgress(tiles[0], max(tiles[1], 1))
        self._IJ.showStatus(
            f"DeepImageJ Run: {self.model} on {job.host}: {job.state} {describe_progress(job)}"
        )

    def finish(self) -> None:
        self._IJ.showProgress(1.0)
        self._IJ.showStatus("")
        _, total = self.tiles
        where = f"on {self.host}" if self.host else self.memory()
        self.log(f"{self.model}: {total} tile(s) in {time.perf_counter() - self.start:.2f} s; {where}")


def _run_macro(
    ij: ImageJ, spec, opts: RunOptions, stage: str, path: Path, imp, images: list[Path], trusted: bool
):
    """One pre/post-processing macro: the bundle's run confined unless trusted; one the user named by its full path is theirs."""
    from deepimagej.imagej.macro import run_bundle_macro

    named = opts.preprocessing if stage == "preprocessing" else opts.postprocessing
    users_own = named is not None and any(Path(n).is_absolute() and Path(n) == path for n in named)
    return run_bundle_macro(
        ij.runner, path, imp, bundle_root=spec.root, images=images, trusted=trusted or users_own
    )


def bundle_macro_runner(ij: ImageJ, bundle_root: Path, trusted: bool = False) -> Callable[[Path, Any], Any]:
    """Runs a bundle's macro on an ImagePlus, confined to ``bundle_root`` unless ``trusted`` (for results
    that come back later, e.g. from a remote job)."""
    from deepimagej.imagej.macro import run_bundle_macro

    return lambda path, imp: run_bundle_macro(
        ij.runner, path, imp, bundle_root=bundle_root, images=[], trusted=trusted
    )


def _other_inputs(spec, opts: RunOptions) -> dict[str, Any]:
    """The images of a several-input model's inputs after the first, by ``input_NAME=[title]``.

    Raises:
        InputImageError: an input without an image, an image not open, a name the model lacks.
    """
    names = [t.name for t in spec.inputs]
    unknown = [n for n in opts.inputs if n not in names]
    if unknown:
        raise InputImageError(
            f"DeepImageJ Run: input_{unknown[0]}=...: {spec.name} has no input '{unknown[0]}' "
            f"(its inputs: {', '.join(names)})"
        )
    missing = [n for n in names[1:] if not opts.inputs.get(n)]
    if missing:
        keys = " ".join(f"input_{n}=[title]" for n in names)
        raise InputImageError(
            f"DeepImageJ Run: {spec.name} has {len(names)} inputs ({', '.join(names)}); name the "
            f"image of each: {keys}"
        )
    return {n: _image_titled(opts.inputs[n], n) for n in names[1:]}


def _image_titled(title: str, name: str) -> Any:
    from deepimagej.imagej.java_classes import jc

    imp = jc.WindowManager.getImage(title)
    if imp is None:
        raise InputImageError(f"DeepImageJ Run: input_{name}=[{title}]: no open image has that title")
    return imp


def _image_files(imp) -> list[Path]:
    """The file an ImagePlus was opened from, if any (a bundle's macro may read it)."""
    info = imp.getOriginalFileInfo()
    if info is None or not info.directory or not info.fileName:
        return []
    return [Path(str(info.directory)) / str(info.fileName)]


def run_bundle_on_imageplus(ij: ImageJ, opts: RunOptions, imp, trusted: bool = False) -> Any:
    """Run the model of ``opts`` on ``imp`` (not modified); returns the final ImagePlus.

    Pre-processing macros run on a duplicate; the model output is made the current image
    (titled by :func:`output_title`), then the post-processing macros run on it. The bundle's
    macros run confined (:func:`deepimagej.imagej.macro.run_bundle_macro`) unless ``trusted``. With
    ``opts.host`` the model runs on that server (:func:`run_on_host`; the macros run here);
    detached, nothing is returned (``None``) and "DeepImageJ Jobs" opens the result later.
    """
    from deepimagej import predict
    from deepimagej.imagej.convert import from_imageplus, imageplus_axes, to_imageplus
    from deepimagej.imagej.models import find_model

    spec = find_model(opts.model)
    others = _other_inputs(spec, opts)
    if opts.inputs.get(spec.inputs[0].name):
        imp = _image_titled(opts.inputs[spec.inputs[0].name], spec.inputs[0].name)
    if imp is None:
        raise InputImageError("DeepImageJ Run needs an open image: open one first (open(path) in a macro)")
    pre = macro_files(spec, opts.preprocessing, "preprocessing")
    post = macro_files(spec, opts.postprocessing, "postprocessing")
    progress = Progress(spec.name, opts.logging)
    progress.log(
        f"running '{spec.name}' on '{imp.getTitle()}'"
        + (f" with {', '.join(p.name for p in pre)}" if pre else "")
        + (f" then {', '.join(p.name for p in post)}" if post else "")
    )

    images = _image_files(imp)
    current = imp.duplicate()
    current.setTitle(f"{imp.getTitle()}-preprocessed")
    for path in pre:
        current = _run_macro(ij, spec, opts, "preprocessing", path, current, images, trusted)
        if current is None:
            raise InputImageError(f"preprocessing macro {path.name} left no image open")
    image = from_imageplus(current)
    axes = imageplus_axes(current)
    if opts.axes and "c" in opts.axes and "c" not in axes:
        pass  # a single-channel image: predict adds the channel axis
    calibration = current.getCalibration()
    calibration = {
        "x": float(calibration.pixelWidth),
        "y": float(calibration.pixelHeight),
        "z": float(calibration.pixelDepth),
        "unit": str(calibration.getUnit()),
    }
    if pre:
        current.changes = False
        current.close()
    # the bundle's bioimage.io operations stand in for its macros, unless the user named the stage's
    # macros or asked for none ("preprocessing=[no preprocessing]": the raw image goes in)
    settings: PredictSettings = {
        "tile": opts.tile or None,
        "weights_format": opts.weights_format,
        "apply_preprocessing": not pre and opts.preprocessing is None,
        "apply_postprocessing": not post and opts.postprocessing is None,
    }
    title = output_title(spec, post)
    if opts.host and others:
        raise InputImageError(
            f"DeepImageJ Run: {spec.name} has several inputs; run it on a server from the command "
            "line (deepimagej run BUNDLE --input NAME=PATH ... --host HOST)"
        )
    if opts.host:
        origin = {
            "imagej": "run",
            "title": title,
            "calibration": calibration,
            "post": [str(p) for p in post],
            "model": spec.name,
            "bundle": str(spec.root),
        }
        output = run_on_host(opts, spec, image, axes, settings, origin, progress.log, progress.remote)
        if output is None:  # detached: "DeepImageJ Jobs" opens the result
            return None
    else:
        images_in = {spec.inputs[0].name: ImageData(image, axes)}
        for name, other in others.items():
            images_in[name] = ImageData(from_imageplus(other), imageplus_axes(other))
        prediction = predict.predict(
            spec, predict.bind_inputs(spec, images_in), progress=progress, **settings
        )
        output, *rest = prediction.outputs.values()
        for name, extra in zip(list(prediction.outputs)[1:], rest):  # one image per further output
            shown = to_imageplus(extra.array, title=name, axes=extra.axes, calibration=calibration)
            shown.show()
    result = show_output(
        ij,
        output.array,
        output.axes,
        title,
        post,
        calibration,
        lambda path, target: _run_macro(ij, spec, opts, "postprocessing", path, target, images, trusted),
    )
    progress.finish()
    return result


def show_output(
    ij: ImageJ,
    output: Any,
    axes: str,
    title: str,
    post: list[Path],
    calibration: dict[str, Any],
    run_macro: Callable[[Path, Any], Any],
) -> Any:
    """The model's output as the current image (titled ``title``), then the post-processing macros on it.

    Args:
        run_macro: runs one post-processing macro on an ImagePlus, returns the image it leaves
            (:func:`bundle_macro_runner`).

    Returns:
        The final ImagePlus.
    """
    from deepimagej.imagej.convert import to_imageplus

    result = to_imageplus(output, title=title, axes=axes, calibration=calibration)
    if ij.runner.running:
        result.show()  # batch mode: the current image for the rest of the macro
    for path in post:
        result = run_macro(path, result)
        if result is None:
            raise InputImageError(f"postprocessing macro {path.name} left no image open")
    ij.current = result
    return result


def run_on_host(
    opts: RunOptions,
    spec,
    image: Any,
    axes: str,
    settings: PredictSettings,
    origin: dict[str, Any],
    log: Callable[[str], None],
    on_update: Callable[[remote.Job], None],
) -> ImageData | None:
    """The model step as a job on ``opts.host`` (``deepimagej run`` there, the same code); None when detached.

    The (pre-processed) image goes up as a TIFF and the model's output comes back as one (into
    :func:`results_folder`), with its axes. ``log`` gets the job's log lines, ``on_update`` the job
    at every look at it (the embedded ImageJ's :class:`Progress`, or the plugin's worker).
    """
    assert opts.host, "the caller runs it for a host"
    folder = results_folder()
    source = write_image(folder / "input.tif", ImageData(np.asarray(image), axes))
    target = folder / "output.tif"
    args: list[Any] = [
        remote.Upload(spec.root),
        remote.Upload(source),
        "-o",
        remote.Output(target),
        "--axes",
        axes,
    ]
    if settings["tile"]:
        args += ["--tile", ",".join(f"{a}={n}" for a, n in settings["tile"].items())]
    if settings["weights_format"]:
        args += ["--weights", settings["weights_format"]]
    args += [] if settings["apply_preprocessing"] else ["--no-preprocessing"]
    args += [] if settings["apply_postprocessing"] else ["--no-postprocessing"]
    job = remote.submit(
        opts.host,
        "run",
        args,
        detach=opts.detach,
        echo=log,
        on_update=on_update,
        origin=origin,
    )
    source.unlink()
    if opts.detach:
        log(
            f"job {job.id} runs on {opts.host}; 'DeepImageJ Jobs' fetches its result "
            f'(run("DeepImageJ Jobs", "action=fetch job={job.id}"))'
        )
        return None
    output = read_image(target)
    target.unlink()
    return output


def results_folder() -> Path:
    """A new folder for the result of one remote job started from ImageJ (under the client's config folder)."""
    folder = config_dir() / "imagej-results" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


def host_choices() -> list[str]:
    """The "Host" choices of the dialogs: this computer, then the servers of ``deepimagej remote``."""
    return [THIS_COMPUTER, *(h.name for h in remote.hosts())]


def ask_run_options() -> str | None:
    """The "DeepImageJ Run" dialog (the command clicked from the menu): macro options, or None if cancelled.

    The dialog (:func:`~deepimagej.imagej.commands.dialogs.run_dialog`) has the macro keys as
    labels (``model``, ``format``, ``preprocessing``, ``postprocessing``, ``tile``, ``logging``),
    so the line ImageJ's Recorder writes for it is one :meth:`RunOptions.parse` reads.

    Raises:
        BundleError: no bundle is installed in the models folders.
    """
    dialog = run_dialog(installed_model_names(), host_choices())
    values = show(dialog)
    if values is None:
        return None
    line = dialog.options(values)
    return line.replace(f" host=[{THIS_COMPUTER}]", "")  # the line recorded for a local run names no host


def installed_model_names() -> list[str]:
    """The folder names of the installed models that load, for the Run dialog.

    Raises:
        BundleError: no bundle is installed in the models folders.
    """
    from deepimagej.imagej.models import installed_models, models_folders

    models = [m.folder.name for m in installed_models() if m.spec is not None]
    if not models:
        where = ", ".join(str(f) for f in models_folders()) or "~/.deepimagej/models"
        raise BundleError(
            f"DeepImageJ Run: no model installed; put bundle folders in {where} "
            "(or a folder named by the DEEPIMAGEJ_MODELS environment variable)"
        )
    return models


def run_command(ij: ImageJ, options: str | None) -> None:
    """The "DeepImageJ Run" command (both option syntaxes; a dialog without options); called from the Java shim."""
    from deepimagej.imagej.java_classes import jc

    if not (options or "").strip():
        options = ask_run_options()
        if options is None:
            return
    opts = RunOptions.parse(options)
    IJ = jc.IJ
    confinement = jc.Confinement  # a confined macro's command: its folders only
    for checked, write in ((opts.input_path, False), (opts.output_folder, True)):
        if checked:
            confinement.checkPath(str(checked), write)
    if opts.input_path:  # DeepImageJ 3.x: inputPath / outputFolder / displayOutput
        paths = input_files(Path(opts.input_path))
        for path in paths:
            if opts.output_folder and not opts.host and stores.should_stream(path):
                run_streamed(opts, path, Path(opts.output_folder))  # too large to open in ImageJ
                continue
            imp = ij.open(path)
            result = run_bundle_on_imageplus(ij, opts, imp)
            if result is None:  # detached remote job
                continue
            if opts.output_folder:
                out = Path(opts.output_folder)
                out.mkdir(parents=True, exist_ok=True)
                IJ.saveAsTiff(result, str(out / f"{path.stem}_{result.getTitle().replace(' ', '_')}.tif"))
            if opts.display_output:
                result.show()
        return
    imp = jc.WindowManager.getCurrentImage()
    result = run_bundle_on_imageplus(ij, opts, imp)
    if result is not None and not ij.runner.running:  # clicked in ImageJ's window: the result in a window
        result.show()


def run_streamed(opts: RunOptions, path: Path, folder: Path) -> Path:
    """DeepImageJ 3.x ``inputPath``/``outputFolder`` on an image too large to open: read block by
    block, the result written block by block to ``folder`` (a TIFF for a one-output model, else an
    OME-Zarr), never shown. The bundle's ImageJ macros cannot run on blocks: its bioimage.io
    operations stand in for them; macros named by the user are refused.

    Returns:
        The result written.

    Raises:
        InputImageError: macros were named for this run.
    """
    from deepimagej import predict
    from deepimagej.imagej.models import find_model

    spec = find_model(opts.model)
    if opts.preprocessing or opts.postprocessing:
        raise InputImageError(
            f"DeepImageJ Run: {path.name} is larger than memory and runs block by block, where "
            "ImageJ macros cannot run; leave preprocessing/postprocessing to the bundle (its "
            "bioimage.io operations are used) or 'no preprocessing'"
        )
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".tif" if len(spec.outputs) == 1 else ".ome.zarr"
    target = folder / f"{path.stem}_{spec.outputs[0].name if len(spec.outputs) == 1 else 'outputs'}{suffix}"
    progress = Progress(spec.name, opts.logging)
    skipped = [*spec.preprocessing_macros, *spec.postprocessing_macros] if opts.preprocessing is None else []
    progress.log(
        f"{path.name} is larger than the memory set aside for one image: streamed block by block to {target}"
        + ("; the bundle's macros are replaced by its bioimage.io operations" if skipped else "")
    )
    image = stores.open_image(path)
    try:
        predict.predict(
            spec,
            predict.bind_inputs(spec, {spec.inputs[0].name: image}),
            out=target,
            overwrite=True,
            tile=opts.tile or None,
            weights_format=opts.weights_format,
            apply_preprocessing=opts.preprocessing is None,
            apply_postprocessing=opts.postprocessing is None,
            progress=progress,
        )
    finally:
        image.close()
    progress.finish()
    return target


def input_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg")
        )
        if files:
            return files
    raise InputImageError(f"inputPath={path}: no image file found there")
