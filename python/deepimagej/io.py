"""Reading and writing images (TIFF with ImageJ metadata, NumPy, PNG), atomically.

Axes follow bioimage.io letters; ImageJ hyperstacks (TZCYXS) are mapped so that ``S``
(RGB samples) becomes ``c``. Pixel size (ImageJ calibration / TIFF resolution) is kept.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import InputImageError


@dataclass
class ImageData:
    """An image with named axes and what is known about its pixels.

    Attributes:
        array: pixel data.
        axes: bioimage.io axis letters, one per dimension of ``array`` (e.g. ``"zyx"``).
        pixel_size: physical size per spatial axis, e.g. ``{"x": 0.65, "y": 0.65}``.
        unit: unit of ``pixel_size`` (e.g. ``"micron"``).
        metadata: remaining ImageJ metadata worth keeping.
    """

    array: np.ndarray
    axes: str
    pixel_size: dict[str, float] = field(default_factory=dict)
    unit: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def tiff_axes(series_axes: str) -> str:
    """tifffile series axes (``TZCYXS``...) -> deepimagej letters (``S`` samples -> ``c``)."""
    mapping = {"T": "t", "Z": "z", "C": "c", "Y": "y", "X": "x", "S": "c", "Q": "b", "I": "b"}
    axes = "".join(mapping.get(a, "b") for a in series_axes)
    if len(set(axes)) != len(axes):  # e.g. C and S both present: keep the first as channel
        seen: set[str] = set()
        fixed = []
        for a in axes:
            fixed.append(a if a not in seen else "b")
            seen.add(a)
        axes = "".join(fixed)
    return axes


def read_image(path: str | Path) -> ImageData:
    """Read an image file (TIFF, NPY, PNG/JPEG) with its axes and pixel size.

    Raises:
        InputImageError: the file is missing or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path)
        return ImageData(array, _default_axes(array))
    if suffix in {".tif", ".tiff"}:
        return _read_tiff(path)
    try:
        from skimage import io

        array = io.imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputImageError(f"{path}: cannot read image ({type(exc).__name__})") from None
    return ImageData(array, _default_axes(array))


def _default_axes(array: np.ndarray) -> str:
    if array.ndim == 2:
        return "yx"
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return "yxc"
    return {3: "zyx", 4: "czyx", 5: "tczyx"}.get(array.ndim, "b" * (array.ndim - 2) + "yx")


def _read_tiff(path: Path) -> ImageData:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = tiff_axes(series.axes)
            ij = tif.imagej_metadata or {}
            page = tif.pages.first
            pixel_size: dict[str, float] = {}
            for tag, axis in (("XResolution", "x"), ("YResolution", "y")):
                res = page.tags.get(tag)
                if res is not None:
                    num, den = res.value
                    if num:
                        pixel_size[axis] = den / num
            if "spacing" in ij:
                pixel_size["z"] = float(ij["spacing"])
            unit = ij.get("unit")
            keep = {k: v for k, v in ij.items() if k in {"unit", "spacing", "finterval", "Labels", "Ranges", "mode"}}
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise InputImageError(f"{path}: not a readable TIFF ({exc})") from None
    if unit is None or unit in ("pixel", ""):
        pixel_size = {k: v for k, v in pixel_size.items() if not (v == 1.0)}
    return ImageData(array, axes, pixel_size, unit, keep)


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)


def write_image(path: str | Path, image: ImageData | np.ndarray, axes: str | None = None) -> Path:
    """Write an image atomically (temporary file + rename): TIFF (ImageJ hyperstack) or NPY.

    Float64 and int64 data are stored as float32/int32 in TIFF (ImageJ cannot read them).
    """
    path = Path(path)
    data = image if isinstance(image, ImageData) else ImageData(np.asarray(image), axes or _default_axes(np.asarray(image)))
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        if path.suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, data.array)
        else:
            _write_tiff(Path(tmp), data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the file the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _imagej_order(data: ImageData) -> tuple[np.ndarray, str]:
    """Reorder to ImageJ's TZCYX order; batch and time axes are folded into one T axis."""
    arr, axes = data.array, data.axes
    extra = [i for i, a in enumerate(axes) if a in "bt"]
    if extra:
        keep = [i for i in range(len(axes)) if i not in extra]
        n = int(np.prod([arr.shape[i] for i in extra]))
        arr = np.transpose(arr, extra + keep).reshape((n,) + tuple(arr.shape[i] for i in keep))
        axes = "t" + "".join(axes[i] for i in keep)
    order = [axes.index(a) for a in "tzcyx" if a in axes]
    if len(order) != arr.ndim:
        raise InputImageError(f"cannot store an image with axes '{data.axes}' as an ImageJ TIFF")
    return np.transpose(arr, order), "".join(axes[i] for i in order).upper()


def _write_tiff(path: Path, data: ImageData) -> None:
    import tifffile

    arr, axes = _imagej_order(data)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype in (np.int64, np.uint64, np.uint32):
        arr = arr.astype(np.int32 if arr.dtype == np.int64 else np.float32)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    metadata: dict[str, Any] = {"axes": axes}
    if data.unit:
        metadata["unit"] = data.unit
    if "z" in data.pixel_size:
        metadata["spacing"] = data.pixel_size["z"]
    resolution = None
    if "x" in data.pixel_size and "y" in data.pixel_size:
        resolution = (1.0 / data.pixel_size["x"], 1.0 / data.pixel_size["y"])
    tifffile.imwrite(path, np.ascontiguousarray(arr), imagej=True, metadata=metadata, resolution=resolution)
