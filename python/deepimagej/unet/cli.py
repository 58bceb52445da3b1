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
from typing import Any

import click

from deepimagej.cli_errors import friendly_errors


def _progress(info: dict[str, Any]) -> None:
    eta = info["eta_s"]
    click.echo(
        f"epoch {info['epoch']:>3}/{info['epochs']}  loss {info['loss']:.4f}  val loss {info['val_loss']:.4f}  "
        f"val acc {info['val_accuracy']:.4f}  val IoU {info['val_iou']:.4f}"
        f"{'  (best)' if info['best'] else ''}  {info['elapsed_s']:.0f} s, ETA {eta // 60:.0f} min {eta % 60:.0f} s"
    )


@click.command("train")
@click.option("--images", type=click.Path(path_type=Path), required=True, help="Image folder (or one image file).")
@click.option("--labels", type=click.Path(path_type=Path), help="Label masks (folder, matched by file name, or one file).")
@click.option("--rois", type=click.Path(path_type=Path), help="ImageJ ROIs: RoiSet.zip / .roi per image (folder) or one file.")
@click.option("--points", type=click.Path(path_type=Path), help="Multi-point ROIs (one point per object) for detection.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Bundle folder to write.")
@click.option("--work", type=click.Path(path_type=Path), help="Checkpoint folder (default: OUT-training next to OUT).")
@click.option("--from", "from_bundle", type=click.Path(path_type=Path), help="Fine-tune this bundle's U-Net.")
@click.option("--epochs", type=int, default=10, show_default=True, help="Epochs (validation + checkpoint after each).")
@click.option("--steps", type=int, default=50, show_default=True, help="Training steps per epoch.")
@click.option("--tile", type=int, default=256, show_default=True, help="Training tile size (pixels per axis).")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--val", "n_val", type=int, default=None, help="Images held out for validation (default 1, or 20 %).")
@click.option("--detection", is_flag=True, help="Detection: one point per object (disks + ignore rings).")
@click.option("--3d", "three_d", is_flag=True, help="3D volumes (z, y, x) and a 3D U-Net.")
@click.option("--element-size", help="3D voxel size z,y,x (e.g. 2,0.5,0.5): 2D operations at anisotropic levels.")
@click.option("--depth", type=int, default=3, show_default=True, help="U-Net depth (poolings).")
@click.option("--features", type=int, default=16, show_default=True, help="Features at the first level.")
@click.option("--padding", type=click.Choice(["same", "valid"]), default="same", show_default=True)
@click.option("--separation", "lam", type=float, default=None,
              help="lambda of the separation weight [default: 50 (the paper) for segmentation, 0 for detection].")
@click.option("--radius", type=float, default=3.0, show_default=True, help="Detection disk radius (px).")
@click.option("--r-ign", type=float, default=6.0, show_default=True, help="Detection ignore-ring radius (px).")
@click.option("--border", type=click.Choice(["mirror", "zeros"]), default=None,
              help="What the network sees beyond the image border [default: zeros for detection (objects cut by "
                   "the border keep their own centre), mirror for segmentation].")
@click.option("--downsample", type=int, default=1, show_default=True,
              help="2D: run the U-Net at 1/N of the image resolution (N = 2, 4: N times the receptive field, for "
                   "objects larger than it).")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation in the exported bundle: average the prediction over the 8 "
                   "rotations/reflections (8x slower, steadier).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fresh", is_flag=True, help="Start over even if the checkpoint folder holds a checkpoint.")
