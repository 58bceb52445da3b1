""""DeepImageJ Run": a bundle on the current image, with its ImageJ macros, inside ImageJ."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepimagej.errors import BundleError, InputImageError
from deepimagej.imagej.commands.dialogs import run_dialog, show
from deepimagej.imagej.commands.options import RunOptions

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


class Progress:
    """Progress in ImageJ's status and progress bars and the Log (the paper's monitoring window)."""

    def __init__(self, model: str, logging: str) -> None:
        from jpype import JClass

        self._IJ = JClass("ij.IJ")
        self._Runtime = JClass("java.lang.Runtime").getRuntime()
        self.model = model
        self.verbose = logging in ("debug", "verbose")
        self.quiet = logging in ("none", "quiet", "off")
        self.start = time.perf_counter()
        self.tiles = (0, 0)
        self.rss = 0

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
        return (f"memory: process peak {self.rss / 2**20:.0f} MB of {total / 2**20:.0f} MB; "
                f"Java {java_used / 2**20:.0f} MB of {int(self._Runtime.maxMemory()) / 2**20:.0f} MB")

    def log(self, text: str) -> None:
        if not self.quiet:
            self._IJ.log(f"[DeepImageJ] {text}")

    def finish(self) -> None:
        self._IJ.showProgress(1.0)
        self._IJ.showStatus("")
        _, total = self.tiles
        self.log(f"{self.model}: {total} tile(s) in {time.perf_counter() - self.start:.2f} s; {self.memory()}")


def run_bundle_on_imageplus(ij: ImageJ, opts: RunOptions, imp) -> Any:
    """Run the model of ``opts`` on ``imp`` (not modified); returns the final ImagePlus.

    Pre-processing macros run on a duplicate; the model output is made the current image
    (titled by :func:`output_title`), then the post-processing macros run on it.
    """
    from deepimagej import predict
    from deepimagej.imagej.convert import from_imageplus, imageplus_axes, to_imageplus
    from deepimagej.imagej.models import find_model

    spec = find_model(opts.model)
    if imp is None:
        raise InputImageError("DeepImageJ Run needs an open image: open one first (open(path) in a macro)")
    pre = macro_files(spec, opts.preprocessing, "preprocessing")
    post = macro_files(spec, opts.postprocessing, "postprocessing")
    progress = Progress(spec.name, opts.logging)
    progress.log(f"running '{spec.name}' on '{imp.getTitle()}'"
                 + (f" with {', '.join(p.name for p in pre)}" if pre else "")
                 + (f" then {', '.join(p.name for p in post)}" if post else ""))

    current = imp.duplicate()
    current.setTitle(f"{imp.getTitle()}-preprocessed")
    for path in pre:
        current = ij.runner.run(path.read_text(encoding="utf-8", errors="replace"), current, name=path.name)
        if current is None:
            raise InputImageError(f"preprocessing macro {path.name} left no image open")
    image = from_imageplus(current)
    axes = imageplus_axes(current)
    if opts.axes and "c" in opts.axes and "c" not in axes:
        pass  # a single-channel image: predict adds the channel axis
    calibration = current.getCalibration()
    if pre:
        current.changes = False
        current.close()
    prediction = predict.predict(
        spec,
        predict.bind_inputs(spec, image, axes),
        tile=opts.tile or None,
        weights_format=opts.weights_format,
        # the bundle's bioimage.io operations stand in for its macros, unless the user named the stage's
        # macros or asked for none ("preprocessing=[no preprocessing]": the raw image goes in)
        apply_preprocessing=not pre and opts.preprocessing is None,
        apply_postprocessing=not post and opts.postprocessing is None,
        progress=progress,
    )
    first = next(iter(prediction.outputs.values()))
    output, out_axes = first.array, first.axes
    result = to_imageplus(output, title=output_title(spec, post), axes=out_axes, calibration={
        "x": float(calibration.pixelWidth), "y": float(calibration.pixelHeight),
        "z": float(calibration.pixelDepth), "unit": str(calibration.getUnit()),
    })
    if ij.runner.running:
        result.show()  # batch mode: the current image for the rest of the macro
    for path in post:
        result = ij.runner.run(path.read_text(encoding="utf-8", errors="replace"), result, name=path.name)
        if result is None:
            raise InputImageError(f"postprocessing macro {path.name} left no image open")
    progress.finish()
    return result


def ask_run_options() -> str | None:
    """The "DeepImageJ Run" dialog (the command clicked from the menu): macro options, or None if cancelled.

    The dialog (:func:`~deepimagej.imagej.commands.dialogs.run_dialog`) has the macro keys as
    labels (``model``, ``format``, ``preprocessing``, ``postprocessing``, ``tile``, ``logging``),
    so the line ImageJ's Recorder writes for it is one :meth:`RunOptions.parse` reads.

    Raises:
        BundleError: no bundle is installed in the models folders.
    """
    dialog = run_dialog(installed_model_names())
    values = show(dialog)
    return None if values is None else dialog.options(values)


def installed_model_names() -> list[str]:
    """The folder names of the installed models that load, for the Run dialog.

    Raises:
        BundleError: no bundle is installed in the models folders.
    """
    from deepimagej.imagej.models import installed_models, models_folders

    models = [m.folder.name for m in installed_models() if m.spec is not None]
    if not models:
        where = ", ".join(str(f) for f in models_folders()) or "~/.deepimagej/models"
        raise BundleError(f"DeepImageJ Run: no model installed; put bundle folders in {where} "
                          "(or a folder named by the DEEPIMAGEJ_MODELS environment variable)")
    return models


def run_command(ij: ImageJ, options: str | None) -> None:
    """The "DeepImageJ Run" command (both option syntaxes; a dialog without options); called from the Java shim."""
    from jpype import JClass

    if not (options or "").strip():
        options = ask_run_options()
        if options is None:
            return
    opts = RunOptions.parse(options)
    IJ = JClass("ij.IJ")
    if opts.input_path:  # DeepImageJ 3.x: inputPath / outputFolder / displayOutput
        paths = input_files(Path(opts.input_path))
        for path in paths:
            imp = ij.open(path)
            result = run_bundle_on_imageplus(ij, opts, imp)
            if opts.output_folder:
                out = Path(opts.output_folder)
                out.mkdir(parents=True, exist_ok=True)
                IJ.saveAsTiff(result, str(out / f"{path.stem}_{result.getTitle().replace(' ', '_')}.tif"))
            if opts.display_output and ij.runner.running:
                result.show()
        return
    imp = JClass("ij.WindowManager").getCurrentImage()
    run_bundle_on_imageplus(ij, opts, imp)


def input_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg"))
        if files:
            return files
    raise InputImageError(f"inputPath={path}: no image file found there")
