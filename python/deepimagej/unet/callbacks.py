"""What happens after every epoch of a U-Net training: the record, the resumable state, the curve, the progress.

:class:`EpochLog` is a Keras callback. After each epoch it checks the loss is finite, appends the
epoch's record (loss, validation loss, accuracy, foreground IoU, learning rate, time) to the run's
history, writes ``state.json`` (the history, the best validation loss and its epoch) and the
validation-curve plot (``validation_curve.png``, :func:`plot_history`), calls the caller's
progress function, and stops the run once the validation loss reaches a target. The model
weights, the optimizer state and the best model are Keras' own callbacks' work
(``BackupAndRestore``, ``ModelCheckpoint``, see :mod:`deepimagej.unet.train`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepimagej.engines.tensorflow import quiet_tensorflow
from deepimagej.errors import TrainingError
from deepimagej.outputs import atomic_file, write_text_atomic

quiet_tensorflow()
import keras  # noqa: E402 - after quiet_tensorflow(), which must run first

__all__ = [
    "CURVE_FILE",
    "STATE_FILE",
    "EpochCallback",
    "EpochLog",
    "plot_history",
    "print_progress",
    "read_state",
]

#: progress(info) of training, after every epoch (not :data:`deepimagej.predict.ProgressCallback`, the
#: progress of a prediction's tiles): info has epoch, epochs, step, steps, loss, val_loss, val_accuracy, val_iou,
#: elapsed_s, eta_s, best (bool: this epoch is the best so far) and history (the records so far).
EpochCallback = Callable[[dict[str, Any]], None]

STATE_FILE = "state.json"
CURVE_FILE = "validation_curve.png"
_MEASURES = ("val_loss", "val_accuracy", "val_iou")


def print_progress(info: dict[str, Any]) -> None:
    """The default progress: one line per epoch on stdout."""
    print(
        f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['steps']} "
        f"loss {info['loss']:.4f} val_loss {info['val_loss']:.4f} val_acc {info['val_accuracy']:.4f} "
        f"val_iou {info['val_iou']:.4f}{' *' if info['best'] else ''} "
        f"[{info['elapsed_s']:.0f} s, ETA {info['eta_s']:.0f} s]",
        flush=True,
    )


def read_state(out_dir: Path) -> dict[str, Any] | None:
    """The ``state.json`` of a run folder, or ``None`` when there is none."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise TrainingError(
            f"{path}: damaged training state; delete the folder or train with resume=False"
        ) from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


def plot_history(history: list[dict[str, Any]], path: Path, title: str = "U-Net training") -> Path:
    """Write the learning curves as a PNG: losses (left), validation accuracy and IoU (right), per epoch.

    Uses matplotlib's object API (no pyplot): the caller's plotting backend is left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    trained = [h for h in history if h.get("loss") is not None]
    left.plot([h["epoch"] for h in trained], [h["loss"] for h in trained], "o-", ms=3, label="training loss")
    left.plot(epochs, [h["val_loss"] for h in history], "s-", ms=3, label="validation loss")
    best = min(history, key=lambda h: h["val_loss"])
    left.axvline(best["epoch"], color="grey", lw=0.8, ls="--", label=f"best (epoch {best['epoch']})")
    left.set_xlabel("epoch")
    left.set_ylabel("weighted cross-entropy")
    left.legend(fontsize=7)
    right.plot(epochs, [h["val_accuracy"] for h in history], "o-", ms=3, label="validation pixel accuracy")
    right.plot(epochs, [h["val_iou"] for h in history], "s-", ms=3, label="validation foreground IoU")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


class EpochLog(keras.callbacks.Callback):
    """The record, state, curve and progress of every epoch (see the module docstring).

    Args:
        out_dir: the run folder (``state.json``, ``validation_curve.png``).
        history: the records so far (epoch 0 = before training); appended to.
        best_val_loss, best_epoch: the best validation loss so far and its epoch.
        epochs, steps_per_epoch: the run's length.
        stop_at_val_loss: stop once the validation loss is at most this.
        progress: called after every epoch (:data:`EpochCallback`), or ``None``.
        architecture: the network's settings, kept in the state (a resumed run must match them).
        title: the curve's title.
    """

    def __init__(
        self,
        out_dir: Path,
        history: list[dict[str, Any]],
        best_val_loss: float,
        best_epoch: int,
        epochs: int,
        steps_per_epoch: int,
        *,
        stop_at_val_loss: float | None = None,
        progress: EpochCallback | None = None,
        architecture: dict[str, Any] | None = None,
        title: str = "U-Net training",
    ):
        super().__init__()
        self.out_dir, self.history = Path(out_dir), history
        self.best_val_loss, self.best_epoch = best_val_loss, best_epoch
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.stop_at_val_loss, self.progress, self.title = stop_at_val_loss, progress, title
        self.architecture = architecture or {}
        self.stopped_early = False
        self._started = 0.0
        self._first_epoch: int | None = None
        self._prior_elapsed = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._first_epoch is None:  # Keras' restored epoch (BackupAndRestore): drop records beyond it
            self._first_epoch = epoch
            self.history[:] = [h for h in self.history if h["epoch"] <= epoch]
            self._prior_elapsed = self.history[-1]["elapsed_s"] if self.history else 0.0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        number = epoch + 1
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at epoch {number}: lower the learning rate")
        missing = [k for k in _MEASURES if k not in logs]
        if missing:
            raise TrainingError(
                f"epoch {number} has no {', '.join(missing)}: training needs validation tiles"
            )
        elapsed = time.perf_counter() - self._started
        record = {
            "epoch": number,
            "step": number * self.steps_per_epoch,
            "loss": loss,
            **{k: float(logs[k]) for k in _MEASURES},
            "accuracy": float(logs.get("accuracy", math.nan)),
            "iou": float(logs.get("iou", math.nan)),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "elapsed_s": self._prior_elapsed + elapsed,
        }
        is_best = record["val_loss"] < self.best_val_loss
        if is_best:
            self.best_val_loss, self.best_epoch = record["val_loss"], number
        self.history.append(record)
        self.stopped_early = self.stop_at_val_loss is not None and record["val_loss"] <= self.stop_at_val_loss
        _write_json(
            self.out_dir / STATE_FILE,
            {
                "epoch": number,
                "step": number * self.steps_per_epoch,
                "history": self.history,
                "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
                "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early,
                "iterations": int(self.model.optimizer.iterations),
                "architecture": self.architecture,
            },
        )
        plot_history(self.history, self.out_dir / CURVE_FILE, self.title)
        if self.progress is not None:
            done = number - (self._first_epoch or 0)
            self.progress(
                {
                    **record,
                    "epochs": self.epochs,
                    "steps": self.epochs * self.steps_per_epoch,
                    "best": is_best,
                    "eta_s": elapsed / max(1, done) * (self.epochs - number),
                    "history": list(self.history),
                }
            )
        if self.stopped_early:
            self.model.stop_training = True
