"""The ``deepimagej`` command line: run | test | info | list | build | demo (+ macro, train, evaluate).

Errors a user can cause are printed as one line (``error: ...``) with exit status 2;
library tracebacks are never shown for them.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deepimagej.cli_errors import friendly_errors
from deepimagej.cli_trust import trust_cmd
from deepimagej.errors import DeepImageJError, first_line
from deepimagej.io import NAN_POLICIES
from deepimagej.outputs import IMAGE_FORMATS

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from deepimagej.bundle.spec import ModelSpec
    from deepimagej.io import ImageData


def parse_tile(value: str | None, spatial: str = "yx") -> dict[str, int] | None:
    """Parse ``--tile``: ``256`` (every spatial axis), ``256,256`` (y,x) or ``y=256,x=512``."""
    if not value:
        return None
    parts = [p.strip() for p in value.replace("x", ",").split(",") if p.strip()] if "=" not in value else None
    try:
        if parts is None:
            pairs = [p.split("=") for p in value.split(",")]
            return {k.strip().lower(): int(v) for k, v in pairs}
        numbers = [int(p) for p in parts]
    except ValueError:
        raise DeepImageJError(f"--tile '{value}': expected sizes like 256, 256,256 or y=256,x=256") from None
    if len(numbers) == 1:
        return dict.fromkeys(spatial, numbers[0])
    axes = spatial[-len(numbers) :] if len(numbers) <= len(spatial) else None
    if axes is None:
        raise DeepImageJError(
            f"--tile '{value}': {len(numbers)} sizes for {len(spatial)} spatial axes ({spatial})"
        )
    return dict(zip(axes, numbers))


class _Progress:
    """A rich progress bar (tiles, throughput, elapsed, time left, peak memory) for runs of more than one batch."""

    def __init__(self, enabled: bool, pixels: int = 0):
        self.enabled = enabled
        self.pixels = pixels  # of the whole image, for the throughput
        self._live: tuple[Progress, TaskID] | None = None  # the bar and its task, once shown

    def __call__(self, done: int, total: int, elapsed: float, rss: int) -> None:
        if not self.enabled or total <= 1:
            return
        if self._live is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            bar = Progress(
                TextColumn("blocks"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[mem]}"),
                transient=True,
                console=None,
            )
            bar.start()
            self._live = (bar, bar.add_task("run", total=total, mem="", speed=""))
        bar, task = self._live
        speed = (
            f"{done / total * self.pixels / 1e6 / elapsed:.1f} Mpix/s" if elapsed > 0 and self.pixels else ""
        )
        mem = f"peak {rss / 2**20:.0f} MiB" if rss else ""
        bar.update(task, completed=done, mem=mem, speed=speed)

    def close(self) -> None:
        if self._live is not None:
            self._live[0].stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepimagej")
def main() -> None:
    """Run and train deep-learning image models (DeepImageJ bundles, bioimage.io models)."""


@main.command("run")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="[INPUT]", type=click.Path(path_type=Path), required=False)
@click.option(
    "--input",
    "-i",
    "named_inputs",
    multiple=True,
    metavar="NAME=PATH",
    help="An image for the model input NAME (repeat for each input of a several-input model).",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    required=True,
    metavar="PATH|DIR|NAME=PATH",
    help="Output file (.tif or .npy); a folder for a several-output model; or NAME=PATH per output.",
)
@click.option(
    "--tile", help="Model input size per spatial axis, e.g. 256 or 256,256 or y=256,x=512 (halo included)."
)
@click.option(
    "--axes",
    help="Axes of the input image(s), e.g. yx, yxc, zyx, tyx, or raw=yx,mask=cyx "
    "(read from the TIFF when omitted).",
)
@click.option(
    "--weights",
    "weights_format",
    help="Weights format to run: tensorflow_saved_model_bundle, keras_hdf5, onnx, torchscript, pytorch_state_dict.",
)
@click.option(
    "--max-memory", help="Memory budget of the run, e.g. 1.5G or 800M (default: half of the free memory)."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), help="Tiles per model call (default: from the memory budget)."
)
@click.option("--no-preprocessing", is_flag=True, help="Skip the bundle's pre-processing.")
@click.option("--no-postprocessing", is_flag=True, help="Skip the bundle's post-processing.")
@click.option(
    "--no-imagej",
    is_flag=True,
    help="Refuse a bundle whose pre- or post-processing is an ImageJ macro instead of running it in ImageJ.",
)
@click.option(
    "--trust",
    "--trust-code",
    "trust_code",
    is_flag=True,
    help="Run even what the bundle's audit refuses (see `deepimagej info`): file, network or process access, Python code shipped in the bundle (pytorch_state_dict). --trust-code: same.",
)
@click.option(
    "--nan",
    type=click.Choice(NAN_POLICIES),
    default="error",
    show_default=True,
    help="NaN/Inf input pixels: refuse them, or replace them by zero or the image mean.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output store (.ome.zarr, .zarr).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Run the blocks on a local Dask cluster of N worker processes.",
)
@click.option("--scheduler", help="Run the blocks on an existing Dask scheduler, e.g. tcp://10.0.0.5:8786.")
@click.option("-v", "--verbose", is_flag=True, help="Show the tile plan and the memory estimate.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--host", help="Run on this server as a job (deepimagej remote add NAME ...; deepimagej jobs).")
@click.option(
    "--detach",
    is_flag=True,
    help="With --host: return at once with the job id (fetch: deepimagej jobs fetch ID).",
)
@friendly_errors
def run_cmd(
    bundle: Path,
    input_path: Path | None,
    named_inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    tile: str | None,
    axes: str | None,
    weights_format: str | None,
    max_memory: str | None,
    batch_size: int | None,
    no_preprocessing: bool,
    no_postprocessing: bool,
    no_imagej: bool,
    trust_code: bool,
    nan: str,
    overwrite: bool,
    workers: int | None,
    scheduler: str | None,
    verbose: bool,
    quiet: bool,
    host: str | None = None,
    detach: bool = False,
) -> None:
    """Run BUNDLE on the image INPUT (or --input NAME=PATH for each input) and write the result to OUTPUT.

    An output named *.ome.zarr or *.zarr is written block by block as the run goes (the image is read
    block by block too), so images larger than memory work; so is a TIFF output of an image over 1 GiB.
    With --host the same command runs on a server as a job. INPUT may be a folder: every image in it
    runs (the model loaded once), the results go to the -o folder with a summary table
    (summary.csv). A bundle's own ImageJ macros run in the embedded ImageJ (--no-imagej: refused).
    """
    if host:  # the same command on a server, as a job (deepimagej.remote)
        from deepimagej.remote.cli import forwarded_options, remote_run

        return remote_run(
            host,
            bundle,
            input_path,
            named_inputs,
            outputs,
            forwarded_options(exclude=("named_inputs", "outputs")),
            detach,
        )
    from deepimagej import stores
    from deepimagej.bundle import load_bundle

    if workers and scheduler:
        raise DeepImageJError(
            "--workers starts a local Dask cluster, --scheduler uses an existing one: give one of them"
        )
    spec = load_bundle(bundle)
    settings = _RunSettings(
        bundle,
        tile,
        axes,
        weights_format,
        max_memory,
        batch_size,
        no_preprocessing,
        no_postprocessing,
        trust_code,
        nan,
        overwrite,
        workers,
        scheduler,
        verbose,
        quiet,
        no_imagej,
    )
    if (
        input_path is not None
        and input_path.is_dir()
        and stores.store_kind(input_path) is None
        and not _is_zarr_folder(input_path)
    ):
        _exit(_run_folder(spec, input_path, outputs, settings), bool(_macro_stages(spec, settings)))
        return
    _run_one(spec, _input_paths(spec, input_path, named_inputs), outputs, settings)
    _exit(0, bool(_macro_stages(spec, settings)))


def _macro_stages(spec: ModelSpec, settings: _RunSettings) -> list[str]:
    """The stages of this run that the bundle's ImageJ macros do, in the embedded ImageJ (none with --no-imagej)."""
    from deepimagej import predict

    if settings.no_imagej:
        return []
    stages = predict.macro_only_stages(spec, not settings.no_preprocessing, not settings.no_postprocessing)
    return [what for what, _ in stages]


