"""Images larger than memory: lazy inputs read block by block, outputs streamed to chunked stores.

Inputs (:func:`open_image`): a TIFF or BigTIFF (tiled or strips, ImageJ hyperstacks, through
tifffile's zarr interface), an OME-Zarr image (axes and pixel size from its NGFF metadata) or a
plain zarr array; only the blocks a run reads come into memory.

Outputs (:class:`OutputStore`): every output of a run is a zarr array whose chunks are the run's
blocks (one writer per chunk, so parallel workers never share one), in a store that becomes
visible under its name only when the run is complete:

* ``*.ome.zarr``: OME-Zarr (NGFF 0.4: zarr v2, readable by Fiji's N5/Zarr readers, napari,
  QuPath...), axes and pixel size in its ``multiscales`` metadata; a model with several outputs
  gets one image group per output;
* ``*.zarr``: plain zarr arrays (one per output, at the root for a single output);
* ``*.tif`` / ``*.tiff``: the blocks go to a zarr store first, then to a tiled OME-TIFF
  written tile by tile (BigTIFF above 4 GiB), so memory stays bounded.

The store is written under a hidden temporary name in the target folder and renamed at the end;
a run that fails or is interrupted removes it, and a process that is killed leaves only the
hidden ``.NAME.part-PID`` folder, never a store that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.errors import DeepImageJError, InputImageError, OutputError
from deepimagej.memory import parse_size
from deepimagej.outputs import replace_path

__all__ = [
    "LazyImage",
    "OutputStore",
    "check_target",
    "is_store_path",
    "open_image",
    "open_outputs",
    "storage_order",
    "store_kind",
]

#: NGFF axis types of deepimagej's axis letters.
_NGFF_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space", "b": "index"}
#: Tile of the streamed OME-TIFF (a multiple of 16, as TIFF requires).
TIFF_TILE = 512
_BIGTIFF = 2**32 - 2**25


def storage_order(kind: str | None, axes: str) -> str:
    """The axis order an output is stored in: NGFF's (index axes, then t, c, z, y, x) for OME-Zarr, else ``axes``."""
    if kind != "ome-zarr":
        return axes
    rank = {a: i for i, a in enumerate("tczyx")}
    return "".join(sorted(axes, key=lambda a: rank.get(a, -1)))


def store_kind(path: str | Path) -> str | None:
    """``"ome-zarr"``, ``"zarr"``, ``"tiff"`` or ``None`` (not a streamable output name)."""
    name = str(path).rstrip("/").lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    return None


#: Inputs larger than this (in memory) are read block by block and their outputs streamed;
#: ``DEEPIMAGEJ_STREAM_ABOVE`` (e.g. ``200M``) changes it.
STREAM_ABOVE_BYTES = 2**30


def stream_threshold() -> int:
    """:data:`STREAM_ABOVE_BYTES`, or the size ``DEEPIMAGEJ_STREAM_ABOVE`` gives."""
    text = os.environ.get("DEEPIMAGEJ_STREAM_ABOVE")
    if not text:
        return STREAM_ABOVE_BYTES
    return parse_size(text)


def should_stream(path: str | Path) -> bool:
    """Whether an input file is read block by block: a zarr store, or a TIFF larger than
    :func:`stream_threshold` in memory."""
    path = Path(path)
    if path.is_dir():
        return True
    if store_kind(path) != "tiff" or not path.is_file():
        return False
    try:
        image = open_image(path)
    except DeepImageJError:
        return False  # the in-memory reader says what is wrong with it
    try:
        return image.nbytes > stream_threshold()
    finally:
        image.close()


def is_store_path(path: str | Path) -> bool:
    """Whether ``path`` names a zarr store (a run writing there streams its outputs)."""
    return store_kind(path) in ("ome-zarr", "zarr")


# --------------------------------------------------------------------------------------------
# lazy inputs
# --------------------------------------------------------------------------------------------


