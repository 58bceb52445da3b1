"""``deepimagej train`` and ``deepimagej evaluate``: the U-Net plugin on the command line.

Registered into the main ``deepimagej`` group by :mod:`deepimagej.cli`.

Examples::

    deepimagej train --images imgs/ --labels masks/ --out bundles/my-unet
    deepimagej train --images cell.tif --rois RoiSet.zip --out bundles/my-unet --from bundles/isbi2012-em-unet
    deepimagej train --images imgs/ --points points/ --detection --out bundles/my-detector
    deepimagej evaluate bundles/my-unet --images test_imgs/ --labels test_masks/ --csv scores.csv
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deepimagej.cli_errors import friendly_errors
from deepimagej.errors import TrainingError

if TYPE_CHECKING:
    from deepimagej.unet.config import TrainingConfig

# the training and evaluation modules (SciPy, the predictor, TensorFlow) load when a command runs, so
# that every other deepimagej command starts fast


def _progress(info: dict[str, Any]) -> None:
    eta = info["eta_s"]
    click.echo(
        f"epoch {info['epoch']:>3}/{info['epochs']}  loss {info['loss']:.4f}  val loss {info['val_loss']:.4f}  "
        f"val acc {info['val_accuracy']:.4f}  val IoU {info['val_iou']:.4f}"
        f"{'  (best)' if info['best'] else ''}  {info['elapsed_s']:.0f} s, ETA {eta // 60:.0f} min {eta % 60:.0f} s"
    )


def _numbers(text: str | None, option: str, example: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise TrainingError(
            f"{option} '{text}': expected numbers separated by commas, e.g. {example}"
        ) from None


@click.command("train")
@click.option(
    "--images", type=click.Path(path_type=Path), required=True, help="Image folder (or one image file)."
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Label masks (folder, matched by file name, or one file).",
)
@click.option(
    "--rois",
    type=click.Path(path_type=Path),
    help="ImageJ ROIs: RoiSet.zip / .roi per image (folder) or one file.",
)
@click.option(
    "--points", type=click.Path(path_type=Path), help="Multi-point ROIs (one point per object) for detection."
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Bundle folder to write."
)
@click.option(
    "--work", type=click.Path(path_type=Path), help="Checkpoint folder (default: OUT-training next to OUT)."
)
@click.option("--from", "from_bundle", type=click.Path(path_type=Path), help="Fine-tune this bundle's U-Net.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Start from the settings of a config.json (a run's checkpoint folder); options given here win.",
)
@click.option(
    "--epochs", type=int, default=10, show_default=True, help="Epochs (validation + checkpoint after each)."
)
@click.option("--steps", type=int, default=50, show_default=True, help="Training steps per epoch.")
@click.option(
    "--tile", type=int, default=256, show_default=True, help="Training tile size (pixels per axis)."
)
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option(
    "--lr-drop", default="", help="Epochs from which the learning rate is divided by 10, e.g. 30,40."
)
@click.option(
    "--val", "n_val", type=int, default=None, help="Images held out for validation (default 1, or 20 %)."
)
@click.option("--detection", is_flag=True, help="Detection: one point per object (disks + ignore rings).")
@click.option(
    "--classes",
    "n_classes",
    type=int,
    default=2,
    show_default=True,
    help="Classes with the background: more than 2 makes label values (or ROI names) classes.",
)
@click.option(
    "--class-names", default="", help="Names of the classes 1, 2, ... (ROI names), e.g. nucleus,cytoplasm."
)
@click.option(
    "--ignore-label",
    type=int,
    default=None,
    help="Label value of regions to ignore (weight 0). ROIs named 'ignore' are always ignored.",
)
@click.option("--3d", "three_d", is_flag=True, help="3D volumes (z, y, x) and a 3D U-Net.")
@click.option(
    "--element-size",
    help="The model's pixel size in micrometres: one number, y,x, or z,y,x for --3d (e.g. 2,0.5,0.5). "
    "Calibrated images are resampled to it, in training and at inference; 3D: 2D operations at "
    "anisotropic levels.",
)
@click.option("--depth", type=int, default=3, show_default=True, help="U-Net depth (poolings).")
@click.option("--features", type=int, default=16, show_default=True, help="Features at the first level.")
@click.option("--padding", type=click.Choice(["same", "valid"]), default="same", show_default=True)
@click.option(
    "--separation",
    "lam",
    type=float,
    default=None,
    help="lambda of the separation weight [default: 50 (the paper) for segmentation, 0 for detection].",
)
@click.option("--radius", type=float, default=3.0, show_default=True, help="Detection disk radius (px).")
@click.option(
    "--r-ign", type=float, default=6.0, show_default=True, help="Detection ignore-ring radius (px)."
)
@click.option(
    "--border",
    type=click.Choice(["mirror", "zeros"]),
    default=None,
    help="What the network sees beyond the image border [default: zeros for detection (objects cut by "
    "the border keep their own centre), mirror for segmentation].",
)
@click.option(
    "--downsample",
    type=int,
    default=1,
    show_default=True,
    help="2D: run the U-Net at 1/N of the image resolution (N = 2, 4: N times the receptive field, for "
    "objects larger than it).",
)
@click.option(
    "--tta",
    is_flag=True,
    help="Test-time augmentation in the exported bundle: average the prediction over the 8 "
    "rotations/reflections (8x slower, steadier).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fresh", is_flag=True, help="Start over even if the checkpoint folder holds a checkpoint.")
@click.option("--name", help="Model name in the bundle.")
@click.option(
    "--host",
    help="Train on this server as a job (deepimagej remote add NAME ...); the bundle comes back to OUT.",
)
@click.option("--detach", is_flag=True, help="With --host: return at once with the job id (deepimagej jobs).")
@click.pass_context
@friendly_errors
def train(
    ctx: click.Context,
    images: Path,
    labels: Path | None,
    rois: Path | None,
    points: Path | None,
    out_dir: Path,
    work: Path | None,
    from_bundle: Path | None,
    config_file: Path | None,
    fresh: bool,
    tta: bool,
    name: str | None,
    host: str | None,
    detach: bool,
    **options: Any,
) -> None:
    """Train (or fine-tune with --from) a U-Net on annotated images and export it as a bundle."""
    if host:  # the same training on a server, as a job (deepimagej.remote); checkpoints stay in the job
        from deepimagej.remote.cli import forwarded_options, remote_train

        uploads = {
            "--images": images,
            "--labels": labels,
            "--rois": rois,
            "--points": points,
            "--from": from_bundle,
            "--config": config_file,
        }
        return remote_train(
            host,
            uploads,
            out_dir,
            forwarded_options(
                exclude=(
                    "images",
                    "labels",
                    "rois",
                    "points",
                    "from_bundle",
                    "config_file",
                    "out_dir",
                    "work",
                    "fresh",
                )
            ),
            detach,
        )
    # TensorFlow loads with the training modules, not with every deepimagej command
    from deepimagej.unet.export import export_training
    from deepimagej.unet.samples import load_samples
    from deepimagej.unet.train import train as run_training

    given = [p for p in (labels, rois, points) if p is not None]
    if len(given) != 1:
        raise TrainingError("give exactly one of --labels, --rois or --points")
    if not images.exists():
        raise TrainingError(f"{images}: no such image folder or file")
    if not given[0].exists():
        raise TrainingError(f"{given[0]}: no such annotation folder or file")
    config = _config(
        ctx, options, config_file, from_bundle, detection=options["detection"] or points is not None
    )
    samples = load_samples(images, given[0], config)
    click.echo(f"{len(samples)} annotated image(s) from {images}")
    work = work or out_dir.with_name(out_dir.name + "-training")
    start = time.perf_counter()
    result = run_training(samples, config, out_dir=work, resume=not fresh, progress=_progress)
    export_training(result, out_dir, name=name or out_dir.name, test_time_augmentation=tta)
    click.echo(
        f"best validation loss {result.best_val_loss:.4f} (epoch {result.best_epoch}); "
        f"{time.perf_counter() - start:.0f} s; bundle: {out_dir}; checkpoints and learning curve: {work}"
    )


#: ``deepimagej train`` options that are :class:`TrainingConfig` fields under another name.
_OPTION_FIELDS = {
    "steps": "steps_per_epoch",
    "lr": "learning_rate",
    "features": "base_features",
    "detection": "task",
    "three_d": "ndim",
    "lr_drop": "lr_drop_epochs",
}


def _config(
    ctx: click.Context,
    options: dict[str, Any],
    config_file: Path | None,
    from_bundle: Path | None,
    detection: bool,
) -> TrainingConfig:
    """The training config: the options, or a config.json with the options given on the command line."""
    from deepimagej.unet.config import TrainingConfig

    values = {_OPTION_FIELDS.get(option, option): value for option, value in options.items()}
    values.update(
        task="detection" if detection else "segmentation",
        ndim=3 if options["three_d"] else 2,
        class_names=tuple(n.strip() for n in options["class_names"].split(",") if n.strip()),
        element_size=_numbers(options["element_size"], "--element-size", "2,0.5,0.5"),
        lr_drop_epochs=tuple(int(v) for v in _numbers(options["lr_drop"], "--lr-drop", "30,40") or ()),
        from_bundle=str(from_bundle) if from_bundle else None,
    )
    if config_file is None:
        return TrainingConfig(**values)
    given = {
        _OPTION_FIELDS.get(option, option)
        for option in options
        if ctx.get_parameter_source(option) == click.core.ParameterSource.COMMANDLINE
    }
    given |= {"task"} if detection else set()
    given |= {"from_bundle"} if from_bundle else set()
    return TrainingConfig.load(config_file).updated(**{field: values[field] for field in given})


@click.command("evaluate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), required=True, help="Image folder (or one image).")
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    required=True,
    help="Ground truth: label masks / ROI files (folder or one file); points for --detection.",
)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the table as CSV.")
@click.option("--detection", is_flag=True, help="Score detections (F1) instead of segmentation.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Foreground probability threshold [default: 0.5; detection: the bundle's own].",
)
@click.option(
    "--d-match", type=float, default=5.0, show_default=True, help="Detection matching distance (px)."
)
@friendly_errors
def evaluate(
    bundle: Path,
    images: Path,
    labels: Path,
    csv_path: Path | None,
    detection: bool,
    threshold: float | None,
    d_match: float,
) -> None:
    """Score BUNDLE on annotated images: pixel accuracy, foreground IoU, object IoU, SEG (or detection F1)."""
    from deepimagej.bundle import load_bundle
    from deepimagej.unet.evaluate import DETECTION_COLUMNS, SEGMENTATION_COLUMNS, evaluate_bundle

    spec = load_bundle(bundle)
    if not detection and "detection" in spec.tags:
        detection = True
    rows = evaluate_bundle(
        spec, images, labels, detection=detection, threshold=threshold, d_match=d_match, csv=csv_path
    )
    columns = DETECTION_COLUMNS if detection else SEGMENTATION_COLUMNS
    width = max(12, *(len(str(r["image"])) for r in rows))
    click.echo(f"{'image':<{width}}  " + "  ".join(f"{c:>14}" for c in columns))
    for r in rows:
        click.echo(f"{r['image']!s:<{width}}  " + "  ".join(f"{r[c]:>14.4f}" for c in columns))
    if csv_path:
        click.echo(f"written {csv_path}")
