"""numpy / xarray <-> ImageJ ``ImagePlus`` (XYCZT hyperstacks), lossless where ImageJ can be.

Axes are bioimage.io letters. ImageJ stores planes in C, Z, T order (channel fastest); an
array with axes such as ``"yx"``, ``"zyx"``, ``"tczyx"`` or ``"yxc"`` maps onto that once, here.

Pixel types:

============  ==================  ========================================
numpy         ImageJ              round trip
============  ==================  ========================================
uint8         8-bit               exact
uint16        16-bit              exact
int16         16-bit + signed     exact (ImageJ's "signed 16-bit" calibration, offset 32768)
float32       32-bit              exact
bool          8-bit (0 / 255)     comes back as uint8 0/255
uint8 RGB     RGB (``rgb=True``)  exact (axis ``c`` of size 3)
other         32-bit              converted to float32 (exact for integers below 2**24)
============  ==================  ========================================

Calibration (pixel width/height/depth, unit, frame interval, origin) travels as xarray
coordinates (``x = origin + i * pixel_width``) and ``attrs["unit"]`` / ``attrs["time_unit"]``,
or as the ``calibration`` mapping of :func:`to_imageplus`.

Pixel data crosses the JNI boundary through NIO direct buffers wrapping numpy memory (one
``memcpy`` per plane each way); no view of a Java array is ever kept.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from deepimagej.errors import InputImageError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

IJ_ORDER = "tzcyx"  # numpy order of a stack laid out the way ImageJ stores planes (c fastest)
DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}
SIGNED16_OFFSET = 32768


@functools.lru_cache(maxsize=1)
def _j():
    from jpype import JClass

    class J:
        ImagePlus = JClass("ij.ImagePlus")
        ImageStack = JClass("ij.ImageStack")
        CompositeImage = JClass("ij.CompositeImage")
        ByteProcessor = JClass("ij.process.ByteProcessor")
        ShortProcessor = JClass("ij.process.ShortProcessor")
        FloatProcessor = JClass("ij.process.FloatProcessor")
        ColorProcessor = JClass("ij.process.ColorProcessor")
        Calibration = JClass("ij.measure.Calibration")
        Pixels = JClass("deepimagej.ij.Pixels")

    return J


def normalize_axes(axes: str, ndim: int) -> str:
    """Lower-case axis letters, check them against the array's number of dimensions."""
    axes = axes.lower().replace(",", "").replace(" ", "")
    if len(axes) != ndim:
        raise InputImageError(f"axes '{axes}' name {len(axes)} dimensions but the image has {ndim}")
    if len(set(axes)) != len(axes) or not set(axes) <= set("tczyx") or not {"y", "x"} <= set(axes):
        raise InputImageError(f"axes '{axes}' must be distinct letters among t, c, z, y, x and include y and x")
    return axes


def _is_xarray(image: Any) -> bool:
    return hasattr(image, "dims") and hasattr(image, "coords") and hasattr(image, "values")


def _pixel_type(dtype: np.dtype) -> np.dtype:
    """The numpy dtype the pixels are stored with in Java."""
    if dtype in (np.uint8, np.uint16, np.float32):
        return dtype
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.int16:
        return np.dtype(np.uint16)
    if dtype.kind in "iuf":
        return np.dtype(np.float32)
    raise InputImageError(f"images of type {dtype} cannot be shown in ImageJ (use uint8, uint16, int16 or float32)")


def _calibration_from_xarray(image: xr.DataArray) -> dict[str, Any]:
    cal: dict[str, Any] = {}
    for axis in "xyzt":
        if axis in image.coords and image.sizes.get(axis, 0) >= 1:
            values = np.asarray(image.coords[axis].values, dtype=np.float64)
            if values.size >= 2:
                cal[axis] = float(values[1] - values[0])
            if values.size >= 1 and axis in "xyz":
                cal[f"{axis}_origin"] = float(values[0])
    for key in ("unit", "time_unit"):
        if key in image.attrs:
            cal[key] = str(image.attrs[key])
    return cal


