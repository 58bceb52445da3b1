"""The files of a training set: images read through :func:`deepimagej.io.read_image`, images paired
with their annotation files by name, and the validation split.

Images come back in the U-Net's layout: spatial axes first (``y, x`` or ``z, y, x``), a channel
axis last when there is one, with their calibration (micrometres per pixel) when the file has one.
Every user error is a :class:`~deepimagej.errors.DeepImageJError` with a one-line message naming
the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepimagej.errors import TrainingError
from deepimagej.io import read_image
from deepimagej.resample import image_pixel_size

__all__ = [
    "IMAGE_SUFFIXES",
    "ROI_SUFFIXES",
    "load_folder_pairs",
    "load_image",
    "load_image_with_size",
    "spatial_dims",
    "split_validation",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif")
ROI_SUFFIXES = (".zip", ".roi")
_LABEL_STEM_SUFFIXES = ("_labels", "_label", "_masks", "_mask", "_rois", "_roiset", "_roi", "_points", "_gt")


def _read(path: str | Path) -> tuple[np.ndarray, str, dict[str, float]]:
    """Pixels with spatial axes first and a channel axis last (when there is one), their axes and pixel size."""
    data = read_image(path)
    array, axes = data.array, data.axes.replace("b", "z", 1) if "z" not in data.axes else data.axes
    if "c" in axes:
        array = np.moveaxis(array, axes.index("c"), -1)
        axes = axes.replace("c", "") + "c"
    if set(axes) - set("zyxc"):
        raise TrainingError(
            f"'{Path(path).name}' has axes '{data.axes}'; the U-Net trains on 2D images or z stacks "
            "(split time series into single images)"
        )
    if axes.endswith("c") and array.shape[-1] == 4 and np.all(array[..., 3] == array[..., 3].flat[0]):
        array = array[..., :3]  # RGBA with a constant alpha: RGB
    if axes.endswith("c") and array.shape[-1] == 1:
        array, axes = array[..., 0], axes[:-1]
    return np.asarray(array), axes, image_pixel_size(data)


def spatial_dims(path: str | Path) -> int:
    """2 for a 2D image, 3 for a z stack."""
    return 3 if "z" in _read(path)[1] else 2


def load_image_with_size(path: str | Path) -> tuple[np.ndarray, dict[str, float]]:
    """An image file in the U-Net's layout and its pixel size.

    Args:
        path: an image file (TIFF, PNG, JPEG, ...).

    Returns:
        ``(array, pixel_size)``: the pixels as ``(Y, X)``, ``(Y, X, C)``, ``(Z, Y, X)`` or
        ``(Z, Y, X, C)`` (a stack without ImageJ axes is a z stack; a constant alpha channel of
        an RGBA image is dropped) and the calibration in micrometres per axis letter (empty when
        the file has none).

    Raises:
        InputImageError: the file does not exist or is not an image (from :func:`deepimagej.io.read_image`).
        TrainingError: the image has a time axis or several stacks.
    """
    array, _, pixel_size = _read(path)
    return array, pixel_size


def load_image(path: str | Path) -> np.ndarray:
    """An image file in the U-Net's layout (see :func:`load_image_with_size`)."""
    return load_image_with_size(path)[0]


def _natural_key(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.stem)]


def _label_key(stem: str) -> str:
    s = stem.lower()
    for suffix in _LABEL_STEM_SUFFIXES:
        if s.endswith(suffix) and len(s) > len(suffix):
            return s[: -len(suffix)]
    return s


def load_folder_pairs(images_dir: str | Path, labels_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pair image files with their annotation files by file name.

    An image ``cell_01.tif`` matches ``cell_01.png`` / ``cell_01.tif`` / ``cell_01.zip`` (ROIs) /
    ``cell_01.roi`` in ``labels_dir``, also with a suffix such as ``_mask``, ``_labels``,
    ``_rois`` (``cell_01_mask.png``). Matching ignores case.

    Args:
        images_dir: folder of images.
        labels_dir: folder of label masks / ROI files.

    Returns:
        ``(image, labels)`` pairs in natural order of the image names (2 before 10).

    Raises:
        TrainingError: missing folder, no image, an image without labels, or ambiguous labels.
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for what, d in (("images", images_dir), ("labels", labels_dir)):
        if not d.is_dir():
            raise TrainingError(f"{what} folder '{d}' does not exist")
    images = sorted(
        (p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=_natural_key,
    )
    if not images:
        raise TrainingError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in '{images_dir}'")
    by_key: dict[str, list[Path]] = {}
    for p in labels_dir.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + ROI_SUFFIXES:
            by_key.setdefault(_label_key(p.stem), []).append(p)
    pairs, missing = [], []
    for img in images:
        found = by_key.get(img.stem.lower()) or by_key.get(_label_key(img.stem))
        if not found:
            missing.append(img.name)
            continue
        if len(found) > 1:
            names = ", ".join(sorted(f"'{f.name}'" for f in found))
            raise TrainingError(f"image '{img.name}' has several label files in '{labels_dir}': {names}")
        pairs.append((img, found[0]))
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise TrainingError(
            f"no label file in '{labels_dir}' for image(s) {shown} (labels are matched by file name)"
        )
    return pairs


def split_validation(samples: Sequence, n_val: float = 0.2, *, seed: int | None = None) -> tuple[list, list]:
    """Split samples into training and validation sets.

    Args:
        samples: samples (or file pairs).
        n_val: number of validation samples (int >= 0), or a fraction in ``(0, 1)`` rounded to at
            least one sample. 0 gives no validation set.
        seed: without a seed the *last* ``n_val`` samples are held out (reproducible, follows the
            given order); with a seed they are chosen at random.

    Returns:
        ``(train, val)``, both in the original order.

    Raises:
        TrainingError: fewer than ``n_val + 1`` samples (at least one must remain for training).
    """
    samples = list(samples)
    n = len(samples)
    if isinstance(n_val, float) and not float(n_val).is_integer():
        if not 0 < n_val < 1:
            raise TrainingError(f"validation fraction must be between 0 and 1, got {n_val}")
        k = max(1, round(n_val * n))
    else:
        k = int(n_val)
        if k < 0:
            raise TrainingError(f"number of validation images must be >= 0, got {k}")
    if k == 0:
        return samples, []
    if n < k + 1:
        raise TrainingError(
            f"{n} image(s) are too few for a validation split of {k}: at least {k + 1} are needed "
            "(one for training), or train without validation"
        )
    if seed is None:
        val_idx = set(range(n - k, n))
    else:
        val_idx = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