def _exit(code: int, imagej: bool) -> None:
    """End ``deepimagej run`` with ``code``; after ImageJ ran, at once (the Java VM with it), as ``deepimagej macro``."""
    if imagej:
        from deepimagej.imagej.cli import finish

        finish(code)
    if code:
        raise SystemExit(code)


@dataclasses.dataclass(frozen=True)
class _RunSettings:
    """The options of ``deepimagej run`` that hold for every image of a run."""

    bundle: Path
    tile: str | None
    axes: str | None
    weights_format: str | None
    max_memory: str | None
    batch_size: int | None
    no_preprocessing: bool
    no_postprocessing: bool
    trust_code: bool
    nan: str
    overwrite: bool
    workers: int | None
    scheduler: str | None
    verbose: bool
    quiet: bool
    no_imagej: bool = False


#: Image files a folder run takes (by extension).
FOLDER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")


def _is_zarr_folder(path: Path) -> bool:
    return any((path / name).exists() for name in (".zarray", ".zgroup", "zarr.json"))


#: The summary table of a folder run, written into its output folder.
SUMMARY_CSV = "summary.csv"


def _run_folder(spec: ModelSpec, folder: Path, outputs: tuple[str, ...], settings: _RunSettings) -> int:
    """Every image of ``folder`` through the model (loaded once), results into the ``-o`` folder.

    An image that fails is reported and the others go on. The summary table (file, shape,
    seconds, status, error) is printed and written as :data:`SUMMARY_CSV` in the output folder.

    Returns:
        The exit status: 1 when an image failed (2 is for a run that cannot start: a bad bundle,
        option or folder), else 0.
    """
    if len(spec.inputs) != 1:
        raise DeepImageJError(
            f"{spec.name} has {len(spec.inputs)} inputs: a folder run takes one-input models"
        )
    if len(outputs) != 1 or "=" in outputs[0] or Path(outputs[0]).suffix.lower() in IMAGE_FORMATS:
        raise DeepImageJError(f"{folder} is a folder: give -o OUTPUT_FOLDER for its results")
    out_dir = Path(outputs[0])
    if out_dir.resolve() == folder.resolve():
        raise DeepImageJError(f"-o {out_dir}: write the results to another folder than the images'")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
    if not files:
        raise DeepImageJError(f"{folder}: no image files ({', '.join(FOLDER_SUFFIXES)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    rows: list[dict[str, str]] = []
    for index, path in enumerate(files, 1):
        if not settings.quiet:
            click.echo(f"[{index}/{len(files)}] {path.name}")
        started = time.perf_counter()
        try:
            shape = _run_one(spec, {spec.inputs[0].name: path}, (str(out_dir),), settings)
        except DeepImageJError as exc:
            failed.append(path.name)
            click.echo(f"error: {path.name}: {first_line(exc)}", err=True)
            shape, status, error = None, "failed", first_line(exc)
        else:
            status, error = "ok", ""
        rows.append(
            {
                "file": path.name,
                "shape": "x".join(map(str, shape)) if shape else "",
                "seconds": f"{time.perf_counter() - started:.2f}",
                "status": status,
                "error": error,
            }
        )
    _write_summary(rows, out_dir / SUMMARY_CSV, settings.quiet)
    if failed:
        click.echo(
            f"error: {len(failed)} of {len(files)} images failed ({', '.join(failed[:5])}"
            f"{', ...' if len(failed) > 5 else ''}); the others are in {out_dir}",
            err=True,
        )
        return 1
    return 0


def _write_summary(rows: list[dict[str, str]], target: Path, quiet: bool) -> None:
    """Print the summary table of a folder run (unless ``quiet``) and write it as CSV (atomically)."""
    import csv
    import io

    from deepimagej.outputs import write_text_atomic

    columns = ["file", "shape", "seconds", "status", "error"]
    if not quiet:
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
        click.echo("  ".join(c.ljust(widths[c]) for c in columns[:-1]) + "  error")
        for r in rows:
            click.echo("  ".join(r[c].ljust(widths[c]) for c in columns[:-1]) + f"  {r['error']}".rstrip())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(target, text.getvalue())
    if not quiet:
        click.echo(f"summary: {target}")


def _run_one(
    spec: ModelSpec, paths: dict[str, Path], outputs: tuple[str, ...], settings: _RunSettings
) -> tuple[int, ...]:
    """One run of ``deepimagej run``: the images of ``paths`` in, the ``-o`` targets written.

    Returns:
        The shape of the (first) input image.
    """
    from deepimagej import predict, stores
    from deepimagej.outputs import check_output_path

    workers, scheduler = settings.workers, settings.scheduler
    streaming = workers is not None or scheduler is not None or any(stores.is_store_path(o) for o in outputs)
    streaming = streaming or any(stores.should_stream(p) for p in paths.values())
    targets = _output_paths(spec, outputs, next(iter(paths.values())), streaming)
    if streaming:  # refused before any work: an existing store, an input, a read-only folder
        stores.check_target(
            next(iter(targets.values())),
            overwrite=settings.overwrite,
            inputs=(*paths.values(), settings.bundle),
        )
    else:
        for target in targets.values():  # before the work: writable, and never over an input
            check_output_path(target, inputs=[*paths.values(), settings.bundle])
    macros = _macro_stages(spec, settings)
    if macros:  # the bundle's own ImageJ macros do a stage: run it as DeepImageJ does, in ImageJ
        if streaming:
            raise DeepImageJError(
                f"{spec.name}: its {macros[0]} is an ImageJ macro, which cannot run block by "
                "block; write a .tif (in memory) instead"
            )
        return _run_in_imagej(spec, paths, targets, settings, macros)
    images = {
        name: _read_for(spec, name, path, _axes_for(settings.axes, name), lazy=streaming)
        for name, path in paths.items()
    }
    spatial = tiling_axes(spec)
    pixels = int(max(math.prod(images[n].array.shape) for n in images))
    progress = _Progress(enabled=not settings.quiet and sys.stderr.isatty(), pixels=pixels)
    tile = parse_tile(settings.tile, spatial)
    start = time.perf_counter()
    try:
        bound = predict.bind_inputs(spec, images, nan=settings.nan)
        result = predict.predict(
            spec,
            bound,
            tile=tile,
            weights_format=settings.weights_format,
            batch_size=settings.batch_size,
            max_memory=settings.max_memory,
            apply_preprocessing=not settings.no_preprocessing,
            apply_postprocessing=not settings.no_postprocessing,
            progress=progress,
            trust_code=settings.trust_code,
            # streamed: the outputs go to the one store; workers/scheduler are given only for streamed runs
            out=next(iter(set(targets.values()))) if streaming else None,
            overwrite=settings.overwrite,
            scheduler=scheduler or workers,
        )
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    if settings.verbose:
        for line in result.run_plan.describe():
            click.echo(line)
    if not streaming:
        from deepimagej.io import write_image

        for name, target in targets.items():
            write_image(target, result.outputs[name])
    if not settings.quiet:
        for name, target in targets.items():
            out = result.outputs[name]
            click.echo(f"{spec.name}: {name} {tuple(out.array.shape)} [{out.axes}] -> {target}")
        sources = ", ".join(f"{p.name} {tuple(images[n].array.shape)}" for n, p in paths.items())
        mpix = pixels / 1e6 / elapsed if elapsed else 0
        click.echo(
            f"{sources}: {result.run_plan.plan.n_tiles * result.run_plan.n_items} tile(s) in {elapsed:.2f} s "
            f"({mpix:.1f} Mpix/s), peak memory {result.peak_rss / 2**20:.0f} MiB"
        )
    return tuple(next(iter(images.values())).array.shape)


def _run_in_imagej(
    spec: ModelSpec,
    paths: dict[str, Path],
    targets: dict[str, Path],
    settings: _RunSettings,
    stages: list[str],
) -> tuple[int, ...]:
    """A bundle whose pre- or post-processing is an ImageJ macro: the DeepImageJ Run command in the
    embedded ImageJ (the bundle's macros confined unless trusted); the result written as with any run.

    Returns:
        The shape of the input image.
    """
    from deepimagej.io import read_image, write_image

    if len(paths) != 1 or len(targets) != 1:
        raise DeepImageJError(
            f"{spec.name}: a bundle with ImageJ macros runs on one image with one output here"
        )
    (path,), (target,) = paths.values(), targets.values()
    image = read_image(path)
    axes = _axes_for(settings.axes, spec.inputs[0].name) or image.axes
    if not settings.quiet:
        click.echo(f"{spec.name}: its {' and '.join(stages)} is an ImageJ macro: running it in ImageJ")
    start_s = time.perf_counter()
    out = _imagej_run(
        spec,
        dataclasses.replace(image, axes=axes),
        path.name,
        weights_format=settings.weights_format,
        tile=settings.tile,
        pre=not settings.no_preprocessing,
        post=not settings.no_postprocessing,
        trusted=settings.trust_code,
        quiet=settings.quiet,
    )
    write_image(target, out)
    if not settings.quiet:
        click.echo(f"{spec.name}: {tuple(out.array.shape)} [{out.axes}] -> {target}")
        click.echo(f"{path.name}: in ImageJ in {time.perf_counter() - start_s:.2f} s")
    return tuple(image.array.shape)


def _imagej_run(
    spec: ModelSpec,
    image: ImageData,
    title: str,
    *,
    weights_format: str | None = None,
    tile: str | None = None,
    pre: bool = True,
    post: bool = True,
    trusted: bool = False,
    quiet: bool = True,
) -> ImageData:
    """``image`` through the DeepImageJ Run command in the embedded ImageJ: the bundle's own macros, then the model.

    A size-1 ``b`` axis (a test tensor's) is dropped. The output keeps the input's calibration.
    """
    from deepimagej.imagej import start
    from deepimagej.imagej.commands.options import RunOptions
    from deepimagej.imagej.commands.run import run_bundle_on_imageplus
    from deepimagej.imagej.convert import from_imageplus, imageplus_axes, to_imageplus
    from deepimagej.io import ImageData

    array, axes = image.array, image.axes
    if "b" in axes:
        if array.shape[axes.index("b")] != 1:
            raise DeepImageJError(
                f"{spec.name}: ImageJ runs one image at a time, not a batch of {array.shape[0]}"
            )
        array, axes = array.take(0, axis=axes.index("b")), axes.replace("b", "")
    ij = start()
    calibration: dict[str, float | str] = {
        a: image.pixel_size[a] for a in ("x", "y", "z") if a in image.pixel_size
    }
    if image.unit:
        calibration["unit"] = image.unit
    imp = to_imageplus(array, title=title, axes=axes, calibration=calibration)
    opts = RunOptions(
        model=str(spec.root),
        weights_format=weights_format,
        tile=parse_tile(tile, tiling_axes(spec)) or {},
        preprocessing=None if pre else [],
        postprocessing=None if post else [],
        logging="none" if quiet else "normal",
    )
    result = run_bundle_on_imageplus(ij, opts, imp, trusted=trusted)
    return ImageData(from_imageplus(result), imageplus_axes(result), image.pixel_size, image.unit)


def tiling_axes(spec: ModelSpec) -> str:
    """The spatial axes of the model's inputs (what --tile sizes refer to)."""
    spatial = ""
    for t in spec.inputs:
        spatial += "".join(a for a in t.axis_names if a in "zyx" and a not in spatial)
    return spatial or "yx"


def _pairs(values: tuple[str, ...] | list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise DeepImageJError(f"{option} '{value}': expected NAME=VALUE")
        pairs[name.strip()] = rest.strip()
    return pairs


def _input_paths(spec: ModelSpec, positional: Path | None, named: tuple[str, ...]) -> dict[str, Path]:
    names = [t.name for t in spec.inputs]
    given = {k: Path(v) for k, v in _pairs(named, "--input").items()}
    for k in given:
        if k not in names:
            raise DeepImageJError(
                f"--input {k}=...: the model has no input '{k}' (its inputs: {', '.join(names)})"
            )
    if positional is not None:
        if len(names) > 1:
            raise DeepImageJError(
                f"{spec.name} has {len(names)} inputs ({', '.join(names)}): give each with --input NAME=PATH"
            )
        given.setdefault(names[0], positional)
    missing = [n for n in names if n not in given]
    if missing:
        hint = "INPUT" if len(names) == 1 else f"--input {missing[0]}=PATH"
        raise DeepImageJError(f"{spec.name}: no image for input '{missing[0]}'; give {hint}")
    return {n: given[n] for n in names}


def _axes_for(axes: str | None, name: str) -> str | None:
    if axes is None or "=" not in axes:
        return axes
    return _pairs(axes.split(","), "--axes").get(name)


def _read_for(spec: ModelSpec, name: str, path: Path, axes: str | None, lazy: bool = False) -> ImageData:
    """Read an input image (block by block when ``lazy`` and the file allows it); a 3D TIFF read as
    ``zyx`` is re-guessed for a model that wants channels."""
    from deepimagej import layout, stores
    from deepimagej.io import ImageData, read_image

    if lazy and (path.is_dir() or stores.store_kind(path) == "tiff"):
        opened = stores.open_image(path)
        image = ImageData(opened.array, opened.axes, opened.pixel_size, opened.unit, {"path": str(path)})
    else:
        image = read_image(path)
    tensor = next(t for t in spec.inputs if t.name == name)
    if axes is not None:
        return dataclasses.replace(image, axes=axes)
    if "c" not in image.axes and len(image.array.shape) == 3 and tensor.has_axis("c"):
        return dataclasses.replace(image, axes=layout.guess_axes(tuple(image.array.shape), spec, tensor))
    return image


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. a name too long: check_output_path says so
        return False


def _output_paths(
    spec: ModelSpec, values: tuple[str, ...], first_input: Path, streaming: bool = False
) -> dict[str, Path]:
    """``-o`` values -> one file per output (a folder gets ``<input stem>_<output>.tif`` files); a
    streamed run writes every output into one store (an OME-Zarr/zarr holds one array per output)."""
    from deepimagej import stores

    names = [t.name for t in spec.outputs]
    if streaming:
        plain = [Path(v) for v in values if "=" not in v]
        if len(plain) != 1 or len(values) != 1:
            raise DeepImageJError(
                "a streamed run writes one store: give one -o RESULT.ome.zarr (or .zarr, .tif)"
            )
        kind = stores.store_kind(plain[0])
        if kind is None or (kind == "tiff" and len(names) > 1):
            raise DeepImageJError(
                f"-o {plain[0]}: a run that streams writes to an .ome.zarr or .zarr store"
                + (" (a .tif holds one output)" if kind == "tiff" else "; a .tif for a one-output model")
            )
        return dict.fromkeys(names, plain[0])
    named = {k: Path(v) for k, v in _pairs([v for v in values if "=" in v], "-o").items()}
    plain = [Path(v) for v in values if "=" not in v]
    for k in named:
        if k not in names:
            raise DeepImageJError(
                f"-o {k}=...: the model has no output '{k}' (its outputs: {', '.join(names)})"
            )
    if len(plain) > 1:
        raise DeepImageJError("-o: give one output path (or folder), or NAME=PATH for each output")
    targets = dict(named)
    if plain:
        target = plain[0]
        # a name with an image extension is a file (check_output_path refuses it if it is a folder)
        as_folder = target.suffix.lower() not in IMAGE_FORMATS and (
            (len(names) > 1 and not target.suffix) or _is_folder(target)
        )
        if as_folder:
            for n in names:
                targets.setdefault(n, target / f"{first_input.stem}_{n}.tif")
        elif len(names) > 1:
            raise DeepImageJError(
                f"{spec.name} has {len(names)} outputs ({', '.join(names)}): give -o FOLDER or -o NAME=PATH for each"
            )
        else:
            targets.setdefault(names[0], target)
    missing = [n for n in names if n not in targets]
    if missing:
        raise DeepImageJError(f"no output path for '{missing[0]}': give -o {missing[0]}=PATH or -o FOLDER")
    return {n: targets[n] for n in names}


@main.command("test")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--weights",
    "weights_format",
    multiple=True,
    help="Weights format(s) to test (default: every runnable one present).",
)
@click.option("--tolerance", type=float, default=None, help="Max abs difference allowed (default 1e-3).")
@click.option(
    "--trust",
    "--trust-code",
    "trust_code",
    is_flag=True,
    help="Run even what the bundle's audit refuses (see `deepimagej info`): file, network or process access, Python code shipped in the bundle (pytorch_state_dict). --trust-code: same.",
)
@click.option(
    "--no-imagej",
    is_flag=True,
    help="Never run the bundle's ImageJ macros (a reference that is their result then fails).",
)
@friendly_errors
def test_cmd(
    bundle: Path, weights_format: tuple[str, ...], tolerance: float | None, trust_code: bool, no_imagej: bool
) -> None:
    """Run BUNDLE on its test inputs and compare every output with its reference (exit 1 on mismatch).

    When the pre- or post-processing is an ImageJ macro and a reference is its result
    (DeepImageJ's resultImage), the output after the bundle's macros, run in the embedded
    ImageJ, is compared.
    """
    from deepimagej.bundle import load_bundle
    from deepimagej.check import DEFAULT_TOLERANCE, check_reference

    spec = load_bundle(bundle)
    formats = list(weights_format) or [
        w.format for w in spec.runnable_weights() if w.path is not None and w.path.exists()
    ]
    if not formats:
        raise DeepImageJError(
            f"{spec.source}: no runnable weights file present (tensorflow, keras, onnx or torchscript)"
        )
    if not weights_format and not trust_code and "pytorch_state_dict" in formats and len(formats) > 1:
        formats.remove("pytorch_state_dict")
        click.echo("SKIP pytorch_state_dict: it runs Python code shipped in the bundle; test it with --trust")
    used_imagej = False

    def after_macros(spec: ModelSpec, inputs: dict[str, ImageData], fmt: str) -> dict[str, ImageData]:
        nonlocal used_imagej
        if len(inputs) != 1 or len(spec.outputs) != 1:
            raise DeepImageJError(f"{spec.name}: ImageJ runs a bundle with one input and one output")
        used_imagej = True
        ((name, image),) = inputs.items()
        return {spec.outputs[0].name: _imagej_run(spec, image, name, weights_format=fmt, trusted=trust_code)}

    failed = False
    for fmt in formats:
        report = check_reference(
            spec,
            weights_format=fmt,
            tolerance=tolerance or DEFAULT_TOLERANCE,
            trust_code=trust_code,
            after_macros=None if no_imagej else after_macros,
        )
        click.echo(f"{'PASS' if report.passed else 'FAIL'} {report.message}")
        failed |= not report.passed
    _exit(1 if failed else 0, used_imagej)


@main.command("info")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--layers/--no-layers", default=True, help="Load the weights and summarise layers/operations.")
@click.option(
    "--image",
    "image_path",
    type=click.Path(path_type=Path),
    help="Show the tile plan and the estimated peak memory for this image (measures the model once).",
)
@click.option("--axes", help="Axes of --image (read from the TIFF when omitted).")
@click.option("--tile", help="Tile size to plan with (default: chosen from the memory budget).")
@click.option(
    "--max-memory", help="Memory budget to plan with, e.g. 1.5G (default: half of the free memory)."
)
@click.option("--weights", "weights_format", help="Weights format to plan for.")
@click.option(
    "--trust", is_flag=True, help="Load the weights (--layers, --image) even if the audit refuses them."
)
@friendly_errors
def info_cmd(
    bundle: Path,
    layers: bool,
    image_path: Path | None,
    axes: str | None,
    tile: str | None,
    max_memory: str | None,
    weights_format: str | None,
    trust: bool,
) -> None:
    """Describe BUNDLE: every tensor with its shape rule, tiling, processing, weights, layers (and a plan)."""
    from deepimagej.bundle import load_bundle
    from deepimagej.describe import describe

    spec = load_bundle(bundle)
    for line in describe(spec, layers=layers, trust=trust):
        click.echo(line)
    if image_path is not None:
        from deepimagej import stores
        from deepimagej.describe import describe_plan

        lazy = stores.should_stream(image_path)
        images = {
            t.name: _read_for(spec, t.name, image_path, _axes_for(axes, t.name), lazy=lazy)
            for t in spec.inputs[:1]
        }
        if len(spec.inputs) > 1:
            raise DeepImageJError(
                f"--image plans a one-input model; {spec.name} has {len(spec.inputs)} inputs"
            )
        for line in describe_plan(
            spec,
            images,
            tile=parse_tile(tile, tiling_axes(spec)),
            max_memory=max_memory,
            weights_format=weights_format,
            trust=trust,
        ):
            click.echo(line)


@main.command("list")
@click.argument("folder", type=click.Path(path_type=Path), default=None, required=False)
@friendly_errors
def list_cmd(folder: Path | None) -> None:
    """List every bundle under FOLDER (default: the models folder) with a one-line description."""
    from deepimagej.describe import find_bundles, one_line

    folder = folder or default_models_dir()
    if not folder.is_dir():
        raise DeepImageJError(f"{folder}: not a folder")
    found = find_bundles(folder)
    if not found:
        click.echo(f"no bundles under {folder}")
    for path in found:
        click.echo(one_line(path, folder))


@main.command("install")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--models",
    "models_folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models folder to install into (default: ~/.deepimagej/models, where ImageJ finds them).",
)
@click.option("--overwrite", is_flag=True, help="Replace an installed model of the same folder name.")
@click.option("--no-test", is_flag=True, help="Do not run the bundle's own test (its reference images).")
@friendly_errors
def install_cmd(source: Path, models_folder: Path | None, overwrite: bool, no_test: bool) -> None:
    """Install a bundle (a DeepImageJ/bioimage.io .zip, or a folder) as a model.

    The zip is checked before anything is unpacked (names, links, size) and the bundle is loaded
    before it is moved into place: a broken bundle leaves nothing behind. Its summary is shown,
    and its own test runs when it has reference images (a failed test is reported; the model
    stays installed).
    """
    from deepimagej.check import check_reference
    from deepimagej.describe import describe
    from deepimagej.errors import BundleError
    from deepimagej.imagej.models import install_model
    from deepimagej.paths import USER_MODELS

    spec = install_model(source, models_folder, overwrite=overwrite)
    click.echo(f"installed '{spec.name}' in {spec.root}")
    for line in describe(spec, layers=False):
        click.echo(f"  {line}")
    if not no_test:
        try:
            report = check_reference(spec)
        except BundleError as exc:  # no reference images to compare
            click.echo(f"test     : none ({first_line(exc)})")
        else:
            verdict = "PASS" if report.passed else "FAIL (installed anyway; see `deepimagej test`)"
            click.echo(f"test     : {verdict} {report.message}")
    click.echo(
        f"next     : deepimagej run {spec.root} IMAGE.tif -o OUT.tif, or DeepImageJ Run in ImageJ"
        + (
            ""
            if (models_folder or USER_MODELS) == USER_MODELS
            else f" (with DEEPIMAGEJ_MODELS={models_folder})"
        )
    )


