"""Fine-tuning versus training from scratch on 2 annotated images (learning curves).

The paper's main use of the U-Net plugin is transfer learning: adapt a trained network to a
new data set from very few annotations. Here both runs see the same 2 annotated ISBI 2012
images (20 and 21, held out from the training of ``bundles/isbi2012-em-unet``) for the same
number of steps, and are validated on images 22 and 23 after every epoch:

- scratch: a new U-Net (same architecture, random weights);
- fine-tune: ``deepimagej train --from bundles/isbi2012-em-unet`` (the bundle's ``model.h5``).

Output: ``benchmarks/results/finetune_curves.csv`` (step, val loss of both) and
``benchmarks/results/finetune_curves.png``, plus the number of steps each needs to reach the
best validation loss of the scratch run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "scripts"))
BUNDLE = REPO / "bundles" / "isbi2012-em-unet"
RESULTS = REPO / "benchmarks" / "results"


def steps_to_reach(history, target: float) -> int | None:
    for h in history:
        if h["val_loss"] <= target + 1e-12:
            return int(h["step"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25, help="steps per epoch")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "finetune")
    args = parser.parse_args()

    from train_isbi import load

    from deepimagej.unet.config import TrainingConfig
    from deepimagej.unet.train import train

    train_samples, val_samples = load([20, 21], lam=0.0), load([22, 23], lam=0.0)
    config = TrainingConfig(
        lam=0.0,
        depth=3,
        base_features=16,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        tile=256,
        batch_size=1,
        learning_rate=1e-3,
        seed=1,
    )
    scratch = train(
        train_samples, config, val_samples=val_samples, out_dir=args.run / "scratch", resume=False
    )
    tuned = train(
        train_samples,
        config.updated(from_bundle=BUNDLE),
        val_samples=val_samples,
        out_dir=args.run / "finetune",
        resume=False,
    )

    target = scratch.best_val_loss
    n_scratch = steps_to_reach(scratch.history, target)
    n_tuned = steps_to_reach(tuned.history, target)
    args.results.mkdir(parents=True, exist_ok=True)
    with open(args.results / "finetune_curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["step", "scratch_val_loss", "finetune_val_loss", "scratch_val_accuracy", "finetune_val_accuracy"]
        )
        for a, b in zip(scratch.history, tuned.history):
            w.writerow(
                [
                    a["step"],
                    f"{a['val_loss']:.5f}",
                    f"{b['val_loss']:.5f}",
                    f"{a['val_accuracy']:.5f}",
                    f"{b['val_accuracy']:.5f}",
                ]
            )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=110)
    ax.plot(
        [h["step"] for h in scratch.history],
        [h["val_loss"] for h in scratch.history],
        "o-",
        label="from scratch",
    )
    ax.plot(
        [h["step"] for h in tuned.history],
        [h["val_loss"] for h in tuned.history],
        "s-",
        label="fine-tuned from isbi2012-em-unet",
    )
    ax.axhline(target, color="grey", lw=0.8, ls="--", label=f"best scratch val loss {target:.3f}")
    ax.set_xlabel("training steps (2 annotated images, 256 px tiles)")
    ax.set_ylabel("validation loss (images 22, 23)")
    ax.legend(fontsize=8)
    ax.set_title("Fine-tuning vs. scratch (ISBI 2012)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.results / "finetune_curves.png")
    print(f"scratch: best val loss {target:.4f}, reached at step {n_scratch}")
    print(
        f"fine-tune: starts at {tuned.history[0]['val_loss']:.4f}, reaches {target:.4f} at step {n_tuned}, "
        f"best {tuned.best_val_loss:.4f}"
    )


if __name__ == "__main__":
    main()