def to_imageplus(
    image: np.ndarray | xr.DataArray,
    title: str = "image",
    axes: str | None = None,
    *,
    calibration: Mapping[str, Any] | None = None,
    rgb: bool | None = None,
):
    """Make an ImageJ ``ImagePlus`` from a numpy array or an xarray ``DataArray``.

    Args:
        image: the pixels. An xarray's ``dims`` name its axes; its ``x``/``y``/``z``/``t``
            coordinates give the calibration.
        title: the image title in ImageJ (what ``selectWindow`` uses).
        axes: axis letters of a numpy array (default ``yx``/``zyx``/``czyx``/``tczyx`` by rank).
        calibration: ``{"x": pw, "y": ph, "z": pd, "t": frame_interval, "unit": "µm",
            "time_unit": "s", "x_origin": ..}`` (overrides what an xarray carries).
        rgb: make a 24-bit RGB image from a uint8 array with a ``c`` axis of size 3 (default:
            ``attrs["rgb"]`` of an xarray, else False).

    Raises:
        InputImageError: unsupported axes or pixel type.
    """
    J = _j()
    cal: dict[str, Any] = {}
    if _is_xarray(image):
        if axes is None:
            axes = "".join(str(d) for d in image.dims)
        cal.update(_calibration_from_xarray(image))
        if rgb is None:
            rgb = bool(image.attrs.get("rgb", False))
        if not title or title == "image":
            title = str(image.name) if image.name is not None else title
        image = np.asarray(image.values)
    image = np.asarray(image)
    cal.update(calibration or {})
    if image.ndim not in DEFAULT_AXES:
        raise InputImageError(f"ImageJ images have 2 to 5 dimensions; got shape {image.shape}")
    axes = normalize_axes(axes or DEFAULT_AXES[image.ndim], image.ndim)
    rgb = bool(rgb)
    if rgb and (image.dtype != np.uint8 or "c" not in axes or image.shape[axes.index("c")] != 3):
        raise InputImageError("an RGB image needs uint8 pixels and a channel axis 'c' of size 3")

    signed16 = image.dtype == np.int16
    store = _pixel_type(image.dtype)
    big_ints = image.dtype.kind in "iu" and image.size and max(abs(int(image.min())), abs(int(image.max()))) >= 2**24
    if store == np.float32 and image.dtype != np.float32 and big_ints:
        warnings.warn(f"{image.dtype} values beyond 2**24 lose precision as ImageJ 32-bit", stacklevel=2)
    # bring to t, z, c, y, x (missing axes of size 1)
    full = image
    for a in IJ_ORDER:
        if a not in axes:
            full = full[..., np.newaxis]
            axes += a
    full = np.transpose(full, [axes.index(a) for a in IJ_ORDER])
    n_t, n_z, n_c, height, width = full.shape
    if signed16:
        full = (full.astype(np.int32) + SIGNED16_OFFSET).astype(np.uint16)
    elif image.dtype == np.bool_:
        full = full.astype(np.uint8) * np.uint8(255)
    elif store != image.dtype:
        full = full.astype(store)
    if rgb:
        # pack c (size 3) into one int per pixel: 0xRRGGBB
        c = full.astype(np.uint32)
        packed = (c[:, :, 0] << 16) | (c[:, :, 1] << 8) | c[:, :, 2] | np.uint32(0xFF000000)
        planes = np.ascontiguousarray(packed.view(np.int32).reshape(n_t * n_z, height, width))
        n_c = 1
    else:
        planes = np.ascontiguousarray(full.reshape(n_t * n_z * n_c, height, width))
    planes = np.require(planes, requirements=["C", "W"])

    stack = J.ImageStack(width, height)
    for plane in planes:
        stack.addSlice("", _processor(J, plane, rgb))
    imp = J.ImagePlus(title, stack)
    imp.setDimensions(n_c, n_z, n_t)
    if n_c > 1 or n_t > 1:
        imp.setOpenAsHyperStack(True)
    if n_c > 1 and not rgb:
        imp = J.CompositeImage(imp, J.CompositeImage.COMPOSITE)
    _apply_calibration(J, imp, cal, signed16)
    if not rgb:
        imp.resetDisplayRange()
    return imp


def _processor(J, plane: np.ndarray, rgb: bool):
    import jpype

    height, width = plane.shape
    buf = jpype.nio.convertToDirectBuffer(plane)
    if rgb:
        return J.ColorProcessor(width, height, J.Pixels.ints(buf))
    if plane.dtype == np.uint8:
        return J.ByteProcessor(width, height, J.Pixels.bytes(buf))
    if plane.dtype == np.uint16:
        return J.ShortProcessor(width, height, J.Pixels.shorts(buf), None)
    return J.FloatProcessor(width, height, J.Pixels.floats(buf))


def _apply_calibration(J, imp, cal: Mapping[str, Any], signed16: bool) -> None:
    c = J.Calibration(imp)
    if "x" in cal:
        c.pixelWidth = float(cal["x"])
    if "y" in cal:
        c.pixelHeight = float(cal["y"])
    if "z" in cal:
        c.pixelDepth = float(cal["z"])
    if "t" in cal:
        c.frameInterval = float(cal["t"])
    if cal.get("unit"):
        c.setUnit(str(cal["unit"]))
    if cal.get("time_unit"):
        c.setTimeUnit(str(cal["time_unit"]))
    for axis, attr, size in (("x", "xOrigin", "pixelWidth"), ("y", "yOrigin", "pixelHeight"), ("z", "zOrigin", "pixelDepth")):
        origin = cal.get(f"{axis}_origin")
        if origin:
            setattr(c, attr, -float(origin) / float(getattr(c, size)))
    if signed16:
        c.setSigned16BitCalibration()
    imp.setCalibration(c)


