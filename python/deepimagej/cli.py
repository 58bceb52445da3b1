"""The ``deepimagej`` command line: run | test | info | list | build | demo (+ macro, train, evaluate).

Errors a user can cause are printed as one line (``error: ...``) with exit status 2;
library tracebacks are never shown for them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from deepimagej.cli_errors import friendly_errors
from deepimagej.errors import DeepImageJError

REPO_ROOT = Path(__file__).resolve().parents[2]


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
        return {a: numbers[0] for a in spatial}
    axes = spatial[-len(numbers):] if len(numbers) <= len(spatial) else None
    if axes is None:
        raise DeepImageJError(f"--tile '{value}': {len(numbers)} sizes for {len(spatial)} spatial axes ({spatial})")
    return dict(zip(axes, numbers))


class _Progress:
    """A rich progress bar (tiles, elapsed, peak memory) shown for runs of more than one batch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._task = None

    def __call__(self, done: int, total: int, elapsed: float, rss: int) -> None:
        if not self.enabled or total <= 1:
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("tiles"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("peak {task.fields[mem]}"), transient=True, console=None,
            )
            self._bar.start()
            self._task = self._bar.add_task("run", total=total, mem="")
        self._bar.update(self._task, completed=done, mem=f"{rss / 2**20:.0f} MiB")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepimagej")
def main() -> None:
    """Run and train deep-learning image models (DeepImageJ bundles, bioimage.io models)."""


@main.command("run")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output TIFF (or .npy).")
@click.option("--tile", help="Model input size per spatial axis, e.g. 256 or 256,256 or y=256,x=512 (halo included).")
@click.option("--axes", help="Axes of the input image, e.g. yx, yxc, zyx, tyx (read from the TIFF when omitted).")
@click.option("--weights", "weights_format", help="Weights format to run: tensorflow_saved_model_bundle, keras_hdf5, onnx, torchscript.")
@click.option("--no-preprocessing", is_flag=True, help="Skip the bundle's pre-processing.")
@click.option("--no-postprocessing", is_flag=True, help="Skip the bundle's post-processing.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def run_cmd(bundle: Path, input_path: Path, output: Path, tile: str | None, axes: str | None,
            weights_format: str | None, no_preprocessing: bool, no_postprocessing: bool, quiet: bool) -> None:
    """Run BUNDLE on the image INPUT and write the result to OUTPUT."""
    from deepimagej import predict
    from deepimagej.bundle import load_bundle
    from deepimagej.io import ImageData, read_image, write_image

    spec = load_bundle(bundle)
    image = read_image(input_path)
    in_axes = axes or image.axes
    if axes is None and "c" not in in_axes and image.array.ndim == 3 and spec.inputs[0].has_axis("c"):
        in_axes = predict.guess_axes(image.array.shape, spec)
    spatial = "".join(a for a in spec.inputs[0].axis_names if a in "zyx")
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    start = time.perf_counter()
    try:
        result = predict.run(
            spec, image.array, axes=in_axes, tile=parse_tile(tile, spatial), weights_format=weights_format,
            apply_preprocessing=not no_preprocessing, apply_postprocessing=not no_postprocessing, progress=progress,
        )
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    out_axes = predict.output_axes(spec, in_axes)
    write_image(output, ImageData(result, out_axes, image.pixel_size, image.unit))
    if not quiet:
        click.echo(
            f"{spec.name}: {input_path.name} {tuple(image.array.shape)} -> {output} {tuple(result.shape)} "
            f"[{out_axes}] in {elapsed:.2f} s, peak memory {predict.peak_rss_bytes() / 2**20:.0f} MiB"
        )


@main.command("test")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--weights", "weights_format", multiple=True, help="Weights format(s) to test (default: every runnable one present).")
@click.option("--tolerance", type=float, default=None, help="Max abs difference allowed (default 1e-3).")
@friendly_errors
def test_cmd(bundle: Path, weights_format: tuple[str, ...], tolerance: float | None) -> None:
    """Run BUNDLE on its test input and compare with its reference output (exit 1 on mismatch)."""
    from deepimagej.bundle import load_bundle
    from deepimagej.check import DEFAULT_TOLERANCE, check_reference

    spec = load_bundle(bundle)
    formats = list(weights_format) or [w.format for w in spec.runnable_weights() if w.path is not None and w.path.exists()]
    if not formats:
        raise DeepImageJError(f"{spec.source}: no runnable weights file present (tensorflow, keras, onnx or torchscript)")
    failed = False
    for fmt in formats:
        report = check_reference(spec, weights_format=fmt, tolerance=tolerance or DEFAULT_TOLERANCE)
        click.echo(f"{'PASS' if report.passed else 'FAIL'} {report.message}")
        failed |= not report.passed
    sys.exit(1 if failed else 0)


@main.command("info")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--layers/--no-layers", default=True, help="Load the weights and summarise layers/operations.")
@friendly_errors
def info_cmd(bundle: Path, layers: bool) -> None:
    """Describe BUNDLE: inputs, outputs, axes, tiling, processing, weights, layers."""
    from deepimagej.bundle import load_bundle
    from deepimagej.describe import describe

    spec = load_bundle(bundle)
    for line in describe(spec, layers=layers):
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


