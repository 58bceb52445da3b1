"""Training and fine-tuning of the U-Net (Falk et al. 2019), with export as a bundle.

:func:`train` takes annotated images (:class:`deepimagej.unet.data.TrainingSample` objects,
or an ``(images_dir, labels_dir)`` pair of folders), splits off validation images, and
optimises the weighted soft-max cross-entropy (:mod:`deepimagej.unet.loss`) with Adam on
tiles drawn and augmented on the fly (:func:`deepimagej.unet.augment.augment_sample`: tile
centres sampled proportional to the balancing weight, rotation, elastic deformation,
intensity curves). After every epoch it measures the loss, pixel accuracy and foreground
IoU on fixed validation tiles, keeps the weights with the lowest validation loss
(best-model selection) and writes a resumable checkpoint into ``out_dir``:

``out_dir/checkpoint.weights.h5``  the current weights
``out_dir/optimizer.npz``          Adam's state (moments, iteration count)
``out_dir/best.weights.h5``        the weights with the lowest validation loss so far
``out_dir/state.json``             epoch, step, history, best loss, the training settings

Calling :func:`train` again with the same ``out_dir`` continues where it stopped
(``resume=True``); settings that change the network must match.

Fine-tuning (``from_bundle``) starts from the Keras copy (``model.h5``) that every bundle
exported by :mod:`deepimagej.unet.export` carries, which is the paper's main use: adapt
a trained U-Net to new data from one or two annotated images.

Images are normalised per image to [0, 1] (min-max, the bundle's ``scale_range``
pre-processing with percentiles 0 and 100) so that training and inference see the same
intensities.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import TrainingError

#: progress(info): info has epoch, epochs, step, steps, loss, val_loss, val_accuracy, val_iou,
#: elapsed_s, eta_s, best (bool: this epoch is the best so far).
ProgressCallback = Callable[[dict[str, Any]], None]

STATE_FILE = "state.json"
WEIGHTS_FILE = "checkpoint.weights.h5"
BEST_FILE = "best.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the Keras model with the best weights (lowest validation loss).
        history: one dict per epoch (epoch, step, loss, val_loss, val_accuracy, val_iou, elapsed_s).
        best_val_loss: the lowest validation loss reached.
        best_epoch: the epoch it was reached at.
        bundle_path: the exported bundle folder, or ``None`` when not exported.
        elapsed_s: training time of this call (resumed runs: this call only).
        out_dir: the folder with checkpoints and ``state.json``.
    """

    model: Any
    history: list[dict[str, Any]]
    best_val_loss: float
    best_epoch: int
    bundle_path: Path | None = None
    elapsed_s: float = 0.0
    out_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)


def normalize(image: np.ndarray, ndim: int) -> np.ndarray:
    """Min-max normalisation to [0, 1] over the spatial axes (per channel), as the bundle's ``scale_range``.

    bioimage.io ``scale_range`` (percentiles 0 and 100, ``per_sample``): ``(x - min) / (max - min + 1e-6)``.
    """
    image = np.asarray(image, dtype=np.float32)
    axes = tuple(range(ndim))
    lo = image.min(axis=axes, keepdims=True)
    hi = image.max(axis=axes, keepdims=True)
    return ((image - lo) / (hi - lo + 1e-6)).astype(np.float32)


# --------------------------------------------------------------------------- data


def load_samples(
    images: str | Path,
    labels: str | Path,
    *,
    ndim: int = 2,
    detection: bool = False,
    radius: float = 3.0,
    r_ign: float = 6.0,
    semantic: bool | None = None,
    prepare_kw: dict[str, Any] | None = None,
) -> list[Any]:
    """Training samples from files: an image folder and a folder of annotations (or one image + one file).

    Annotations are matched to images by file name (:func:`deepimagej.unet.data.load_folder_pairs`):
    label masks (instance or binary), ImageJ ROI files (``.zip`` RoiSet / ``.roi``, one regional
    ROI per object) or, with ``detection=True``, multi-point ROIs (one point per object; each
    becomes a disk of ``radius`` with an ignore ring up to ``r_ign``).
    """
    from deepimagej.unet import data as udata

    images, labels = Path(images), Path(labels)
    if images.is_file():
        if not labels.is_file():
            raise TrainingError(f"{labels}: for a single image give a single label/ROI file")
        pairs = [(images, labels)]
    else:
        pairs = udata.load_folder_pairs(images, labels)
    samples = []
    for img_path, lab_path in pairs:
        image = udata.load_image(img_path)
        shape = image.shape[:ndim]
        ignore = points = None
        if lab_path.suffix.lower() in udata.ROI_SUFFIXES:
            if detection:
                points = udata.points_from_rois(lab_path, ndim=ndim)
                lab, ignore = udata.detection_targets(points, shape, radius, r_ign)
            else:
                lab = udata.rois_to_labels(lab_path, shape)
        else:
            mode = "auto" if semantic is None else ("semantic" if semantic else "instance")
            lab = udata.load_mask(lab_path, mode=mode)
            if detection:
                points = _centroids(lab)
                lab, ignore = udata.detection_targets(points, lab.shape, radius, r_ign)
        sample = udata.prepare_sample(image, lab, ignore, image_name=img_path.name, labels_name=lab_path.name,
                                      **(prepare_kw or {}))
        sample.points = points
        samples.append(sample)
    return samples