def imageplus_axes(imp) -> str:
    """The axes :func:`from_imageplus` returns for ``imp``: ``t c z y x`` without size-1 axes.

    RGB images get a trailing ``c`` of size 3 (``yxc``, ``zyxc``...).
    """
    n_c, n_z, n_t = int(imp.getNChannels()), int(imp.getNSlices()), int(imp.getNFrames())
    axes = ("t" if n_t > 1 else "") + ("c" if n_c > 1 else "") + ("z" if n_z > 1 else "") + "yx"
    if int(imp.getType()) == J_COLOR_RGB:
        axes += "c"
    return axes


J_COLOR_RGB = 4  # ImagePlus.COLOR_RGB
J_COLOR_256 = 3  # ImagePlus.COLOR_256 (8-bit with a LUT)


def from_imageplus(imp, as_xarray: bool = False, *, squeeze: bool = True):
    """Pixels of an ``ImagePlus`` as numpy (axes: :func:`imageplus_axes`) or xarray.

    Args:
        imp: an ``ij.ImagePlus``.
        as_xarray: return an ``xarray.DataArray`` with named dims, calibrated coordinates
            and attrs (``unit``, ``time_unit``, ``title``, ``rgb``).
        squeeze: drop axes of size 1 (else always ``tczyx``, plus ``c`` last for RGB).
    """
    import jpype

    if imp is None:
        raise InputImageError("no image")
    n_c, n_z, n_t = int(imp.getNChannels()), int(imp.getNSlices()), int(imp.getNFrames())
    width, height = int(imp.getWidth()), int(imp.getHeight())
    stack = imp.getStack()
    n = int(stack.getSize())
    if n != n_c * n_z * n_t:  # inconsistent dimensions: treat as a plain z stack
        n_c, n_z, n_t = 1, n, 1
    bit_depth = int(imp.getBitDepth())
    rgb = bit_depth == 24
    dtype = {8: np.uint8, 16: np.uint16, 32: np.float32, 24: np.int32}[bit_depth]
    out = np.empty((n, height, width), dtype=dtype)
    pixels_class = _j().Pixels
    for i in range(n):
        pixels_class.copy(stack.getPixels(i + 1), jpype.nio.convertToDirectBuffer(out[i]))
    cal = imp.getCalibration()
    if bit_depth == 16 and bool(cal.isSigned16Bit()):
        out = (out.astype(np.int32) - SIGNED16_OFFSET).astype(np.int16)
    arr = out.reshape(n_t, n_z, n_c, height, width)
    if rgb:  # unpack 0xRRGGBB into a trailing c axis of size 3 (RGB images have one channel)
        u = arr[:, :, 0].view(np.uint32)
        arr = np.stack([(u >> 16) & 0xFF, (u >> 8) & 0xFF, u & 0xFF], axis=-1).astype(np.uint8)
        target = "tzyxc"
    else:
        arr = np.transpose(arr, [0, 2, 1, 3, 4])  # t z c y x -> t c z y x
        target = "tczyx"
    if squeeze:
        keep = [i for i, a in enumerate(target) if a in "yx" or arr.shape[i] > 1 or (rgb and a == "c")]
        arr = arr.reshape([arr.shape[i] for i in keep])
        target = "".join(target[i] for i in keep)
    arr = np.ascontiguousarray(arr)
    if not as_xarray:
        return arr
    return _to_xarray(arr, target, imp, cal, rgb)


def _to_xarray(arr: np.ndarray, axes: str, imp, cal, rgb: bool):
    import xarray as xr

    coords: dict[str, np.ndarray] = {}
    spacing = {"x": float(cal.pixelWidth), "y": float(cal.pixelHeight), "z": float(cal.pixelDepth), "t": float(cal.frameInterval)}
    origin = {"x": float(cal.xOrigin) * spacing["x"], "y": float(cal.yOrigin) * spacing["y"], "z": float(cal.zOrigin) * spacing["z"], "t": 0.0}
    for i, a in enumerate(axes):
        if a in "xyz" or (a == "t" and spacing["t"] > 0):
            coords[a] = -origin[a] + spacing[a] * np.arange(arr.shape[i]) if origin[a] else spacing[a] * np.arange(arr.shape[i])
    attrs = {"title": str(imp.getTitle()), "unit": str(cal.getUnit()), "time_unit": str(cal.getTimeUnit()), "rgb": rgb}
    return xr.DataArray(arr, dims=tuple(axes), coords=coords, attrs=attrs, name=str(imp.getTitle()))