@click.option("--name", help="Model name in the bundle.")
@click.option("--host", help="Train on this server as a job (deepimagej remote add NAME ...); the bundle comes back to OUT.")
@click.option("--detach", is_flag=True, help="With --host: return at once with the job id (deepimagej jobs).")
@friendly_errors
def train(images: Path, labels: Path | None, rois: Path | None, points: Path | None, out_dir: Path,
          work: Path | None, from_bundle: Path | None, epochs: int, steps: int, tile: int, batch_size: int,
          lr: float, n_val: int | None, detection: bool, three_d: bool, element_size: str | None, depth: int,
          features: int, padding: str, lam: float | None, radius: float, r_ign: float, border: str | None,
          downsample: int, tta: bool, seed: int, fresh: bool, name: str | None, host: str | None = None,
          detach: bool = False) -> None:
    """Train (or fine-tune with --from) a U-Net on annotated images and export it as a bundle."""
    if host:  # the same training on a server, as a job (deepimagej.remote); checkpoints stay in the job
        from deepimagej.remote.cli import forwarded_options, remote_train

        uploads = {"--images": images, "--labels": labels, "--rois": rois, "--points": points, "--from": from_bundle}
        return remote_train(host, uploads, out_dir, forwarded_options(exclude=(
            "images", "labels", "rois", "points", "from_bundle", "out_dir", "work", "fresh")), detach)
    from deepimagej.errors import TrainingError
    from deepimagej.unet.train import load_samples
    from deepimagej.unet.train import train as run_training
    from deepimagej.unet.weights import LAMBDA_SEP

    given = [p for p in (labels, rois, points) if p is not None]
    if len(given) != 1:
        raise TrainingError("give exactly one of --labels, --rois or --points")
    if not images.exists():
        raise TrainingError(f"{images}: no such image folder or file")
    if not given[0].exists():
        raise TrainingError(f"{given[0]}: no such annotation folder or file")
    detection = detection or points is not None
    ndim = 3 if three_d else 2
    anisotropy = None
    if element_size:
        try:
            anisotropy = tuple(float(v) for v in element_size.split(","))
        except ValueError:
            raise TrainingError(f"--element-size '{element_size}': expected z,y,x numbers, e.g. 2,0.5,0.5") from None
        if len(anisotropy) != 3:
            raise TrainingError(f"--element-size '{element_size}': give three sizes z,y,x")
    if lam is None:
        lam = 0.0 if detection else LAMBDA_SEP
    prepare_kw = {"lam": lam}
    samples = load_samples(images, given[0], ndim=ndim, detection=detection, radius=radius, r_ign=r_ign,
                           prepare_kw=prepare_kw)
    click.echo(f"{len(samples)} annotated image(s) from {images}")
    work = work or out_dir.with_name(out_dir.name + "-training")
    start = time.perf_counter()
    result = run_training(
        samples, out_dir=work, ndim=ndim, from_bundle=from_bundle, depth=depth, base_features=features,
        padding=padding, anisotropy=anisotropy, downsample=downsample,
        border=border or ("zeros" if detection else "mirror"), epochs=epochs, steps_per_epoch=steps, tile=tile,
        batch_size=batch_size, learning_rate=lr, n_val=n_val, seed=seed, resume=not fresh, progress=_progress,
        bundle_dir=out_dir,
        export_kw={"name": name or out_dir.name, "kind": "detection" if detection else "segmentation",
                   "test_time_augmentation": tta},
    )
    click.echo(
        f"best validation loss {result.best_val_loss:.4f} (epoch {result.best_epoch}); "
        f"{time.perf_counter() - start:.0f} s; bundle: {result.bundle_path}; checkpoints: {work}"
    )


@click.command("evaluate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), required=True, help="Image folder (or one image).")
@click.option("--labels", type=click.Path(path_type=Path), required=True,
              help="Ground truth: label masks / ROI files (folder or one file); points for --detection.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the table as CSV.")
@click.option("--detection", is_flag=True, help="Score detections (F1) instead of segmentation.")
@click.option("--threshold", type=float, default=None,
              help="Foreground probability threshold [default: 0.5; detection: the bundle's own].")
@click.option("--d-match", type=float, default=5.0, show_default=True, help="Detection matching distance (px).")
@friendly_errors
def evaluate(bundle: Path, images: Path, labels: Path, csv_path: Path | None, detection: bool,
             threshold: float | None, d_match: float) -> None:
    """Score BUNDLE on annotated images: pixel accuracy, foreground IoU, object IoU, SEG (or detection F1)."""
    from deepimagej.bundle import load_bundle
    from deepimagej.unet.evaluate import DETECTION_COLUMNS, SEGMENTATION_COLUMNS, evaluate_bundle

    spec = load_bundle(bundle)
    if not detection and "detection" in spec.tags:
        detection = True
    rows = evaluate_bundle(spec, images, labels, detection=detection, threshold=threshold, d_match=d_match,
                           csv=csv_path)
    columns = DETECTION_COLUMNS if detection else SEGMENTATION_COLUMNS
    width = max(12, *(len(str(r["image"])) for r in rows))
    click.echo(f"{'image':<{width}}  " + "  ".join(f"{c:>14}" for c in columns))
    for r in rows:
        click.echo(f"{r['image']!s:<{width}}  " + "  ".join(f"{r[c]:>14.4f}" for c in columns))
    if csv_path:
        click.echo(f"written {csv_path}")