def _centroids(labels: np.ndarray) -> np.ndarray:
    """Centroids (array order) of the objects of a label image."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros((0, labels.ndim))
    return np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, ids), dtype=float)


def _as_samples(data: Any, ndim: int, prepare_kw: dict[str, Any] | None) -> list[Any]:
    """Accept TrainingSamples, (image, labels[, ignore]) tuples, or an (images_dir, labels_dir) pair."""
    from deepimagej.unet import data as udata

    if isinstance(data, (str, Path)):
        folder = Path(data)
        if not (folder / "images").is_dir() or not (folder / "labels").is_dir():
            raise TrainingError(f"{folder}: expected sub-folders 'images' and 'labels' (or pass both folders)")
        data = (folder / "images", folder / "labels")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, (str, Path)) for d in data):
        return load_samples(data[0], data[1], ndim=ndim, prepare_kw=prepare_kw)
    samples = []
    for item in data:
        if hasattr(item, "classes") and hasattr(item, "weights"):
            samples.append(item)
        elif isinstance(item, tuple) and len(item) in (2, 3):
            samples.append(udata.prepare_sample(*item, **(prepare_kw or {})))
        else:
            raise TrainingError(
                f"training data item of type {type(item).__name__}: expected a TrainingSample or (image, labels) pair"
            )
    if not samples:
        raise TrainingError("no training images given")
    for s in samples:
        if s.classes.ndim != ndim:
            raise TrainingError(
                f"a {s.classes.ndim}D annotation was given to a {ndim}D U-Net "
                f"(labels shape {s.classes.shape}); use ndim={s.classes.ndim} (--3d for volumes)"
            )
        if not np.any(s.weights > 0):
            raise TrainingError("an annotation has no usable pixel (everything ignored)")
    return samples


def _image_of(sample: Any, ndim: int) -> np.ndarray:
    image = normalize(sample.image, ndim)
    return image


class _TileStream:
    """Augmented training batches produced by a background thread (overlaps numpy with TensorFlow)."""

    def __init__(self, samples, images, batch_size, in_shape, out_shape, rng, augment_kw, prefetch=3):
        self.samples, self.images = samples, images
        self.batch_size, self.in_shape, self.out_shape = batch_size, in_shape, out_shape
        self.rng, self.augment_kw = rng, augment_kw
        sizes = np.array([float(np.prod(s.classes.shape)) for s in samples])
        self.p = sizes / sizes.sum()  # pick images proportional to their area
        self.queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _batch(self):
        from deepimagej.unet.augment import augment_sample

        xs, ys, ws = [], [], []
        for _ in range(self.batch_size):
            i = int(self.rng.choice(len(self.samples), p=self.p))
            s = self.samples[i]
            x, y, w = augment_sample(
                self.images[i], s.classes, s.weights, self.rng, in_shape=self.in_shape, out_shape=self.out_shape,
                pdf=getattr(s, "pdf", None), **self.augment_kw,
            )
            xs.append(x if x.ndim > len(self.in_shape) else x[..., None])
            ys.append(y.astype(np.int32))
            ws.append(w)
        return np.stack(xs), np.stack(ys), np.stack(ws)

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                item = self._batch()
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            self.error = exc
            self.queue.put(None)

    def next(self):
        item = self.queue.get()
        if item is None and self.error is not None:
            raise self.error
        return item

    def close(self) -> None:
        self.stop.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        self.thread.join(timeout=5)


def _validation_tiles(samples, images, in_shape, out_shape, n_per_image, seed, border="mirror"):
    """Fixed validation tiles (no augmentation; centres drawn once from the weight pdf)."""
    from deepimagej.unet.augment import augment_sample

    rng = np.random.default_rng([seed, 7919])
    xs, ys, ws = [], [], []
    for s, image in zip(samples, images):
        for _ in range(n_per_image):
            x, y, w = augment_sample(
                image, s.classes, s.weights, rng, in_shape=in_shape, out_shape=out_shape,
                pdf=getattr(s, "pdf", None), rotation=False, elastic=False, intensity=False, border=border,
            )
            xs.append(x if x.ndim > len(in_shape) else x[..., None])
            ys.append(y.astype(np.int32))
            ws.append(w)
    return np.stack(xs), np.stack(ys), np.stack(ws)


def _tile_metrics(probs: np.ndarray, classes: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    from deepimagej.unet.loss import weighted_softmax_cross_entropy_np

    pred = np.argmax(probs, axis=-1)
    valid = weights > 0
    acc = float(np.mean(pred[valid] == classes[valid])) if valid.any() else float("nan")
    p_fg, t_fg = (pred > 0) & valid, (classes > 0) & valid
    union = np.count_nonzero(p_fg | t_fg)
    iou = float(np.count_nonzero(p_fg & t_fg) / union) if union else 1.0
    return {
        "val_loss": weighted_softmax_cross_entropy_np(classes, probs, weights),
        "val_accuracy": acc,
        "val_iou": iou,
    }


# --------------------------------------------------------------------------- checkpoints


def _save_optimizer(optimizer, path: Path) -> None:
    arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_optimizer(optimizer, model, path: Path) -> None:
    optimizer.build(model.trainable_variables)
    with np.load(path) as data:
        values = [data[k] for k in sorted(data.files)]
    if len(values) != len(optimizer.variables):
        raise TrainingError(f"{path}: optimizer state does not match the model; delete the checkpoint folder")
    for var, value in zip(optimizer.variables, values):
        var.assign(value)


def _save_weights(model, path: Path) -> None:
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(str(tmp))
    tmp.replace(path)


def _portable_path(path: str | Path, start: Path) -> str:
    """``path`` relative to ``start`` (a checkpoint folder stays valid when the project moves)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
    except ValueError:  # another drive (Windows): the name is all that can be kept portably
        return Path(path).name