@dataclass
class LazyImage:
    """An image read block by block: ``array`` supports numpy indexing and reads only what it is asked.

    Attributes:
        array: the lazy array (zarr).
        axes: deepimagej axis letters, one per dimension.
        pixel_size: physical size per spatial axis.
        unit: unit of ``pixel_size``.
        path: the file or store it comes from.
    """

    array: Any
    axes: str
    pixel_size: dict[str, float] = field(default_factory=dict)
    unit: str | None = None
    path: Path | None = None
    _handle: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.array.dtype).itemsize

    def close(self) -> None:
        """Release the file (TIFF); further reads fail."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def open_image(path: str | Path) -> LazyImage:
    """Open an image for block-by-block reading: TIFF/BigTIFF, OME-Zarr or a plain zarr array.

    Raises:
        InputImageError: missing, unreadable, or a TIFF whose pages do not form its declared shape.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: image not found")
    if path.is_dir():
        return _open_zarr(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff(path)
    raise InputImageError(f"{path}: lazy reading supports TIFF, OME-Zarr and zarr; read other formats whole")


def _open_tiff(path: Path) -> LazyImage:
    import tifffile
    import zarr

    from deepimagej.io import tiff_axes

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise InputImageError(f"{path}: not a readable TIFF ({exc})") from None
    try:
        series = tif.series[0]
        pages = len(tif.pages)
        planes = series.shape[:-3] if series.axes.endswith("S") else series.shape[:-2]
        declared = int((tif.imagej_metadata or {}).get("images") or np.prod(planes))
        if pages < declared and not series.is_multifile:
            raise InputImageError(
                f"{path}: its metadata declares {declared} image planes but the file holds {pages}; the file is "
                "truncated or its ImageJ/OME metadata is wrong"
            )
        _check_pages(path, series)
        store = series.aszarr()
        array = (
            zarr.open_array(store, mode="r")
            if not _is_group(store)
            else zarr.open_group(store, mode="r")["0"]
        )
        pixel_size, unit = _tiff_calibration(tif)
        axes = tiff_axes(series.axes)
    except InputImageError:
        tif.close()
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile / zarr raise many kinds for damaged files
        tif.close()
        raise InputImageError(
            f"{path}: cannot read the TIFF block by block ({type(exc).__name__}: {exc})"
        ) from None
    return LazyImage(array, axes, pixel_size, unit, path, tif)


def _check_pages(path: Path, series: Any) -> None:
    """Refuse a TIFF whose first or last page holds fewer bytes than its header declares (a
    truncated file, or a header that lies about the image size) before any block is read."""
    size = path.stat().st_size
    pages = list(series.pages)
    for page in {id(p): p for p in (pages[0], pages[-1]) if p is not None}.values():
        key = page.keyframe
        offsets, counts = page.dataoffsets, page.databytecounts
        if any(o + c > size for o, c in zip(offsets, counts)):
            raise InputImageError(
                f"{path}: the file ends before the pixels its header points to; it is truncated"
            )
        need = int(np.prod(key.shape)) * key.dtype.itemsize
        if key.compression == 1 and sum(counts) < need:
            raise InputImageError(
                f"{path}: its header declares {'x'.join(map(str, key.shape))} pixels but the page holds "
                f"{sum(counts)} of the {need} bytes they need; the file is damaged"
            )


def _is_group(store: Any) -> bool:
    import zarr

    try:
        zarr.open_array(store, mode="r")
    except Exception:  # noqa: BLE001 - zarr tells a group from an array only by failing
        return True
    return False


def _tiff_calibration(tif: Any) -> tuple[dict[str, float], str | None]:
    ij = tif.imagej_metadata or {}
    page = tif.pages.first
    sizes: dict[str, float] = {}
    for tag, axis in (("XResolution", "x"), ("YResolution", "y")):
        res = page.tags.get(tag)
        if res is not None and res.value[0]:
            sizes[axis] = res.value[1] / res.value[0]
    if "spacing" in ij:
        sizes["z"] = float(ij["spacing"])
    unit = ij.get("unit")
    if unit in (None, "", "pixel"):
        sizes = {k: v for k, v in sizes.items() if v != 1.0}
    return sizes, unit


def _open_zarr(path: Path) -> LazyImage:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - not a zarr store
        raise InputImageError(f"{path}: not a zarr store ({type(exc).__name__}: {exc})") from None
    attrs: dict[str, Any] = dict(node.attrs)  # the store's JSON metadata, checked where it is read
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if isinstance(node, zarr.Array):
        axes = attrs.get("deepimagej_axes") or _default_axes(node.ndim)
        return LazyImage(node, axes, {}, None, path)
    if not multiscales:
        arrays = [k for k, _ in node.arrays()]
        if len(arrays) != 1:
            raise InputImageError(
                f"{path}: a zarr group without OME-Zarr metadata; name the array inside it ({', '.join(arrays)})"
            )
        return _open_zarr(path / arrays[0])
    image = multiscales[0]
    dataset = image["datasets"][0]
    array = node[dataset["path"]]
    if not isinstance(array, zarr.Array):
        raise InputImageError(f"{path}: {dataset['path']} of its OME-Zarr metadata is a group, not an array")
    names = [a["name"] if isinstance(a, Mapping) else str(a) for a in image.get("axes", [])]
    if len(names) != array.ndim:
        names = list(_default_axes(array.ndim))
    axes = "".join({"t": "t", "c": "c", "z": "z", "y": "y", "x": "x"}.get(n.lower()[:1], "b") for n in names)
    units = [a.get("unit") for a in image.get("axes", []) if isinstance(a, Mapping)]
    scale = next(
        (t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"), None
    )
    pixel_size = {a: float(s) for a, s in zip(axes, scale or []) if a in "zyx"}
    unit = next((u for a, u in zip(axes, units) if a in "yx" and u), None)
    return LazyImage(array, axes, pixel_size, unit, path)


def open_outputs(path: str | Path, names: list[str]) -> dict[str, LazyImage]:
    """The outputs of a finished streamed run, by name (see :class:`OutputStore` for the layout)."""
    path = Path(path)
    kind = store_kind(path)
    if kind == "tiff" or len(names) == 1:
        return {names[0]: open_image(path)}
    if kind == "ome-zarr":
        return {name: open_image(path / name) for name in names}
    return {name: open_image(path / name) for name in names}


def _default_axes(ndim: int) -> str:
    return {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}.get(ndim, "b" * (ndim - 2) + "yx")


# --------------------------------------------------------------------------------------------
# streamed outputs
# --------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    name: str
    array: Any
    axes: str
    pixel_size: dict[str, float]
    unit: str | None
    group: str  # path of the array's image group inside the store ("" = root)
    path: Path  # the array's folder (other processes open it there)


class OutputStore:
    """A chunked store the outputs of one run are streamed to, made visible atomically.

    Args:
        path: ``*.ome.zarr``, ``*.zarr`` or ``*.tif``/``*.tiff``.
        n_outputs: how many arrays it will hold (1: at the root; more: one group each).
        overwrite: replace an existing store of that name at the end (never an input).

    Raises:
        OutputError: the store exists (and ``overwrite`` is off), its folder cannot be written,
            or the name is not a store.
    """

    def __init__(
        self,
        path: str | Path,
        n_outputs: int = 1,
        *,
        overwrite: bool = False,
        inputs: tuple[str | Path, ...] = (),
    ):
        self.path = check_target(path, overwrite=overwrite, inputs=inputs)
        self.kind = store_kind(self.path)
        parent = self.path.parent
        self.n_outputs = n_outputs
        self.work = parent / f".{self.path.name}.part-{os.getpid()}"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        self.entries: dict[str, _Entry] = {}
        self._committed = False

    def _zarr_root(self) -> Path:
        return self.work / "data.zarr" if self.kind == "tiff" else self.work

    def create(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        axes: str,
        chunks: tuple[int, ...],
        pixel_size: Mapping[str, float] | None = None,
        unit: str | None = None,
    ) -> Any:
        """Create the array of output ``name`` (chunks as given: the run's blocks) and return it."""
        import zarr

        group = "" if self.n_outputs == 1 else name
        chunks = tuple(max(1, min(c, n)) for c, n in zip(chunks, shape))
        options = {
            "shape": shape,
            "chunks": chunks,
            "dtype": np.dtype(dtype),
            "fill_value": 0,
            "overwrite": True,
        }
        if self.kind == "zarr" and self.n_outputs == 1:  # the store is the array
            array = zarr.create_array(str(self.work), zarr_format=2, **options)
            path = self.work
        else:
            root = zarr.open_group(str(self._zarr_root()), mode="a", zarr_format=2)
            parent = root.require_group(group) if group else root
            key = "0" if self.kind != "zarr" else name
            array = parent.create_array(key, **options)
            path = self._zarr_root() / group / key if group else self._zarr_root() / key
        array.attrs["deepimagej_axes"] = axes
        self.entries[name] = _Entry(name, array, axes, dict(pixel_size or {}), unit, group, path)
        return array

    def array_path(self, name: str) -> Path:
        """The folder of output ``name``'s array while the run writes it (for other processes)."""
        return self.entries[name].path

    def commit(self) -> Path:
        """Write the metadata (and the TIFF), then make the store visible under its name."""
        if self.kind == "ome-zarr":
            for entry in self.entries.values():
                _write_ngff(self.work, entry)
            if self.n_outputs > 1:
                _write_json(self.work / ".zattrs", {"deepimagej": {"outputs": list(self.entries)}})
            final = self.work
        elif self.kind == "zarr":
            final = self.work
        else:
            if len(self.entries) != 1:
                raise OutputError(f"{self.path}: a TIFF holds one output; give one .tif per output")
            final = self.work / "image.tif"
            _write_tiff(final, next(iter(self.entries.values())))
        replace_path(final, self.path)
        if final is not self.work:
            shutil.rmtree(self.work, ignore_errors=True)
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Remove everything written (a failed or interrupted run)."""
        if not self._committed:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> OutputStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def check_target(path: str | Path, *, overwrite: bool = False, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Refuse, before any work, a store that cannot be written or would replace something it must not.

    Raises:
        OutputError: not a store name, exists (without ``overwrite``), is one of ``inputs`` (or
            holds one), or its folder is missing or read-only.
    """
    path = Path(path).expanduser()
    if store_kind(path) is None:
        raise OutputError(f"{path}: not a store name; use .ome.zarr, .zarr, .tif or .tiff")
    resolved = path.resolve()
    for item in inputs:
        other = Path(item).expanduser().resolve()
        if other == resolved or resolved in other.parents:
            raise OutputError(f"{path}: is an input of this run ({item}); choose another output name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: exists already; choose another name or pass --overwrite (overwrite=True)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder {parent} is not writable")
    return path


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1))


