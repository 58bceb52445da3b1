"""The numpy side of ImageJ's image layout: named axes <-> a stack of planes in C, Z, T order.

ImageJ stores a hyperstack as planes (y, x) ordered channel fastest, then slice, then frame,
with 8-bit, 16-bit, 32-bit or packed 24-bit RGB pixels. This module is the one place that maps
an array with bioimage.io axes (``"yx"``, ``"zyx"``, ``"tczyx"``, ``"yxc"``...) onto that layout
and back, in numpy only (no Java): :mod:`deepimagej.imagej.convert` uses it to make ``ImagePlus``
objects in the embedded ImageJ, the plugin worker to share images with a separate ImageJ
through memory-mapped files (:mod:`deepimagej.imagej.plugin.protocol`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from deepimagej.bundle.axes import image_axes
from deepimagej.errors import InputImageError

IJ_ORDER = "tzcyx"  # numpy order of a stack laid out the way ImageJ stores planes (c fastest)
DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}
SIGNED16_OFFSET = 32768


def pixel_type(dtype: np.dtype) -> np.dtype:
    """The numpy dtype the pixels are stored with in ImageJ (uint8, uint16 or float32)."""
    if dtype in (np.uint8, np.uint16, np.float32):
        return np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.int16:
        return np.dtype(np.uint16)
    if dtype.kind in "iuf":
        return np.dtype(np.float32)
    raise InputImageError(
        f"images of type {dtype} cannot be shown in ImageJ (use uint8, uint16, int16 or float32)"
    )


@dataclass(frozen=True)
class Layout:
    """How an array maps onto ImageJ planes.

    Attributes:
        channels, slices, frames: ImageJ's C, Z, T sizes.
        height, width: the plane size.
        dtype: the stored pixel type (``int32`` for packed RGB).
        rgb: 24-bit RGB (a ``c`` axis of size 3 packed into one int per pixel).
        signed16: int16 pixels stored with ImageJ's signed 16-bit offset.
    """

    channels: int
    slices: int
    frames: int
    height: int
    width: int
    dtype: np.dtype
    rgb: bool = False
    signed16: bool = False

    @property
    def n_planes(self) -> int:
        return self.channels * self.slices * self.frames

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the plane stack, ``(planes, height, width)``."""
        return self.n_planes, self.height, self.width

    @property
    def axes(self) -> str:
        """Axes of the array :func:`from_planes` returns (size-1 axes dropped)."""
        return planes_axes(self.channels, self.slices, self.frames, self.rgb)


def planes_axes(channels: int, slices: int, frames: int, rgb: bool = False) -> str:
    """``t c z y x`` without size-1 axes; RGB images get a trailing ``c`` of size 3."""
    axes = ("t" if frames > 1 else "") + ("c" if channels > 1 else "") + ("z" if slices > 1 else "") + "yx"
    return axes + "c" if rgb else axes


def _ij_view(image: np.ndarray, axes: str) -> np.ndarray:
    """A view of ``image`` with axes t, z, c, y, x (missing axes of size 1); no copy."""
    full = image
    for a in IJ_ORDER:
        if a not in axes:
            full = full[..., np.newaxis]
            axes += a
    return np.transpose(full, [axes.index(a) for a in IJ_ORDER])


def layout_of(image: np.ndarray, axes: str | None = None, rgb: bool = False) -> Layout:
    """The ImageJ layout of ``image`` (axes default by rank: ``yx``, ``zyx``, ``czyx``, ``tczyx``).

    Raises:
        InputImageError: unsupported rank, axes or pixel type.
    """
    if image.ndim not in DEFAULT_AXES:
        raise InputImageError(f"ImageJ images have 2 to 5 dimensions; got shape {image.shape}")
    axes = image_axes(axes or DEFAULT_AXES[image.ndim], image.ndim, letters="tczyx", required="yx")
    if rgb and (image.dtype != np.uint8 or "c" not in axes or image.shape[axes.index("c")] != 3):
        raise InputImageError("an RGB image needs uint8 pixels and a channel axis 'c' of size 3")
    n_t, n_z, n_c, height, width = _ij_view(image, axes).shape
    if rgb:
        return Layout(1, n_z, n_t, height, width, np.dtype(np.int32), rgb=True)
    return Layout(n_c, n_z, n_t, height, width, pixel_type(image.dtype), signed16=image.dtype == np.int16)