def _write_state(out_dir: Path, state: dict[str, Any]) -> None:
    tmp = out_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(out_dir / STATE_FILE)


def load_bundle_model(bundle: str | Path):
    """The Keras U-Net of a bundle (its ``model.h5`` / ``keras_hdf5`` weights), for fine-tuning.

    Of a two-head detection bundle (centres + cells, :func:`~deepimagej.unet.model.with_cell_head`)
    this is the centre U-Net: points train centres; the cell U-Net is trained from masks.
    """
    from deepimagej.engines.keras import load_keras_model
    from deepimagej.unet.model import heads

    return heads(load_keras_model(_keras_file(Path(bundle))))[0]


def _keras_file(path: Path) -> Path:
    """The Keras weights file of a bundle (or ``path`` itself when it is one)."""
    if path.is_file() and path.suffix.lower() in {".h5", ".hdf5", ".keras"}:
        return path
    folder = path if path.is_dir() else path.parent
    for name in ("model.h5", "model.keras"):
        if (folder / name).is_file():
            return folder / name
    try:
        from deepimagej.bundle import load_bundle

        weights = load_bundle(path).weights.get("keras_hdf5")
        if weights is not None and weights.path is not None and weights.path.is_file():
            return weights.path
    except ImportError:  # pragma: no cover - bundle reader missing
        pass
    raise TrainingError(
        f"{path}: no Keras weights (model.h5) in this bundle; fine-tuning needs a bundle exported by deepimagej train"
    )


# --------------------------------------------------------------------------- training


def _default_progress(info: dict[str, Any]) -> None:
    eta = info["eta_s"]
    print(
        f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['steps']} "
        f"loss {info['loss']:.4f} val_loss {info['val_loss']:.4f} val_acc {info['val_accuracy']:.4f} "
        f"val_iou {info['val_iou']:.4f}{' *' if info['best'] else ''} "
        f"[{info['elapsed_s']:.0f} s, ETA {eta:.0f} s]",
        flush=True,
    )