@main.command("build")
@click.argument("weights", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Bundle folder to create.")
@click.option("--config", "config_template", type=click.Path(path_type=Path), help="DeepImageJ config.xml template.")
@click.option("--rdf", "rdf_template", type=click.Path(path_type=Path), help="bioimage.io rdf.yaml template.")
@click.option("--example", "example_image", type=click.Path(path_type=Path), help="Example image (TIFF/NPY/PNG).")
@click.option("--name", help="Model name.")
@click.option("--axes", "input_axes", help="Model input axes, e.g. byxc (default from the template, else byxc).")
@click.option("--min-size", type=int, help="Minimum tile size (spatial).")
@click.option("--step", type=int, help="Tile size step (spatial).")
@click.option("--halo", type=int, help="Halo / padding in pixels.")
@click.option("--preprocessing-macro", multiple=True, type=click.Path(path_type=Path), help="ImageJ macro(s) run before the model.")
@click.option("--postprocessing-macro", multiple=True, type=click.Path(path_type=Path), help="ImageJ macro(s) run after the model.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@friendly_errors
def build_cmd(weights: Path, out_dir: Path, config_template: Path | None, rdf_template: Path | None,
              example_image: Path | None, name: str | None, input_axes: str | None, min_size: int | None,
              step: int | None, halo: int | None, preprocessing_macro: tuple[Path, ...],
              postprocessing_macro: tuple[Path, ...], overwrite: bool) -> None:
    """Export Keras/SavedModel WEIGHTS as a runnable bundle (SavedModel + config.xml + rdf.yaml)."""
    from deepimagej.bundle.build import build_bundle

    start = time.perf_counter()
    spec = build_bundle(
        weights, out_dir, name=name, input_axes=input_axes, min_size=min_size, step=step, halo=halo,
        preprocessing_macros=list(preprocessing_macro) or None, postprocessing_macros=list(postprocessing_macro) or None,
        example_image=example_image, config_template=config_template, rdf_template=rdf_template, overwrite=overwrite,
    )
    click.echo(f"built '{spec.name}' in {out_dir} ({time.perf_counter() - start:.1f} s): {', '.join(sorted(spec.weights))}")
    if spec.sample_outputs:
        click.echo(f"example result: {spec.sample_outputs[0]}")


@main.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out"), help="Where to write the result.")
@friendly_errors
def demo_cmd(out_dir: Path) -> None:
    """Run the shipped pancreatic-cell U-Net bundle on its example image."""
    from deepimagej import predict
    from deepimagej.bundle import load_bundle
    from deepimagej.check import check_reference
    from deepimagej.io import ImageData, read_image, write_image

    bundle = REPO_ROOT / "bundles" / "unet-pancreatic"
    spec = load_bundle(bundle)
    example = read_image(spec.sample_inputs[0])
    click.echo(f"model   : {spec.name}  ({bundle})")
    click.echo(f"input   : {spec.sample_inputs[0]}  {example.array.shape} {example.array.dtype}")
    from deepimagej.engines import load_engine

    start = time.perf_counter()
    load_engine(spec.runnable_weights()[0])
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    result = predict.run(spec, example.array, axes=example.axes)
    elapsed = time.perf_counter() - start
    target = out_dir / "unet-pancreatic_result.tif"
    write_image(target, ImageData(result.astype("uint8"), predict.output_axes(spec, example.axes), example.pixel_size, example.unit))
    click.echo(f"steps   : scale_range (min-max) -> U-Net ({spec.runnable_weights()[0].format}) -> binarize 0.5")
    click.echo(f"output  : {target}  {result.shape}, {int(result.sum())} foreground pixels ({result.mean():.1%}); "
               f"model loaded in {loaded:.1f} s, run in {elapsed:.2f} s")
    report = check_reference(spec)
    click.echo(f"check   : {report.message}")
    click.echo("next    : deepimagej info bundles/unet-pancreatic | deepimagej run bundles/unet-pancreatic IMAGE.tif -o OUT.tif")
    click.echo("          deepimagej macro macros/pancreatic_pipeline.ijm --image IMAGE.tif -o labels.tif  "
               "(the bundle's own ImageJ macros, in ImageJ)")


def default_models_dir() -> Path:
    """The models folder: $DEEPIMAGEJ_MODELS, else the repository's ``bundles/``."""
    import os

    env = os.environ.get("DEEPIMAGEJ_MODELS")
    return Path(env) if env else REPO_ROOT / "bundles"


def _register_optional_commands() -> None:
    """Commands that live with their subsystem (ImageJ, U-Net) are added when importable."""
    for module, names in (("deepimagej.imagej.cli", ("macro",)), ("deepimagej.unet.cli", ("train", "evaluate"))):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        for name in names:
            command = getattr(mod, name, None) or getattr(mod, f"{name}_cmd", None) or getattr(mod, f"{name}_command", None)
            if isinstance(command, click.Command):
                main.add_command(command, name)


_register_optional_commands()

if __name__ == "__main__":
    main()
