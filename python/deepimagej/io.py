"""Reading and writing images (TIFF with ImageJ metadata, NumPy, PNG), safely and atomically.

Axes follow bioimage.io letters; ImageJ hyperstacks (TZCYXS) are mapped so that ``S``
(RGB samples) becomes ``c``. Pixel size (ImageJ calibration / TIFF resolution) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import InputImageError, first_line
from deepimagej.outputs import atomic_file, image_format

#: An image may declare at most this many times more bytes than its file holds (beyond 64 MiB).
MAX_EXPANSION = 4096
#: What to do with NaN/Inf input pixels (:func:`check_pixels`).
NAN_POLICIES = ("error", "zero", "mean")


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

    The size the file declares is checked before any pixel is read: an image larger than the
    memory available, or absurdly large for its file (a decompression bomb, a damaged header),
    is refused. ``.npy`` files holding pickled Python objects are refused (never unpickled).

    Raises:
        InputImageError: the file is missing, not an image, or declares an impossible size.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = load_npy(path)
        return ImageData(array, _default_axes(array, path))
    if suffix in {".tif", ".tiff"}:
        return _read_tiff(path)
    return _read_other(path)


def load_npy(path: str | Path) -> np.ndarray:
    """Load a ``.npy`` array without unpickling anything, after checking its declared size.

    Raises:
        InputImageError: not a NumPy file, an object (pickled) array, or a size the file or the
            memory cannot hold.
    """
    path = Path(path)
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise InputImageError(
                f"{path}: holds pickled Python objects, which deepimagej never loads (they can run code); "
                "save a numeric array (np.save(path, array.astype('float32')))"
            ) from None
        raise InputImageError(f"{path}: not a readable .npy array ({first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise InputImageError(f"{path}: not a readable .npy array ({first_line(exc)})") from None
    if not isinstance(mapped, np.ndarray):
        raise InputImageError(f"{path}: a .npz archive, not one array; save a single array with np.save")
    check_declared_size(path, mapped.shape, mapped.dtype, path.stat().st_size)
    return np.array(mapped)


def check_declared_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, file_size: int) -> None:
    """Refuse an image whose declared size cannot be right or cannot fit in memory, before allocating it.

    Raises:
        InputImageError: more bytes than the available memory, or more than
            :data:`MAX_EXPANSION` times the file's size (beyond a floor of 64 MiB).
    """
    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    shown = "x".join(str(s) for s in shape)
    if nbytes > 64 * 2**20 and nbytes > MAX_EXPANSION * max(file_size, 1):
        raise InputImageError(
            f"{path}: declares a {shown} {np.dtype(dtype).name} image ({_gib(nbytes)}) in a file of "
            f"{file_size} bytes; the file is damaged or not an image"
        )
    available = _available_memory()
    if available and nbytes > available:
        raise InputImageError(
            f"{path}: the {shown} {np.dtype(dtype).name} image needs {_gib(nbytes)} of memory, more than the "
            f"{_gib(available)} available; crop it or use a machine with more memory"
        )


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - unknown memory: do not refuse
        return 0


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _read_other(path: Path) -> ImageData:
    """PNG, JPEG, BMP...: header checked with Pillow, pixels read by scikit-image."""
    try:
        from PIL import Image

        with Image.open(path) as header:
            width, height = header.size
            bands = len(header.getbands())
            itemsize = 2 if header.mode.startswith("I;16") else (4 if header.mode in ("I", "F") else 1)
        check_declared_size(path, (height, width, bands), np.dtype(f"u{itemsize}"), path.stat().st_size)
        from skimage import io

        array = io.imread(path)
    except InputImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputImageError(
            f"{path}: cannot read image ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    return ImageData(array, _default_axes(array, path))


def _default_axes(array: np.ndarray, source: Path | str = "image") -> str:
    if array.ndim < 2:
        raise InputImageError(
            f"{source}: an array of shape {array.shape} is not an image: an image has at least 2 dimensions (y, x)"
        )
    if array.ndim == 2:
        return "yx"
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return "yxc"
    return {3: "zyx", 4: "czyx", 5: "tczyx"}.get(array.ndim, "b" * (array.ndim - 2) + "yx")


def _read_tiff(path: Path) -> ImageData:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputImageError(f"{path}: a TIFF file without any image")
            series = tif.series[0]
            check_declared_size(path, series.shape, series.dtype, path.stat().st_size)
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
            keep = {
                k: v
                for k, v in ij.items()
                if k in {"unit", "spacing", "finterval", "Labels", "Ranges", "mode"}
            }
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, TypeError) as exc:
        raise InputImageError(f"{path}: not a readable TIFF ({first_line(exc)})") from None
    if unit is None or unit in ("pixel", ""):
        pixel_size = {k: v for k, v in pixel_size.items() if v != 1.0}
    return ImageData(array, axes, pixel_size, unit, keep)


def write_image(path: str | Path, image: ImageData | np.ndarray, axes: str | None = None) -> Path:
    """Write an image atomically in the format its extension names: TIFF (ImageJ hyperstack), PNG or NPY.

    The data goes to a temporary file in the target folder that replaces ``path`` only once
    complete (:func:`deepimagej.outputs.atomic_file`): a failure leaves no partial file and
    the previous file, if any, intact. Free disk space is checked first.
    Float64 and int64 data are stored as float32/int32 in TIFF (ImageJ cannot read them).
    PNG holds 2D 8/16-bit images (grey, or RGB/RGBA 8-bit) only.

    Raises:
        OutputError: unsupported extension, no space, no permission, name too long...
        InputImageError: the data does not fit the format (e.g. a float image as PNG).
    """
    path = Path(path)
    data = (
        image
        if isinstance(image, ImageData)
        else ImageData(np.asarray(image), axes or _default_axes(np.asarray(image)))
    )
    fmt = image_format(path)
    if np.iscomplexobj(data.array):
        raise InputImageError(f"{path}: cannot store complex pixels; write the magnitude or the real part")
    if fmt == "png":
        pixels = _png_pixels(path, data)
    with atomic_file(path, size_hint=int(data.array.nbytes)) as tmp:
        if fmt == "npy":
            with open(tmp, "wb") as fh:
                np.save(fh, data.array, allow_pickle=False)
        elif fmt == "png":
            from PIL import Image

            Image.fromarray(pixels).save(tmp, format="PNG")
        else:
            _write_tiff(tmp, data)
    return path


def _png_pixels(path: Path, data: ImageData) -> np.ndarray:
    """The array a PNG can hold: 2D grey (8/16-bit) or 2D RGB(A) 8-bit, else a one-line refusal.

    Whole-number results (masks, labels: often float after post-processing) are stored exactly
    as 8-bit (values 0-255) or 16-bit (0-65535) PNG.
    """
    arr, axes = data.array, data.axes
    squeeze = tuple(i for i, a in enumerate(axes) if a not in "yxc" and arr.shape[i] == 1)
    arr = np.squeeze(arr, axis=squeeze) if squeeze else arr
    axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
    if "c" in axes and arr.shape[axes.index("c")] == 1:
        arr, axes = np.take(arr, 0, axis=axes.index("c")), axes.replace("c", "")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype not in (np.uint8, np.uint16) and arr.dtype.kind in "iuf" and arr.size:
        low, high = float(arr.min()), float(arr.max())
        if (
            np.isfinite(low)
            and np.isfinite(high)
            and low >= 0
            and high <= 65535
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.uint8 if high <= 255 else np.uint16)
    if axes == "yx" and arr.dtype in (np.uint8, np.uint16):
        return arr
    if sorted(axes) == ["c", "x", "y"] and arr.dtype == np.uint8 and arr.shape[axes.index("c")] in (3, 4):
        return np.moveaxis(arr, axes.index("c"), -1) if axes != "yxc" else arr
    shape = "x".join(str(s) for s in data.array.shape)
    raise InputImageError(
        f"{path}: PNG holds 2D 8/16-bit images (whole numbers 0-65535); this result is {shape} ({data.axes}) "
        f"{data.array.dtype} with other values: write .tif or .npy instead"
    )


def check_pixels(array: np.ndarray, nan: str = "error", *, name: str = "image") -> tuple[np.ndarray, int]:
    """Refuse pixels a model cannot use: complex values, NaN/Inf (unless ``nan`` says how to replace them).

    Args:
        array: the input image.
        nan: ``"error"`` (refuse NaN/Inf), ``"zero"`` (replace them by 0) or ``"mean"`` (by the
            mean of the finite pixels).
        name: what to call the array in messages.

    Returns:
        The array (a cleaned copy when pixels were replaced; never modified in place) and the
        number of pixels replaced.

    Raises:
        InputImageError: complex or non-numeric pixels; NaN/Inf with ``nan="error"``; an image
            without a single finite pixel.
    """
    if nan not in NAN_POLICIES:
        raise InputImageError(f"nan={nan!r}: use one of {', '.join(NAN_POLICIES)}")
    kind = array.dtype.kind
    if kind == "c":
        raise InputImageError(
            f"{name} has complex pixels ({array.dtype}); models run on real values: take the magnitude "
            "(np.abs) or the real part first"
        )
    if kind not in "biuf":
        raise InputImageError(f"{name} has non-numeric pixels ({array.dtype}); give a numeric image")
    if kind != "f":
        return array, 0
    finite = np.isfinite(array)
    n_bad = int(array.size - np.count_nonzero(finite))
    if n_bad == 0:
        return array, 0
    n_nan = int(np.count_nonzero(np.isnan(array)))
    counts = f"{n_nan} NaN and {n_bad - n_nan} infinite pixel(s) of {array.size}"
    if n_bad == array.size:
        raise InputImageError(f"{name} has no finite pixel ({counts}); nothing to run the model on")
    if nan == "error":
        raise InputImageError(
            f"{name} has {counts}; clean the image, or replace them: --nan=zero / --nan=mean (nan='zero' in Python)"
        )
    fill = 0.0 if nan == "zero" else float(np.mean(array[finite], dtype=np.float64))
    return np.where(finite, array, np.asarray(fill, dtype=array.dtype)), n_bad


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
