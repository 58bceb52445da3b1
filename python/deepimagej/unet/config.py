"""The settings of a U-Net training run, as one serialisable object.

:class:`TrainingConfig` holds everything that defines a run: the task and how annotations become
targets, the loss weights of the paper, the network, the optimisation, the augmentation and the
input pre-processing. It is written as ``config.json`` next to the checkpoints (a resumed run
checks that the network is the same) and its facts go into the exported bundle, so that a run can
be repeated from the JSON alone (as CSBDeep's ``Config``).

The input pre-processing is declared here once, as bioimage.io operations: training applies them
with :func:`deepimagej.ops.apply_processing` and the exported bundle carries the same steps, so
training and inference cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deepimagej.bundle.spec import ProcessingStep
from deepimagej.errors import TrainingError
from deepimagej.outputs import write_text_atomic
from deepimagej.unet.weights import LAMBDA_SEP, SIGMA_BAL, SIGMA_SEP, V_BAL, WeightSettings

__all__ = ["DEFAULT_PREPROCESSING", "TASKS", "TrainingConfig"]

TASKS = ("segmentation", "detection")
BORDERS = ("mirror", "zeros")
#: The U-Net's input normalisation: min-max to [0, 1] per image and channel (bioimage.io
#: ``scale_range`` with percentiles 0 and 100); the axes are added for the network's dimension.
DEFAULT_PREPROCESSING: tuple[dict[str, Any], ...] = (
    {
        "name": "scale_range",
        "kwargs": {"mode": "per_sample", "min_percentile": 0.0, "max_percentile": 100.0, "eps": 1e-6},
    },
)


@dataclass
class TrainingConfig:
    """Everything that defines a U-Net training run (Falk et al. 2019).

    Attributes:
        task: ``"segmentation"`` or ``"detection"`` (one point per object, Falk et al.'s detection).
        n_classes: classes of the soft-max, background included: 2 = background / foreground;
            more: label values or ROI names are classes.
        class_names: names of the foreground classes 1 .. ``n_classes - 1``: ROI names that give a
            ROI its class, and the output channel names of the bundle. Empty: ``class 1``, ...
        ignore_label: a label-mask value marking regions to ignore (weight 0). ROIs named
            ``ignore`` are always ignored.
        radius, r_ign: detection: disk radius and ignore-ring radius (pixels of the model's
            element size).
        v_bal, sigma_bal, lam, sigma_sep: the loss weights of the paper
            (:func:`deepimagej.unet.weights.weight_map`); ``lam=None`` means 50 for segmentation
            and 0 for detection.
        ndim: 2 or 3 (``z, y, x`` volumes).
        depth, base_features, padding, downsample: the network (:func:`deepimagej.unet.model.build_unet`).
        element_size: the model's element size (pixel size) in micrometres per spatial axis, in
            array order (``y, x`` or ``z, y, x``; one number for all axes): training images with a
            calibration are resampled to it, the bundle declares it (images of another pixel size
            are resampled to it at inference), and a 3D network uses 2D operations at its
            finest levels while z is coarser than y, x (anisotropy).
        from_bundle: fine-tune the Keras model of this bundle (folder) or ``.h5`` file instead of
            starting from random weights; its architecture wins over ``depth``/``base_features``.
        epochs, steps_per_epoch: training length; validation and checkpoint after every epoch.
        tile: output tile size (one number or per axis), rounded to a valid network size.
        batch_size: tiles per step.
        learning_rate: Adam's learning rate.
        lr_drop_epochs: epochs (1-based) from which the learning rate is divided by 10, each.
        seed: seed of the initial weights, tile sampling and augmentation.
        n_val: images split off for validation when none are given (default: 1 with fewer than
            10 images, else 20 %).
        val_tiles_per_image: fixed validation tiles per validation image.
        stop_at_val_loss: stop once the validation loss is at most this.
        border: what the network sees beyond the image border, in training tiles and in the
            bundle: ``"mirror"`` or ``"zeros"`` (``None``: zeros for detection, whose points are
            centroids of objects cut by the border, mirror for segmentation).
        rotation, elastic, intensity: the augmentations of the paper (M3).
        preprocessing: the input's bioimage.io pre-processing steps (``{"name", "kwargs"}``),
            applied in training and declared in the bundle.
    """

    task: str = "segmentation"
    n_classes: int = 2
    class_names: tuple[str, ...] = ()
    ignore_label: int | None = None
    radius: float = 3.0
    r_ign: float = 6.0
    v_bal: float = V_BAL
    sigma_bal: float = SIGMA_BAL
    lam: float | None = None
    sigma_sep: float = SIGMA_SEP
    ndim: int = 2
    depth: int = 3
    base_features: int = 16
    padding: str = "same"
    downsample: int = 1
    element_size: tuple[float, ...] | None = None
    from_bundle: str | None = None
    epochs: int = 10
    steps_per_epoch: int = 50
    tile: int | tuple[int, ...] = 256
    batch_size: int = 1
    learning_rate: float = 1e-3
    lr_drop_epochs: tuple[int, ...] = ()
    seed: int = 0
    n_val: int | None = None
    val_tiles_per_image: int = 4
    stop_at_val_loss: float | None = None
    border: str | None = None
    rotation: bool = True
    elastic: bool = True
    intensity: bool = True
    preprocessing: tuple[dict[str, Any], ...] = field(default=DEFAULT_PREPROCESSING)

    def __post_init__(self) -> None:
        for name in ("class_names", "lr_drop_epochs", "preprocessing"):
            setattr(self, name, tuple(getattr(self, name) or ()))
        if self.element_size is not None:
            size = self.element_size
            self.element_size = tuple(float(v) for v in (size if isinstance(size, (list, tuple)) else [size]))
        if isinstance(self.tile, list):
            self.tile = tuple(self.tile)
        if self.from_bundle is not None:
            self.from_bundle = str(self.from_bundle)
        self.check()

    # ------------------------------------------------------------------ derived values

    @property
    def separation_weight(self) -> float:
        """lambda of the separation term: as set, else 50 for segmentation and 0 for detection disks."""
        if self.lam is not None:
            return float(self.lam)
        return 0.0 if self.task == "detection" else LAMBDA_SEP

    @property
    def border_mode(self) -> str:
        """The border as set, else ``zeros`` for detection and ``mirror`` for segmentation."""
        return self.border or ("zeros" if self.task == "detection" else "mirror")

    @property
    def spatial_axes(self) -> str:
        return "yx" if self.ndim == 2 else "zyx"

    def element_sizes(self) -> dict[str, float]:
        """The element size per axis letter (micrometres); empty when not set."""
        if self.element_size is None:
            return {}
        sizes = self.element_size * (self.ndim if len(self.element_size) == 1 else 1)
        return dict(zip(self.spatial_axes, sizes))

    @property
    def anisotropy(self) -> tuple[float, ...] | None:
        """The 3D element size ``(z, y, x)`` the network adapts its levels to, or ``None``."""
        sizes = self.element_sizes()
        return tuple(sizes[a] for a in "zyx") if self.ndim == 3 and sizes else None

    def weight_settings(self) -> WeightSettings:
        """Keyword arguments of :func:`deepimagej.unet.weights.weight_map`."""
        return {
            "v_bal": self.v_bal,
            "sigma_bal": self.sigma_bal,
            "lam": self.separation_weight,
            "sigma_sep": self.sigma_sep,
        }

    def processing_steps(self) -> tuple[ProcessingStep, ...]:
        """The input pre-processing as bioimage.io steps, reducing over the spatial axes unless they say otherwise."""
        return tuple(
            ProcessingStep(str(step["name"]), {"axes": self.spatial_axes, **dict(step.get("kwargs") or {})})
            for step in self.preprocessing
        )

    def channel_names(self) -> tuple[str, ...]:
        """Names of the output channels: background, then the classes."""
        names = self.class_names or tuple(
            ("object centre" if self.task == "detection" else "foreground",)
            if self.n_classes == 2
            else (f"class {k}" for k in range(1, self.n_classes))
        )
        return ("background", *names)

    def tile_shape(self) -> tuple[int, ...]:
        """The requested output tile, one size per spatial axis."""
        tile = (
            (int(self.tile),) * self.ndim
            if isinstance(self.tile, (int, float))
            else tuple(int(t) for t in self.tile)
        )
        if len(tile) != self.ndim:
            raise TrainingError(f"tile {tile}: give {self.ndim} sizes (or one)")
        return tile

    def augmentation(self) -> dict[str, Any]:
        """Keyword arguments of :func:`deepimagej.unet.augment.augment_sample`."""
        return {
            "rotation": self.rotation,
            "elastic": self.elastic,
            "intensity": self.intensity,
            "border": self.border_mode,
        }

    # ------------------------------------------------------------------ checks and files

    def check(self) -> None:
        """Raise :class:`TrainingError` for settings that cannot train."""
        if self.task not in TASKS:
            raise TrainingError(f"task={self.task!r}: use one of {', '.join(TASKS)}")
        if self.ndim not in (2, 3):
            raise TrainingError(f"ndim={self.ndim}: the U-Net is 2D or 3D")
        if self.n_classes < 2:
            raise TrainingError(f"n_classes={self.n_classes}: the soft-max U-Net needs at least 2 classes")
        if self.task == "detection" and self.n_classes != 2:
            raise TrainingError("detection trains 2 classes (background / object centre); use n_classes=2")
        if self.class_names and len(self.class_names) != self.n_classes - 1:
            raise TrainingError(
                f"{len(self.class_names)} class names for {self.n_classes} classes: name the "
                f"{self.n_classes - 1} foreground classes (the background is class 0)"
            )
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise TrainingError("epochs, steps_per_epoch and batch_size must be at least 1")
        if self.border is not None and self.border not in BORDERS:
            raise TrainingError(f"border={self.border!r}: use 'mirror' or 'zeros'")
        if self.r_ign < self.radius:
            raise TrainingError(f"r_ign ({self.r_ign}) must be at least the radius ({self.radius})")
        size = self.element_size
        if size is not None and (len(size) not in (1, self.ndim) or min(size) <= 0):
            raise TrainingError(
                f"element size {size}: give one positive size or one per axis ({','.join(self.spatial_axes)}) "
                "in micrometres"
            )
        self.tile_shape()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "training config") -> TrainingConfig:
        """The config of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        values: dict[str, Any] = {  # JSON values: __post_init__ checks them
            k: tuple(v) if isinstance(v, list) and k != "preprocessing" else v for k, v in data.items()
        }
        return cls(**values)

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON (atomically)."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        """Read a config written by :meth:`save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{path}: not a training config ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise TrainingError(f"{path}: not a training config (expected a JSON object)")
        return cls.from_dict(data, source=str(path))

    def updated(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` (checked)."""
        return replace(self, **changes)
