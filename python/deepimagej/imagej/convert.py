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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from deepimagej.errors import InputImageError
from deepimagej.imagej.hyperstack import Layout, from_planes, planes_axes, to_planes
from deepimagej.imagej.java_classes import jc

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr


def _is_xarray(image: Any) -> TypeGuard[xr.DataArray]:
    return hasattr(image, "dims") and hasattr(image, "coords") and hasattr(image, "values")


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
    planes, layout = to_planes(image, axes, rgb=bool(rgb))
    width, height = layout.width, layout.height
    stack = jc.ImageStack(width, height)
    for plane in planes:
        stack.addSlice("", _processor(plane, layout.rgb))
    imp = jc.ImagePlus(title, stack)
    imp.setDimensions(layout.channels, layout.slices, layout.frames)
    if layout.channels > 1 or layout.frames > 1:
        imp.setOpenAsHyperStack(True)
    if layout.channels > 1 and not layout.rgb:
        imp = jc.CompositeImage(imp, jc.CompositeImage.COMPOSITE)
    _apply_calibration(imp, cal, layout.signed16)
    if not layout.rgb:
        imp.resetDisplayRange()
    return imp


def _processor(plane: np.ndarray, rgb: bool):
    import jpype

    height, width = plane.shape
    buf = jpype.nio.convertToDirectBuffer(plane)
    if rgb:
        return jc.ColorProcessor(width, height, jc.Pixels.ints(buf))
    if plane.dtype == np.uint8:
        return jc.ByteProcessor(width, height, jc.Pixels.bytes(buf))
    if plane.dtype == np.uint16:
        return jc.ShortProcessor(width, height, jc.Pixels.shorts(buf), None)
    return jc.FloatProcessor(width, height, jc.Pixels.floats(buf))


def _apply_calibration(imp, cal: Mapping[str, Any], signed16: bool) -> None:
    c = jc.Calibration(imp)
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
    for axis, attr, size in (
        ("x", "xOrigin", "pixelWidth"),
        ("y", "yOrigin", "pixelHeight"),
        ("z", "zOrigin", "pixelDepth"),
    ):
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
    return planes_axes(
        int(imp.getNChannels()),
        int(imp.getNSlices()),
        int(imp.getNFrames()),
        int(imp.getType()) == J_COLOR_RGB,
    )


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
    pixels_class = jc.Pixels
    for i in range(n):
        pixels_class.copy(stack.getPixels(i + 1), jpype.nio.convertToDirectBuffer(out[i]))
    cal = imp.getCalibration()
    layout = Layout(
        n_c,
        n_z,
        n_t,
        height,
        width,
        np.dtype(dtype),
        rgb=rgb,
        signed16=bit_depth == 16 and bool(cal.isSigned16Bit()),
    )
    arr, target = from_planes(out, layout, squeeze=squeeze)
    arr = np.ascontiguousarray(arr)
    if not as_xarray:
        return arr
    return _to_xarray(arr, target, imp, cal, rgb)


def _to_xarray(arr: np.ndarray, axes: str, imp, cal, rgb: bool):
    import xarray as xr

    coords: dict[str, np.ndarray] = {}
    spacing = {
        "x": float(cal.pixelWidth),
        "y": float(cal.pixelHeight),
        "z": float(cal.pixelDepth),
        "t": float(cal.frameInterval),
    }
    origin = {
        "x": float(cal.xOrigin) * spacing["x"],
        "y": float(cal.yOrigin) * spacing["y"],
        "z": float(cal.zOrigin) * spacing["z"],
        "t": 0.0,
    }
    for i, a in enumerate(axes):
        if a in "xyz" or (a == "t" and spacing["t"] > 0):
            coords[a] = (
                -origin[a] + spacing[a] * np.arange(arr.shape[i])
                if origin[a]
                else spacing[a] * np.arange(arr.shape[i])
            )
    attrs = {
        "title": str(imp.getTitle()),
        "unit": str(cal.getUnit()),
        "time_unit": str(cal.getTimeUnit()),
        "rgb": rgb,
    }
    return xr.DataArray(arr, dims=tuple(axes), coords=coords, attrs=attrs, name=str(imp.getTitle()))
