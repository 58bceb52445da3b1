"""Train the ISBI 2012 EM U-Net and export it as ``bundles/isbi2012-em-unet`` (``make models``).

Data: ``../shared/assets/isbi2012_em/train`` (images 0-23, 512x512 8-bit; labels 255 = cell
interior, 0 = membrane). Images 0-19 train the network, 20-23 are held out for validation
(best-model selection) and for the final evaluation printed at the end.

Network: 2D U-Net (Falk et al. 2019), depth 3, 16 base features (0.48 M parameters, a few MB),
same padding (exported with a 48 px halo). Loss: soft-max cross-entropy with the class-balancing
weights of the paper; the instance-separation term is switched off (``lam = 0``): the task is
the semantic membrane / interior segmentation scored by pixel accuracy and foreground IoU, cells
are already separated by the annotated membranes, and the separation weight (up to 50x on every
thin membrane) would bias the probabilities toward membrane.

Checkpoints go to ``runs/isbi2012-em-unet`` (git-ignored: the training config, Keras' backup, the
best weights, ``state.json`` and ``validation_curve.png``); running the script again resumes (and,
when training is complete, only re-exports and re-evaluates). ``--fresh`` restarts; ``--seed``
draws other initial weights and tiles (run-to-run noise).
Results: ``benchmarks/results/isbi2012_unet_history.csv`` (learning curve) and
``benchmarks/results/isbi2012_unet_eval.csv`` (held-out measures).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
ASSETS = REPO.parent / "shared" / "assets" / "isbi2012_em"
BUNDLE = REPO / "bundles" / "isbi2012-em-unet"
RUN = REPO / "runs" / "isbi2012-em-unet"
RESULTS = REPO / "benchmarks" / "results"
TRAIN_IDS = list(range(20))
VAL_IDS = [20, 21, 22, 23]


def pairs(ids):
    return [(ASSETS / "train" / "image" / f"{i}.png", ASSETS / "train" / "label" / f"{i}.png") for i in ids]


def load(ids, **kw):
    from deepimagej.unet.files import load_image
    from deepimagej.unet.samples import prepare_sample
    from deepimagej.unet.targets import load_mask

    return [
        prepare_sample(
            load_image(i), load_mask(lab, mode="semantic"), image_name=i.name, labels_name=lab.name, **kw
        )
        for i, lab in pairs(ids)
    ]


def write_history(history, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ["epoch", "step", "loss", "val_loss", "val_accuracy", "val_iou", "elapsed_s"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for h in history:
            w.writerow(
                [
                    h.get(k) if h.get(k) is None else (f"{h[k]:.5f}" if isinstance(h[k], float) else h[k])
                    for k in keys
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=36)
    parser.add_argument("--lr-drop", type=int, nargs="*", default=[31], help="epochs from which lr /= 10")
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="initial weights, tiles and augmentation")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--out", type=Path, default=BUNDLE, help="bundle folder to write")
    parser.add_argument("--run", type=Path, default=RUN, help="checkpoint folder")
    parser.add_argument("--results", type=Path, default=RESULTS, help="CSV folder")
    args = parser.parse_args()
    if not ASSETS.is_dir():
        sys.exit(f"error: {ASSETS} not found")

    from deepimagej.unet.config import TrainingConfig
    from deepimagej.unet.evaluate import append_to_readme, evaluate_pairs, mean_row, write_csv
    from deepimagej.unet.export import export_training
    from deepimagej.unet.files import load_image
    from deepimagej.unet.train import train

    weight_kw = {"lam": 0.0}
    train_samples, val_samples = load(TRAIN_IDS, **weight_kw), load(VAL_IDS, **weight_kw)
    config = TrainingConfig(
        lam=0.0,
        depth=3,
        base_features=16,
        padding="same",
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        tile=args.tile,
        batch_size=1,
        learning_rate=args.lr,
        lr_drop_epochs=tuple(args.lr_drop),
        seed=args.seed,
    )
    start = time.perf_counter()
    result = train(train_samples, config, val_samples=val_samples, out_dir=args.run, resume=not args.fresh)
    export_training(
        result,
        args.out,
        name="ISBI 2012 EM membrane U-Net (deepimagej)",
        description="2D U-Net (Falk et al. 2019) segmenting neuronal membranes / cell interiors in "
        "serial-section TEM (ISBI 2012 challenge data, Arganda-Carreras et al. 2015; images from "
        "zhixuhao/unet, MIT). Output: class probabilities (0 membrane, 1 cell interior).",
        # a 256 x 256 crop keeps the bundle small (the result is 2 float32 channels)
        example_image=load_image(pairs([VAL_IDS[0]])[0][0])[128:384, 128:384],
        tags=("electron-microscopy", "membrane", "isbi2012"),
    )
    wall = time.perf_counter() - start
    train_time = result.history[-1]["elapsed_s"]
    print(
        f"training time {train_time:.0f} s ({train_time / 60:.1f} min; this call {wall:.0f} s); "
        f"best val loss {result.best_val_loss:.4f} at epoch {result.best_epoch}"
    )
    write_history(result.history, args.results / "isbi2012_unet_history.csv")
    rows = evaluate_pairs(args.out, pairs(VAL_IDS))
    rows.append(mean_row(rows))
    write_csv(rows, args.results / "isbi2012_unet_eval.csv")
    append_to_readme(
        args.out,
        rows,
        "Held-out evaluation (images 20-23, not used for training)",
        f"Threshold 0.5 on the foreground probability, 8-connected components. Training time "
        f"{train_time / 60:.1f} min on a 2-core CPU (scripts/train_isbi.py).",
    )
    for r in rows:
        print(
            f"{r['image']:>8}  pixel acc {r['pixel_accuracy']:.4f}  fg IoU {r['foreground_iou']:.4f}  "
            f"object IoU {r['object_iou']:.4f}  SEG {r['seg']:.4f}"
        )


if __name__ == "__main__":
    main()