def _write_ngff(root: Path, entry: _Entry) -> None:
    """NGFF 0.4 ``multiscales`` metadata of one image (a single resolution level ``0``)."""
    axes = []
    scale = []
    for a in entry.axes:
        item: dict[str, Any] = {"name": a, "type": _NGFF_TYPES.get(a, "index")}
        if a in "zyx" and entry.unit and entry.pixel_size.get(a):
            item["unit"] = _ngff_unit(entry.unit)
        axes.append(item)
        scale.append(float(entry.pixel_size.get(a, 1.0)) if a in "zyx" else 1.0)
    folder = root / entry.group if entry.group else root
    attrs_file = folder / ".zattrs"
    attrs = json.loads(attrs_file.read_text()) if attrs_file.exists() else {}
    attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": entry.name,
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
            "metadata": {"written_by": "deepimagej"},
        }
    ]
    _write_json(attrs_file, attrs)


def _ngff_unit(unit: str) -> str:
    """ImageJ unit names -> NGFF (UDUNITS) names."""
    return {
        "micron": "micrometer",
        "µm": "micrometer",
        "um": "micrometer",
        "nm": "nanometer",
        "mm": "millimeter",
        "cm": "centimeter",
    }.get(unit, unit)


def _write_tiff(path: Path, entry: _Entry) -> None:
    """A tiled OME-TIFF written tile by tile from the zarr array (BigTIFF above 4 GiB)."""
    import tifffile

    array = entry.array
    axes = entry.axes
    if not ("y" in axes and "x" in axes):
        raise OutputError(f"output '{entry.name}' has no y and x axes; write it as .ome.zarr or .zarr")
    order = [axes.index(a) for a in "tczyx" if a in axes] + [
        i for i, a in enumerate(axes) if a not in "tczyx"
    ]
    names = "".join(axes[i] for i in order)
    shape = tuple(array.shape[i] for i in order)
    ny, nx = shape[-2], shape[-1]
    tile = (TIFF_TILE, TIFF_TILE)

    def tiles() -> Any:
        for plane in np.ndindex(*shape[:-2]):
            for y0 in range(0, ny, TIFF_TILE):
                for x0 in range(0, nx, TIFF_TILE):
                    index: list[Any] = [0] * len(axes)
                    for a, p in zip(names[:-2], plane):
                        index[axes.index(a)] = p
                    index[axes.index("y")] = slice(y0, min(y0 + TIFF_TILE, ny))
                    index[axes.index("x")] = slice(x0, min(x0 + TIFF_TILE, nx))
                    block = np.asarray(array[tuple(index)])
                    if axes.index("y") > axes.index("x"):
                        block = block.T
                    out = np.zeros(tile, dtype=array.dtype)
                    out[: block.shape[0], : block.shape[1]] = block
                    yield out

    metadata: dict[str, Any] = {"axes": "".join(a.upper() if a != "b" else "Q" for a in names)}
    if entry.pixel_size.get("x"):
        metadata["PhysicalSizeX"] = entry.pixel_size["x"]
        metadata["PhysicalSizeY"] = entry.pixel_size.get("y", entry.pixel_size["x"])
        if entry.unit:
            metadata["PhysicalSizeXUnit"] = metadata["PhysicalSizeYUnit"] = (
                "µm" if entry.unit in ("micron", "um", "µm", "micrometer") else entry.unit
            )
    nbytes = int(np.prod(shape)) * np.dtype(array.dtype).itemsize
    tifffile.imwrite(
        path,
        tiles(),
        shape=shape,
        dtype=array.dtype,
        tile=tile,
        ome=True,
        metadata=metadata,
        bigtiff=nbytes > _BIGTIFF,
        photometric="minisblack",
    )
