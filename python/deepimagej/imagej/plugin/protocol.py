"""The worker protocol: JSON lines on stdin/stdout, images in memory-mapped files (no Java here).

Version :data:`PROTOCOL`. The worker speaks first, one line::

    {"type": "hello", "protocol": 1, "version": "0.1.0", "pid": 1234}

The plugin refuses a worker of another protocol or package version. Then each request is
``{"id": N, "op": NAME, "args": {...}}`` and the worker answers with any number of
``{"type": "log", "id": N, "text": ...}`` and ``{"type": "progress", "id": N, "done": d,
"total": t, "text": ...}`` lines, then exactly one ``{"type": "result", "id": N, "result":
{...}}`` or ``{"type": "error", "id": N, "kind": "BundleError", "message": "one line"}``
(``kind`` ``"Cancelled"`` after ``{"op": "cancel", "id": N}``). Requests run one at a time;
``cancel`` is read while a request runs.

Images never travel through the pipe. An image is a description::

    {"path": "/dev/shm/deepimagej-x/input-0.raw", "dtype": "float32", "width": 2048, "height": 2048,
     "channels": 1, "slices": 1, "frames": 1, "signed16": false, "title": "cells",
     "calibration": {"x": 0.5, "y": 0.5, "z": 1.0, "unit": "micron"}}

and its file holds ImageJ's planes (channel fastest, then slice, then frame; native byte order;
``dtype`` one of ``uint8``, ``uint16``, ``float32``, ``rgb`` = packed 0xRRGGBB int32), nothing
else: Java maps it with a ``MappedByteBuffer``, Python with ``mmap`` (a numpy array on the
mapping). Several named images go as a JSON object ``{"name": image, ...}`` (``inputs`` of a
request, ``outputs`` of a result), one per model tensor.

Each side writes its own files (ImageJ the inputs, the worker the outputs) and reuses a file of
the same size, mapping kept: the next image of that size costs no page faults. A file of
another size is a new file (the old one unlinked, never truncated), so that a mapping the other
side keeps can never point past the end of a file.
"""

from __future__ import annotations

import json
import mmap
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import InputImageError
from deepimagej.imagej.hyperstack import Layout, from_planes, layout_of, to_planes


class Cancelled(Exception):
    """The plugin asked to stop the running request (``{"op": "cancel"}``: the user pressed Esc)."""


PROTOCOL = 1
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32, "rgb": np.int32}
#: mappings kept open (by file identity): enough for a model's inputs and outputs
KEPT_MAPPINGS = 8

_mappings: OrderedDict[tuple[str, int, int, bool], mmap.mmap] = OrderedDict()


def _mapped(path: Path, size: int, writable: bool) -> mmap.mmap:
    """A shared mapping of the whole file ``path`` (``size`` bytes), kept for the next call."""
    st = path.stat()
    key = (str(path), st.st_ino, size, writable)
    found = _mappings.get(key)
    if found is not None:
        _mappings.move_to_end(key)
        return found
    for old in [k for k in _mappings if k[0] == str(path)]:  # that file was replaced
        del _mappings[old]
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # all pages at once, not one fault each
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        mapping = mmap.mmap(fd, size, flags=flags, prot=prot)
    finally:
        os.close(fd)
    _mappings[key] = mapping
    while len(_mappings) > KEPT_MAPPINGS:
        _mappings.popitem(last=False)
    return mapping


def encode(message: Mapping[str, Any]) -> bytes:
    """One protocol line (UTF-8 JSON, no newline inside)."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False, default=str) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    """A protocol line as a dict.

    Raises:
        ValueError: not a JSON object.
    """
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a protocol line must be a JSON object")  # noqa: TRY004 - json.loads raises ValueError too
    return value


@dataclass
class SharedImage:
    """An image read from a shared file.

    Attributes:
        array: the pixels with axes :attr:`axes` (a read-only view of the mapped file for
            8/16/32-bit images: no copy).
        axes: ``t c z y x`` without size-1 axes (``c`` last for RGB), as ImageJ images map.
        title: the ImageJ title.
        calibration: ``{"x", "y", "z", "t", "unit", "time_unit", "x_origin", ...}`` as in
            :func:`deepimagej.imagej.convert.to_imageplus`.
        rgb: a 24-bit RGB image (``array`` has a trailing ``c`` of size 3).
    """

    array: np.ndarray
    axes: str
    title: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)
    rgb: bool = False


def _layout(image: Mapping[str, Any]) -> Layout:
    dtype = str(image.get("dtype", ""))
    if dtype not in DTYPES:
        raise InputImageError(f"image pixel type '{dtype}' is not one of {', '.join(DTYPES)}")
    return Layout(
        int(image["channels"]),
        int(image["slices"]),
        int(image["frames"]),
        int(image["height"]),
        int(image["width"]),
        np.dtype(DTYPES[dtype]),
        rgb=dtype == "rgb",
        signed16=bool(image.get("signed16", False)),
    )


def read_image(image: Mapping[str, Any]) -> SharedImage:
    """Map the file of an image description (written by the plugin) and return its pixels.

    Raises:
        InputImageError: a missing or short file, or a bad description.
    """
    try:
        layout = _layout(image)
        path = Path(str(image["path"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputImageError(f"bad image description from ImageJ ({exc})") from None
    need = layout.n_planes * layout.height * layout.width * layout.dtype.itemsize
    if not path.is_file() or path.stat().st_size < need:
        raise InputImageError(f"the image file {path} is missing or shorter than {need} bytes")
    planes = np.frombuffer(
        _mapped(path, need, writable=False), dtype=layout.dtype, count=need // layout.dtype.itemsize
    ).reshape(layout.shape)
    array, axes = from_planes(planes, layout)
    return SharedImage(
        array, axes, str(image.get("title", "")), dict(image.get("calibration") or {}), layout.rgb
    )


def write_image(
    array: np.ndarray,
    axes: str,
    path: Path,
    *,
    title: str = "",
    calibration: Mapping[str, Any] | None = None,
    rgb: bool = False,
) -> dict[str, Any]:
    """Write ``array`` (axes ``axes``) as ImageJ planes into the mapped file ``path``; its description.

    ``rgb`` packs a uint8 ``c`` axis of size 3 into a 24-bit RGB image. An existing file of the
    right size is reused (its memory pages are already there).
    """
    array = np.asarray(array)
    layout = layout_of(array, axes, rgb)
    size = layout.n_planes * layout.height * layout.width * layout.dtype.itemsize
    if not path.is_file() or path.stat().st_size != size:
        path.unlink(missing_ok=True)  # a new file (a new inode): ImageJ may still map the old one
        with open(path, "wb") as fh:
            fh.truncate(size)
    planes = np.frombuffer(
        _mapped(path, size, writable=True), dtype=layout.dtype, count=size // layout.dtype.itemsize
    ).reshape(layout.shape)
    to_planes(
        array, axes, rgb=rgb, out=planes
    )  # a shared mapping: the plugin sees the pages, no flush needed
    dtype = "rgb" if layout.rgb else layout.dtype.name
    return {
        "path": str(path),
        "dtype": dtype,
        "width": layout.width,
        "height": layout.height,
        "channels": layout.channels,
        "slices": layout.slices,
        "frames": layout.frames,
        "signed16": layout.signed16,
        "title": title,
        "calibration": dict(calibration or {}),
    }
