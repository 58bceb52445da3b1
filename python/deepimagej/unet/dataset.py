"""Tiles for Keras ``fit``: augmented training tiles drawn on the fly, fixed validation tiles (Falk et al. 2019, M3).

:class:`TrainingTiles` is an endless :class:`keras.utils.PyDataset` (``fit`` takes
``steps_per_epoch`` batches per epoch): batch ``i`` draws its tiles with a random generator seeded
by ``(seed, first_step + i)``, so every step of a run sees the same tiles whatever the order in
which Keras' prefetching asks for them, and a resumed run continues with the tiles the
uninterrupted run would have drawn. An image is picked in proportion to its area; the tile
centre follows the sample's pdf (the balancing weight), then rotation, elastic deformation and
intensity curve (:func:`deepimagej.unet.augment.augment_sample`).

Images are normalised once, by the bioimage.io pre-processing steps of the training config
(:meth:`deepimagej.unet.config.TrainingConfig.processing_steps`, applied with
:func:`deepimagej.ops.apply_processing`): the steps the exported bundle declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepimagej.engines.tensorflow import quiet_tensorflow
from deepimagej.ops import apply_processing
from deepimagej.unet.augment import augment_sample
from deepimagej.unet.config import TrainingConfig
from deepimagej.unet.loss import pack_targets
from deepimagej.unet.samples import TrainingSample

quiet_tensorflow()
import keras  # noqa: E402 - after quiet_tensorflow(), which must run first

__all__ = ["TrainingTiles", "normalized_images", "validation_tiles"]


def normalized_images(samples: Sequence[TrainingSample], config: TrainingConfig) -> list[np.ndarray]:
    """The samples' images after the config's pre-processing (what the network sees)."""
    steps = config.processing_steps()
    out = []
    for s in samples:
        axes = config.spatial_axes + ("c" if s.image.ndim > config.ndim else "")
        out.append(apply_processing(s.image, axes, steps))
    return out


def _with_channel(tile: np.ndarray, ndim: int) -> np.ndarray:
    return tile if tile.ndim > ndim else tile[..., None]


class TrainingTiles(keras.utils.PyDataset):
    """Augmented training batches ``(x, packed targets)`` for ``fit`` (see the module docstring).

    Args:
        samples: the training samples.
        images: their normalised images (:func:`normalized_images`).
        config: batch size, seed, augmentation, border.
        in_shape, out_shape: the network's input and output tile shapes.
        first_step: the global step of batch 0 (``epoch * steps_per_epoch`` when resuming).
        **kwargs: :class:`keras.utils.PyDataset` options (``workers``, ``max_queue_size``).
    """

    def __init__(
        self,
        samples: Sequence[TrainingSample],
        images: Sequence[np.ndarray],
        config: TrainingConfig,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        first_step: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.samples, self.images, self.config = list(samples), list(images), config
        self.in_shape, self.out_shape = in_shape, out_shape
        self.first_step = first_step
        sizes = np.array([float(np.prod(s.classes.shape)) for s in self.samples])
        self.p = sizes / sizes.sum()

    @property
    def num_batches(self) -> None:
        """Endless: ``fit`` draws ``steps_per_epoch`` batches per epoch."""
        return None

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.first_step + index])
        xs, ys = [], []
        for _ in range(cfg.batch_size):
            i = int(rng.choice(len(self.samples), p=self.p))
            s = self.samples[i]
            x, y, w = augment_sample(
                self.images[i],
                s.classes,
                s.weights,
                rng,
                in_shape=self.in_shape,
                out_shape=self.out_shape,
                pdf=s.pdf,
                **cfg.augmentation(),
            )
            xs.append(_with_channel(x, cfg.ndim))
            ys.append(pack_targets(y, w))
        return np.stack(xs), np.stack(ys)


def validation_tiles(
    samples: Sequence[TrainingSample],
    images: Sequence[np.ndarray],
    config: TrainingConfig,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed validation tiles ``(x, packed targets)``: no augmentation, centres drawn once from each sample's pdf."""
    rng = np.random.default_rng([config.seed, 7919])
    xs, ys = [], []
    for s, image in zip(samples, images):
        for _ in range(config.val_tiles_per_image):
            x, y, w = augment_sample(
                image,
                s.classes,
                s.weights,
                rng,
                in_shape=in_shape,
                out_shape=out_shape,
                pdf=s.pdf,
                rotation=False,
                elastic=False,
                intensity=False,
                border=config.border_mode,
            )
            xs.append(_with_channel(x, config.ndim))
            ys.append(pack_targets(y, w))
    return np.stack(xs), np.stack(ys)
