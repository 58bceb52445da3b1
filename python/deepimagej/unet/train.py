"""Training and fine-tuning of the U-Net (Falk et al. 2019) with Keras ``fit``.

:func:`train` takes annotated images (:class:`~deepimagej.unet.samples.TrainingSample` objects,
``(image, labels)`` pairs or folders) and a :class:`~deepimagej.unet.config.TrainingConfig`,
splits off validation images, and optimises the weighted soft-max cross-entropy
(:class:`~deepimagej.unet.loss.WeightedCrossEntropy`) with Adam on tiles drawn and augmented on
the fly (:class:`~deepimagej.unet.dataset.TrainingTiles`, a ``keras.utils.PyDataset``). After
every epoch Keras measures the loss, pixel accuracy and foreground IoU on fixed validation tiles,
and the callbacks do the rest:

* ``ModelCheckpoint`` keeps the weights with the lowest validation loss (best-model selection):
  ``out_dir/best.weights.h5``;
* ``BackupAndRestore`` backs up the weights, Adam's state and the epoch: ``out_dir/backup/``;
  calling :func:`train` again with the same ``out_dir`` continues where it stopped;
* ``LearningRateScheduler``: the learning rate divided by 10 from each of ``lr_drop_epochs``;
* :class:`~deepimagej.unet.callbacks.EpochLog`: ``out_dir/state.json`` (history, best epoch),
  ``out_dir/validation_curve.png`` and the progress function.

``out_dir/config.json`` holds the config; a resumed run must train the same network.
Fine-tuning (``from_bundle``) starts from the Keras copy (``model.h5``) that every bundle
exported by :mod:`deepimagej.unet.export` carries, which is the paper's main use: adapt a trained
U-Net to new data from one or two annotated images. Export the result with
:func:`deepimagej.unet.export.export_training`.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.bundle import load_bundle
from deepimagej.engines.tensorflow import quiet_tensorflow
from deepimagej.errors import TrainingError
from deepimagej.unet.callbacks import STATE_FILE, EpochCallback, EpochLog, print_progress, read_state
from deepimagej.unet.config import TrainingConfig
from deepimagej.unet.dataset import TrainingTiles, normalized_images, validation_tiles
from deepimagej.unet.files import split_validation
from deepimagej.unet.loss import ForegroundIoU, PixelAccuracy, WeightedCrossEntropy
from deepimagej.unet.model import build_unet, infer_config, load_bundle_model, same_shape, valid_shapes
from deepimagej.unet.samples import TrainingSample, as_samples, image_channels

quiet_tensorflow()
import keras  # noqa: E402 - after quiet_tensorflow(), which must run first

__all__ = ["BACKUP_DIR", "BEST_FILE", "CONFIG_FILE", "TrainResult", "train"]

CONFIG_FILE = "config.json"
BEST_FILE = "best.weights.h5"
BACKUP_DIR = "backup"
#: Validation tiles per model call.
VALIDATION_BATCH = 4


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the Keras model with the best weights (lowest validation loss).
        history: one dict per epoch (epoch, step, loss, val_loss, val_accuracy, val_iou,
            learning_rate, elapsed_s); epoch 0 is the network before training.
        best_val_loss: the lowest validation loss reached.
        best_epoch: the epoch it was reached at.
        config: the training config (with the pre-processing actually used).
        out_dir: the folder with checkpoints, ``state.json`` and the curve.
        elapsed_s: training time of this call (resumed runs: this call only).
        tile: the output tile shape trained on.
        n_train: training images.
        val_samples: the validation images (an exported bundle takes its example and, for
            detection, its peak settings from them).
    """

    model: Any
    history: list[dict[str, Any]]
    best_val_loss: float
    best_epoch: int
    config: TrainingConfig
    out_dir: Path
    elapsed_s: float = 0.0
    tile: tuple[int, ...] = ()
    n_train: int = 0
    val_samples: list[TrainingSample] = field(default_factory=list)