@main.command("build")
@click.argument("weights", type=click.Path(path_type=Path))
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Bundle folder to create."
)
@click.option(
    "--config", "config_template", type=click.Path(path_type=Path), help="DeepImageJ config.xml template."
)
@click.option("--rdf", "rdf_template", type=click.Path(path_type=Path), help="bioimage.io rdf.yaml template.")
@click.option(
    "--example", "example_image", type=click.Path(path_type=Path), help="Example image (TIFF/NPY/PNG)."
)
@click.option("--name", help="Model name.")
@click.option(
    "--axes", "input_axes", help="Model input axes, e.g. byxc (default from the template, else byxc)."
)
@click.option("--min-size", type=int, help="Minimum tile size (spatial).")
@click.option("--step", type=int, help="Tile size step (spatial).")
@click.option("--halo", type=int, help="Halo / padding in pixels.")
@click.option(
    "--preprocessing-macro",
    multiple=True,
    type=click.Path(path_type=Path),
    help="ImageJ macro(s) run before the model.",
)
@click.option(
    "--postprocessing-macro",
    multiple=True,
    type=click.Path(path_type=Path),
    help="ImageJ macro(s) run after the model.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@friendly_errors
def build_cmd(
    weights: Path,
    out_dir: Path,
    config_template: Path | None,
    rdf_template: Path | None,
    example_image: Path | None,
    name: str | None,
    input_axes: str | None,
    min_size: int | None,
    step: int | None,
    halo: int | None,
    preprocessing_macro: tuple[Path, ...],
    postprocessing_macro: tuple[Path, ...],
    overwrite: bool,
) -> None:
    """Export Keras/SavedModel WEIGHTS as a runnable bundle (SavedModel + config.xml + rdf.yaml)."""
    from deepimagej.export import build_bundle

    start = time.perf_counter()
    spec = build_bundle(
        weights,
        out_dir,
        name=name,
        input_axes=input_axes,
        min_size=min_size,
        step=step,
        halo=halo,
        preprocessing_macros=list(preprocessing_macro) or None,
        postprocessing_macros=list(postprocessing_macro) or None,
        example_image=example_image,
        config_template=config_template,
        rdf_template=rdf_template,
        overwrite=overwrite,
    )
    click.echo(
        f"built '{spec.name}' in {out_dir} ({time.perf_counter() - start:.1f} s): {', '.join(sorted(spec.weights))}"
    )
    if spec.sample_outputs:
        click.echo(f"example result: {spec.sample_outputs[0]}")


@main.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out"),
    help="Where to write the result.",
)
@friendly_errors
def demo_cmd(out_dir: Path) -> None:
    """Run the shipped pancreatic-cell U-Net bundle on its example image."""
    from deepimagej import predict
    from deepimagej.check import check_reference
    from deepimagej.engines import load_engine
    from deepimagej.imagej.models import find_model
    from deepimagej.io import read_image, write_image

    try:
        spec = find_model(
            "unet-pancreatic"
        )  # in the models folders: a checkout's bundles/, DEEPIMAGEJ_MODELS...
    except DeepImageJError:
        raise DeepImageJError(
            "the demo bundle 'unet-pancreatic' is not in any models folder; `deepimagej install` it, or point "
            "DEEPIMAGEJ_MODELS at the bundles/ folder of a deepimagej checkout"
        ) from None
    bundle = spec.root
    example = read_image(spec.sample_inputs[0])
    weights = spec.runnable_weights()[0]
    click.echo(f"model   : {spec.name}  ({bundle})")
    click.echo(f"input   : {spec.sample_inputs[0]}  {example.array.shape} {example.array.dtype}")
    start = time.perf_counter()
    load_engine(weights, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    result = predict.predict(spec, predict.bind_inputs(spec, example))
    elapsed = time.perf_counter() - start
    out = next(iter(result.outputs.values()))
    target = out_dir / "unet-pancreatic_result.tif"
    write_image(target, dataclasses.replace(out, array=out.array.astype("uint8")))
    click.echo(f"steps   : scale_range (min-max) -> U-Net ({weights.format}) -> binarize 0.5")
    click.echo(
        f"output  : {target}  {out.array.shape}, {int(out.array.sum())} foreground pixels ({out.array.mean():.1%}); "
        f"model loaded in {loaded:.1f} s, run in {elapsed:.2f} s"
    )
    report = check_reference(spec)
    click.echo(f"check   : {report.message}")
    click.echo(
        "next    : deepimagej info bundles/unet-pancreatic | deepimagej run bundles/unet-pancreatic IMAGE.tif -o OUT.tif"
    )
    click.echo(
        "          deepimagej macro macros/pancreatic_pipeline.ijm --image IMAGE.tif -o labels.tif  "
        "(the bundle's own ImageJ macros, in ImageJ)"
    )


def default_models_dir() -> Path:
    """The first models folder (:func:`deepimagej.paths.models_folders`), else where models are installed."""
    from deepimagej.paths import USER_MODELS, models_folders

    found = models_folders()
    return found[0] if found else USER_MODELS


# Commands that live with their subsystem; their modules import nothing heavy (TensorFlow, Java, SSH
# load when a command runs).
from deepimagej.imagej.cli import macro_command  # noqa: E402
from deepimagej.imagej.plugin.cli import imagej_cmd, install_plugin_cmd, worker_cmd  # noqa: E402
from deepimagej.remote.cli import jobs, remote  # noqa: E402
from deepimagej.unet.cli import evaluate, train  # noqa: E402

for _command in (macro_command, train, evaluate, remote, jobs, install_plugin_cmd, worker_cmd, imagej_cmd):
    main.add_command(_command)
main.add_command(trust_cmd, "trust")

if __name__ == "__main__":
    main()