def train(
    data: Any,
    *,
    out_dir: str | Path,
    ndim: int = 2,
    n_classes: int = 2,
    from_bundle: str | Path | None = None,
    depth: int = 3,
    base_features: int = 16,
    padding: str = "same",
    anisotropy: Sequence[float] | None = None,
    downsample: int = 1,
    epochs: int = 10,
    steps_per_epoch: int = 50,
    tile: int | Sequence[int] = 256,
    batch_size: int = 1,
    learning_rate: float = 1e-3,
    lr_drop_epochs: Sequence[int] = (),
    val_samples: Sequence[Any] | None = None,
    n_val: int | None = None,
    val_tiles_per_image: int = 4,
    seed: int = 0,
    checkpoint_every: int = 1,
    resume: bool = True,
    progress: ProgressCallback | None = _default_progress,
    augment: dict[str, Any] | None = None,
    border: str = "mirror",
    prepare_kw: dict[str, Any] | None = None,
    bundle_dir: str | Path | None = None,
    export_kw: dict[str, Any] | None = None,
    stop_at_val_loss: float | None = None,
) -> TrainResult:
    """Train (or fine-tune) a U-Net and optionally export it as a bundle.

    Args:
        data: training images with annotations: a list of ``TrainingSample``
            (:func:`deepimagej.unet.data.prepare_sample`) or of ``(image, labels[, ignore])``
            tuples, or a pair ``(images_dir, labels_dir)``.
        out_dir: folder for checkpoints and ``state.json`` (created).
        ndim: 2 or 3 (3D volumes ``z, y, x``).
        n_classes: classes of the soft-max (2: background / foreground).
        from_bundle: fine-tune the Keras model of this bundle instead of starting from
            random weights (its architecture wins over ``depth``/``base_features``).
        depth, base_features, padding, anisotropy, downsample: the architecture (:func:`build_unet`).
        epochs, steps_per_epoch: training length; validation + checkpoint after every epoch.
        tile: output tile size (per axis or one number); rounded to a valid network size.
        batch_size: tiles per step.
        learning_rate: Adam's learning rate.
        lr_drop_epochs: epochs from which the learning rate is divided by 10 (each), e.g. ``(30,)``.
        val_samples: explicit validation images; else ``n_val`` images are split off
            (:func:`deepimagej.unet.data.split_validation`; default: 1 when there are at
            least 2 images, 20 % for many).
        val_tiles_per_image: fixed validation tiles per validation image.
        seed: random seed (tile sampling, augmentation, initial weights).
        checkpoint_every: write the checkpoint every this many epochs.
        resume: continue from the checkpoint in ``out_dir`` if there is one.
        progress: called after every epoch with a dict (see :data:`ProgressCallback`);
            ``None`` for silence. The default prints one line per epoch.
        augment: keyword arguments for :func:`augment_sample` (``rotation``, ``elastic``, ``intensity``...).
        border: what the network sees beyond the image border, in training tiles and in the
            exported bundle: ``"mirror"`` (DeepImageJ's mirror padding) or ``"zeros"``. Use
            ``"zeros"`` when annotations depend on where the image ends, e.g. detection points at
            the centroids of objects cut by the border (a mirrored half object looks whole).
        prepare_kw: keyword arguments for ``prepare_sample`` when ``data`` holds raw pairs.
        bundle_dir: export the best model as a bundle there (:func:`deepimagej.unet.export.export_unet`).
        export_kw: extra arguments for the export (name, description, kind, authors...).
        stop_at_val_loss: stop early once the validation loss is at most this.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingError: unusable data or settings (too few images for validation, sizes...).
    """
    from deepimagej.engines.tensorflow import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    from deepimagej.unet import data as udata
    from deepimagej.unet.loss import weighted_softmax_cross_entropy
    from deepimagej.unet.model import build_unet, infer_config, same_shape, valid_shapes

    if ndim not in (2, 3):
        raise TrainingError(f"ndim={ndim}: the U-Net is 2D or 3D")
    if epochs < 1 or steps_per_epoch < 1 or batch_size < 1:
        raise TrainingError("epochs, steps_per_epoch and batch_size must be at least 1")
    if border not in ("mirror", "zeros"):
        raise TrainingError(f"border={border!r}: use 'mirror' or 'zeros'")
    out_dir = Path(out_dir)
    samples = _as_samples(data, ndim, prepare_kw)
    if val_samples is None:
        if n_val is None:
            n_val = 1 if len(samples) < 10 else max(1, len(samples) // 5)
        train_samples, val_list = udata.split_validation(samples, n_val)
    else:
        train_samples, val_list = samples, _as_samples(list(val_samples), ndim, prepare_kw)
    train_samples, val_list = list(train_samples), list(val_list)
    if not train_samples:
        raise TrainingError("no training images left after the validation split")
    if not val_list:
        raise TrainingError("no validation images: give at least 2 annotated images or val_samples")

    # ---- model
    if from_bundle is not None:
        model = load_bundle_model(from_bundle)
        arch = infer_config(model)
        if arch["ndim"] != ndim:
            raise TrainingError(f"{from_bundle}: a {arch['ndim']}D U-Net cannot be fine-tuned on {ndim}D data")
        if arch["n_classes"] != n_classes:
            raise TrainingError(f"{from_bundle}: the model has {arch['n_classes']} classes, the data {n_classes}")
    else:
        keras.utils.set_random_seed(seed)
        model = build_unet(ndim, n_classes, depth, base_features, padding, 1, anisotropy, downsample=downsample)
        arch = model.unet_config
    model.unet_config = arch
    depth, padding, anisotropy = arch["depth"], arch["padding"], arch["anisotropy"]
    in_ch = int(model.input_shape[-1])
    for s in [*train_samples, *val_list]:
        ch = 1 if s.image.ndim == ndim else s.image.shape[-1]
        if ch != in_ch:
            raise TrainingError(f"an image has {ch} channels, the model takes {in_ch}")

    # ---- tiles
    want = (int(tile),) * ndim if np.isscalar(tile) else tuple(int(t) for t in tile)
    if len(want) != ndim:
        raise TrainingError(f"tile {want}: give {ndim} sizes")
    smallest = np.min([s.classes.shape for s in train_samples], axis=0)
    if padding == "same":
        want = tuple(min(w, int(m)) for w, m in zip(want, smallest))
        in_shape = out_shape = same_shape(want, depth, anisotropy, arch.get("downsample", 1))
    else:
        in_shape, out_shape = valid_shapes(want, depth, anisotropy)

    config = {
        "architecture": {k: (list(v) if isinstance(v, tuple) else v) for k, v in arch.items()},
        "in_shape": list(in_shape), "out_shape": list(out_shape), "batch_size": batch_size,
        "learning_rate": learning_rate, "lr_drop_epochs": list(lr_drop_epochs), "seed": seed, "steps_per_epoch": steps_per_epoch,
        "from_bundle": _portable_path(from_bundle, out_dir) if from_bundle else None,
        "n_train": len(train_samples), "n_val": len(val_list),
    }
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    history: list[dict[str, Any]] = []
    best_val, best_epoch, start_epoch = math.inf, 0, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume and (out_dir / STATE_FILE).is_file():
        state = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
        if state.get("config", {}).get("architecture") != config["architecture"]:
            raise TrainingError(
                f"{out_dir}: holds a checkpoint of a different network; use another out_dir or resume=False"
            )
        model.load_weights(str(out_dir / WEIGHTS_FILE))
        _load_optimizer(optimizer, model, out_dir / OPTIMIZER_FILE)
        history = state["history"]
        best_val, best_epoch, start_epoch = state["best_val_loss"], state["best_epoch"], state["epoch"]
        if best_val is None:
            best_val = math.inf
    elif not resume:
        for name in (STATE_FILE, WEIGHTS_FILE, BEST_FILE, OPTIMIZER_FILE):
            (out_dir / name).unlink(missing_ok=True)

    train_images = [_image_of(s, ndim) for s in train_samples]
    val_images = [_image_of(s, ndim) for s in val_list]
    vx, vy, vw = _validation_tiles(val_list, val_images, in_shape, out_shape, val_tiles_per_image, seed, border)

    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x, y, w):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss = weighted_softmax_cross_entropy(y, probs, w)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    def validate() -> dict[str, float]:
        probs = np.concatenate([np.asarray(forward(vx[i : i + 4])) for i in range(0, len(vx), 4)])
        return _tile_metrics(probs, vy, vw)

    augment_kw = {"rotation": True, "elastic": True, "intensity": True, **(augment or {}), "border": border}
    started = time.perf_counter()
    steps_done_here = 0
    if start_epoch == 0 and not history:  # the starting point, for learning curves
        metrics = validate()
        history.append({"epoch": 0, "step": 0, "loss": None, **metrics, "elapsed_s": 0.0})
        best_val = metrics["val_loss"] if from_bundle is not None else math.inf
        if from_bundle is not None:
            _save_weights(model, out_dir / BEST_FILE)
    prior_elapsed = history[-1]["elapsed_s"] if history else 0.0
    for epoch in range(start_epoch + 1, epochs + 1):
        optimizer.learning_rate = learning_rate * 0.1 ** sum(1 for e in lr_drop_epochs if epoch >= e)
        stream = _TileStream(
            train_samples, train_images, batch_size, in_shape, out_shape,
            np.random.default_rng([seed, epoch]), augment_kw,
        )
        losses = []
        try:
            for _ in range(steps_per_epoch):
                x, y, w = stream.next()
                losses.append(float(train_step(x, y, w)))
                steps_done_here += 1
        finally:
            stream.close()
        if not np.all(np.isfinite(losses)):
            raise TrainingError(f"the loss became {losses[-1]} at epoch {epoch}: lower the learning rate")
        metrics = validate()
        elapsed = time.perf_counter() - started
        is_best = metrics["val_loss"] < best_val
        if is_best:
            best_val, best_epoch = metrics["val_loss"], epoch
            _save_weights(model, out_dir / BEST_FILE)
        record = {
            "epoch": epoch, "step": epoch * steps_per_epoch, "loss": float(np.mean(losses)), **metrics,
            "elapsed_s": prior_elapsed + elapsed,
        }
        history.append(record)
        stopped_early = stop_at_val_loss is not None and metrics["val_loss"] <= stop_at_val_loss
        if epoch % checkpoint_every == 0 or epoch == epochs or stopped_early:
            _save_weights(model, out_dir / WEIGHTS_FILE)
            _save_optimizer(optimizer, out_dir / OPTIMIZER_FILE)
            _write_state(out_dir, {
                "epoch": epoch, "step": epoch * steps_per_epoch, "history": history,
                "best_val_loss": best_val if math.isfinite(best_val) else None, "best_epoch": best_epoch,
                "config": config, "stopped_early": stopped_early,
            })
        if progress is not None:
            per_epoch = elapsed / max(1, epoch - start_epoch)
            progress({
                **record, "epochs": epochs, "steps": epochs * steps_per_epoch, "best": is_best,
                "eta_s": per_epoch * (epochs - epoch),
            })
        if stopped_early:
            break
    elapsed = time.perf_counter() - started
    if (out_dir / BEST_FILE).is_file():
        model.load_weights(str(out_dir / BEST_FILE))
    result = TrainResult(model, history, float(best_val), best_epoch, None, elapsed, out_dir, config)
    if bundle_dir is not None:
        from deepimagej.unet.export import export_unet

        kw = {"border": border, **(export_kw or {})}
        kw.setdefault("example_image", val_list[0].image)
        kw.setdefault("training", {
            "best_val_loss": result.best_val_loss, "best_epoch": best_epoch, "epochs": epochs,
            "steps_per_epoch": steps_per_epoch, "tile": list(out_shape), "batch_size": batch_size,
            "learning_rate": learning_rate, "lr_drop_epochs": list(lr_drop_epochs), "n_train": len(train_samples), "n_val": len(val_list),
            "from_bundle": Path(from_bundle).name if from_bundle else None,
            "training_time_s": round(history[-1]["elapsed_s"], 1),
        })
        if kw.get("kind") == "detection" and "detection" not in kw and all(s.points is not None for s in val_list):
            kw["detection"], score = _tune_detection(model, kw, val_list)
            kw["training"]["detection_settings_from_validation"] = {"settings": kw["detection"], **score}
        export_unet(model, bundle_dir, **kw)
        result.bundle_path = Path(bundle_dir)
    return result


def _tune_detection(model, export_kw: dict[str, Any], val_list: Sequence[Any]):
    """Peak-finding settings that maximise the F1 on the validation images (a bundle exported aside)."""
    import tempfile

    from deepimagej.unet.evaluate import tune_detection
    from deepimagej.unet.export import export_unet

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        export_unet(model, bundle, **{**export_kw, "example_image": None, "training": None})
        return tune_detection(bundle, [s.image for s in val_list], [s.points for s in val_list])