def to_planes(
    image: np.ndarray, axes: str | None = None, *, rgb: bool = False, out: np.ndarray | None = None
) -> tuple[np.ndarray, Layout]:
    """The pixels of ``image`` as ImageJ stores them: planes ``(n, height, width)`` in C, Z, T order.

    Args:
        image: the array; never modified.
        axes: its axes (default by rank).
        rgb: pack a uint8 ``c`` axis of size 3 into 24-bit RGB pixels.
        out: write the planes here (shape ``layout.shape``, dtype ``layout.dtype``, e.g. a
            ``numpy.memmap``) instead of a new array.

    Returns:
        The planes (``out`` when given) and their :class:`Layout`.
    """
    image = np.asarray(image)
    layout = layout_of(image, axes, rgb)
    axes = image_axes(axes or DEFAULT_AXES[image.ndim], image.ndim, letters="tczyx", required="yx")
    big_ints = (
        image.dtype.kind in "iu"
        and image.dtype not in (np.uint8, np.uint16, np.int16)
        and image.size
        and max(abs(int(image.min())), abs(int(image.max()))) >= 2**24
    )
    if big_ints:
        warnings.warn(f"{image.dtype} values beyond 2**24 lose precision as ImageJ 32-bit", stacklevel=3)
    full = _ij_view(image, axes)
    if out is None:
        out = np.empty(layout.shape, dtype=layout.dtype)
    elif out.shape != layout.shape or out.dtype != layout.dtype:
        raise InputImageError(
            f"planes of shape {layout.shape} {layout.dtype} do not fit {out.shape} {out.dtype}"
        )
    target = out.reshape(full.shape[:2] + (layout.channels, layout.height, layout.width))
    if layout.rgb:  # pack c (size 3) into one int per pixel: 0xFFRRGGBB
        c = full.astype(np.uint32)
        packed = (c[:, :, 0] << 16) | (c[:, :, 1] << 8) | c[:, :, 2] | np.uint32(0xFF000000)
        target[:, :, 0] = packed.view(np.int32)
    elif layout.signed16:
        np.add(full, SIGNED16_OFFSET, out=target, dtype=np.int32, casting="unsafe")
    elif image.dtype == np.bool_:
        np.multiply(full, np.uint8(255), out=target, dtype=np.uint8, casting="unsafe")
    else:
        np.copyto(target, full, casting="unsafe")
    return out, layout


def from_planes(planes: np.ndarray, layout: Layout, *, squeeze: bool = True) -> tuple[np.ndarray, str]:
    """Planes as ImageJ stores them -> ``(array, axes)``, axes ``t c z y x`` (+ ``c`` last for RGB).

    Plain 8/16/32-bit planes come back as a view (no copy: a ``numpy.memmap`` stays one);
    signed 16-bit and RGB pixels are converted.
    """
    stack = planes.reshape(layout.frames, layout.slices, layout.channels, layout.height, layout.width)
    if layout.signed16:
        stack = (stack.astype(np.int32) - SIGNED16_OFFSET).astype(np.int16)
    if layout.rgb:  # unpack 0xRRGGBB into a trailing c axis of size 3 (RGB images have one channel)
        u = stack[:, :, 0].view(np.uint32)
        arr = np.stack([(u >> 16) & 0xFF, (u >> 8) & 0xFF, u & 0xFF], axis=-1).astype(np.uint8)
        target = "tzyxc"
    else:
        arr = np.transpose(stack, [0, 2, 1, 3, 4])  # t z c y x -> t c z y x
        target = "tczyx"
    if squeeze:
        keep = [i for i, a in enumerate(target) if a in "yx" or arr.shape[i] > 1 or (layout.rgb and a == "c")]
        arr = arr.reshape([arr.shape[i] for i in keep])
        target = "".join(target[i] for i in keep)
    return arr, target