def _split(
    samples: list[TrainingSample], val_samples: Sequence[Any] | None, config: TrainingConfig
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    if val_samples is None:
        n_val = (
            config.n_val
            if config.n_val is not None
            else (1 if len(samples) < 10 else max(1, len(samples) // 5))
        )
        train_list, val_list = split_validation(samples, n_val)
    else:
        train_list, val_list = samples, as_samples(list(val_samples), config)
    if not train_list:
        raise TrainingError("no training images left after the validation split")
    if not val_list:
        raise TrainingError("no validation images: give at least 2 annotated images or val_samples")
    return list(train_list), list(val_list)


def _initial_model(config: TrainingConfig) -> tuple[Any, TrainingConfig]:
    """The network to train, and the config with the pre-processing it must be trained with."""
    if config.from_bundle is None:
        keras.utils.set_random_seed(config.seed)
        model = build_unet(
            config.ndim,
            config.n_classes,
            config.depth,
            config.base_features,
            config.padding,
            1,
            config.anisotropy,
            downsample=config.downsample,
        )
        return model, config
    source = Path(config.from_bundle)
    model = load_bundle_model(source)
    arch = infer_config(model)
    if arch["ndim"] != config.ndim:
        raise TrainingError(f"{source}: a {arch['ndim']}D U-Net cannot be fine-tuned on {config.ndim}D data")
    if arch["n_classes"] != config.n_classes:
        raise TrainingError(
            f"{source}: the model has {arch['n_classes']} classes, the data {config.n_classes}"
        )
    model.unet_config = arch
    if source.is_dir():  # the bundle's own pre-processing: what the network was trained with
        steps = load_bundle(source).inputs[0].processing
        config = config.updated(
            preprocessing=tuple({"name": s.name, "kwargs": dict(s.kwargs)} for s in steps)
        )
    return model, config


def _architecture(model: Any) -> dict[str, Any]:
    arch = dict(model.unet_config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in arch.items()}


def _tile_shapes(
    config: TrainingConfig, arch: dict[str, Any], samples: list[TrainingSample]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    want = config.tile_shape()
    if arch["padding"] == "same":
        smallest = np.min([s.classes.shape for s in samples], axis=0)
        want = tuple(min(w, int(m)) for w, m in zip(want, smallest))
        shape = same_shape(want, arch["depth"], arch["anisotropy"], arch.get("downsample", 1))
        return shape, shape
    return valid_shapes(want, arch["depth"], arch["anisotropy"])


def _prepare_out_dir(out_dir: Path, arch: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """The state of a run to resume (checked to train the same network), or ``None`` for a fresh run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(out_dir) if resume else None
    if state is not None:
        if state.get("architecture") != arch:
            raise TrainingError(
                f"{out_dir}: holds a checkpoint of a different network; use another out_dir or resume=False"
            )
        return state
    for name in (STATE_FILE, BEST_FILE, CONFIG_FILE):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
    return None


def train(
    data: Any,
    config: TrainingConfig | None = None,
    *,
    out_dir: str | Path,
    val_samples: Sequence[Any] | None = None,
    resume: bool = True,
    progress: EpochCallback | None = print_progress,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train (or fine-tune) a U-Net.

    Args:
        data: training images with annotations: a list of :class:`TrainingSample`
            (:func:`deepimagej.unet.samples.prepare_sample`) or of ``(image, labels[, ignore])``
            tuples, a pair ``(images_dir, labels_dir)``, or a folder with ``images`` and ``labels``.
        config: the settings (:class:`TrainingConfig`; its defaults when omitted).
        out_dir: folder for checkpoints, ``config.json``, ``state.json`` and the curve (created).
        val_samples: explicit validation images; else ``config.n_val`` images are split off
            (:func:`deepimagej.unet.files.split_validation`).
        resume: continue from the checkpoint in ``out_dir`` if there is one; ``False`` starts over.
        progress: called after every epoch with a dict (:data:`~deepimagej.unet.callbacks.EpochCallback`);
            ``None`` for silence. The default prints one line per epoch.
        callbacks: more Keras callbacks for ``fit``.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingError: unusable data or settings (too few images for validation, sizes, classes...).
    """
    config = config or TrainingConfig()
    out_dir = Path(out_dir)
    samples = as_samples(data, config)
    train_list, val_list = _split(samples, val_samples, config)
    model, config = _initial_model(config)
    arch = _architecture(model)
    channels = image_channels([*train_list, *val_list], config.ndim)
    if channels != arch["in_channels"]:
        raise TrainingError(f"the images have {channels} channel(s), the model takes {arch['in_channels']}")
    in_shape, out_shape = _tile_shapes(config, arch, train_list)
    state = _prepare_out_dir(out_dir, arch, resume)
    config.save(out_dir / CONFIG_FILE)

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=WeightedCrossEntropy(),
        metrics=[PixelAccuracy(), ForegroundIoU()],
        jit_compile=False,
    )
    model.optimizer.build(model.trainable_variables)  # so that every weights file holds Adam's state
    vx, vy = validation_tiles(val_list, normalized_images(val_list, config), config, in_shape, out_shape)
    if state is None:  # the starting point of the learning curves
        start = model.evaluate(vx, vy, batch_size=VALIDATION_BATCH, verbose=0, return_dict=True)
        start_loss = float(start["loss"])
        history = [
            {
                "epoch": 0,
                "step": 0,
                "loss": None,
                "val_loss": start_loss,
                "val_accuracy": float(start["accuracy"]),
                "val_iou": float(start["iou"]),
                "elapsed_s": 0.0,
            }
        ]
        best_val, best_epoch = (start_loss, 0) if config.from_bundle else (math.inf, 0)
        if config.from_bundle:  # fine-tuning must beat the network it starts from
            model.save_weights(str(out_dir / BEST_FILE))
    else:
        history = state["history"]
        best_val = math.inf if state.get("best_val_loss") is None else float(state["best_val_loss"])
        best_epoch = int(state.get("best_epoch", 0))
    done = int(state["epoch"]) if state else 0

    log = EpochLog(
        out_dir,
        history,
        best_val,
        best_epoch,
        config.epochs,
        config.steps_per_epoch,
        stop_at_val_loss=config.stop_at_val_loss,
        progress=progress,
        architecture=arch,
    )
    drops = tuple(config.lr_drop_epochs)
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: config.learning_rate * 0.1 ** sum(1 for e in drops if epoch + 1 >= e)
    )
    best = keras.callbacks.ModelCheckpoint(
        str(out_dir / BEST_FILE),
        monitor="val_loss",
        mode="min",
        save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=best_val if math.isfinite(best_val) else None,
    )
    backup = keras.callbacks.BackupAndRestore(str(out_dir / BACKUP_DIR), delete_checkpoint=False)
    tiles = TrainingTiles(
        train_list,
        normalized_images(train_list, config),
        config,
        in_shape,
        out_shape,
        first_step=done * config.steps_per_epoch,
    )
    started = time.perf_counter()
    model.fit(
        tiles,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        validation_data=(vx, vy),
        validation_batch_size=VALIDATION_BATCH,
        # the log (and the progress line a user or a job's supervisor sees) after the backup: once
        # "epoch N" is shown, a killed training resumes after epoch N
        callbacks=[schedule, best, backup, log, *callbacks],
        shuffle=False,
        verbose=0,
    )
    elapsed = time.perf_counter() - started
    if (out_dir / BEST_FILE).is_file():
        model.load_weights(str(out_dir / BEST_FILE))
    return TrainResult(
        model,
        history,
        float(log.best_val_loss),
        log.best_epoch,
        config,
        out_dir,
        elapsed,
        tuple(out_shape),
        len(train_list),
        val_list,
    )
