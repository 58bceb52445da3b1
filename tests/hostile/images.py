"""Hostile and broken input images: bad pixels, lying headers, wrong types, wrong shapes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from hostile.case import ERROR, OK, Case

PANCREATIC = "{M}/inputs/pancreatic"


def image(name: str, make: Callable[[Path], None]):
    def setup(case: Path, materials: Path) -> None:
        make(case / name)

    return setup


def npy(array: np.ndarray, **kw) -> Callable[[Path], None]:
    return lambda path: np.save(path, array, **kw)


def run_on(
    case_id: str,
    name: str,
    make: Callable[[Path], None],
    expect: str,
    says: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    bundle: str = PANCREATIC,
    **kw,
) -> Case:
    argv = ("run", bundle, f"{{C}}/{name}", "-o", "{C}/out.tif", *extra)
    return Case(case_id, expect, argv=argv, says=says, setup=image(name, make), **kw)


def _nan_image(n: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    array = rng.random((128, 128)).astype(np.float32)
    array.flat[rng.choice(array.size, n, replace=False)] = np.nan
    return array


def _finite_output(case: Path, materials: Path, outcome) -> str | None:
    result = tifffile.imread(case / "out.tif")
    return None if np.all(np.isfinite(result)) else "the output has NaN/Inf pixels"


def _huge_tiff(path: Path) -> None:
    """A 64x64 TIFF whose header then claims 100000 x 100000 pixels."""
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        offsets = (tags["ImageWidth"].valueoffset, tags["ImageLength"].valueoffset)
        dtypes = (tags["ImageWidth"].dtype, tags["ImageLength"].dtype)
    for offset, dtype in zip(offsets, dtypes):
        fmt = "<H" if dtype == 3 else "<I"
        struct.pack_into(fmt, data, offset, 60000 if fmt == "<H" else 100000)
    path.write_bytes(bytes(data))


def _png_bomb(path: Path) -> None:
    """A PNG header declaring 60000 x 60000 pixels over a few bytes of compressed zeros."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (60001 * 16))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _lying_npy(path: Path) -> None:
    """A .npy header declaring a 100000 x 100000 float64 array over 80 bytes of data."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += " " * (63 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(80))


def _truncated_tiff(path: Path) -> None:
    tifffile.imwrite(path, np.ones((256, 256), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _truncated_npy(path: Path) -> None:
    np.save(path, np.ones((256, 256), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _npz_as_npy(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, a=np.ones((8, 8)))


def _png_renamed_tif(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(path, format="PNG")


def _text(path: Path) -> None:
    path.write_text("this is not an image\n", encoding="utf-8")


CASES = [
    run_on("nan_pixels_refused", "nan.npy", npy(_nan_image(200)), ERROR, ("200 NaN", "--nan")),
    run_on(
        "nan_pixels_zero",
        "nan.npy",
        npy(_nan_image(200)),
        OK,
        ("200 NaN/infinite",),
        ("--nan", "zero"),
        check=_finite_output,
    ),
    run_on(
        "nan_pixels_mean",
        "nan.npy",
        npy(_nan_image(50)),
        OK,
        ("50 NaN/infinite",),
        ("--nan", "mean"),
        check=_finite_output,
    ),
    run_on(
        "all_nan_refused", "nan.npy", npy(np.full((64, 64), np.nan, np.float32)), ERROR, ("no finite pixel",)
    ),
    run_on(
        "all_nan_even_with_zero",
        "nan.npy",
        npy(np.full((64, 64), np.nan, np.float32)),
        ERROR,
        ("no finite pixel",),
        ("--nan", "zero"),
    ),
    run_on(
        "inf_pixels_refused",
        "inf.npy",
        npy(np.where(np.eye(64) > 0, np.inf, 1.0).astype(np.float32)),
        ERROR,
        ("infinite",),
    ),
    run_on("nan_option_unknown", "nan.npy", npy(_nan_image(3)), ERROR, ("--nan",), ("--nan", "median")),
    run_on("complex_pixels", "complex.npy", npy(np.ones((64, 64), np.complex64)), ERROR, ("complex",)),
    run_on(
        "pickled_npy_input",
        "pickled.npy",
        npy(np.array([{"x": 1}], dtype=object), allow_pickle=True),
        ERROR,
        ("pickled",),
    ),
    run_on("string_pixels", "text.npy", npy(np.array([["a", "b"], ["c", "d"]])), ERROR, ("non-numeric",)),
    run_on("npz_named_npy", "archive.npy", _npz_as_npy, ERROR, (".npz",)),
    run_on("npy_header_lies", "lying.npy", _lying_npy, ERROR, ("lying.npy",)),
    run_on("npy_truncated", "short.npy", _truncated_npy, ERROR, ("short.npy",)),
    run_on("tiff_header_lies", "huge.tif", _huge_tiff, ERROR, ("huge.tif",)),
    run_on("tiff_truncated", "short.tif", _truncated_tiff, ERROR, ("short.tif",)),
    run_on("png_bomb", "bomb.png", _png_bomb, ERROR, ("bomb.png",)),
    run_on("png_named_tif", "png.tif", _png_renamed_tif, ERROR, ("png.tif",)),
    run_on("text_named_png", "text.png", _text, ERROR, ("text.png",)),
    run_on("empty_tif", "empty.tif", lambda p: p.write_bytes(b""), ERROR, ("empty.tif",)),
    run_on("input_is_a_folder", "folder.tif", lambda p: p.mkdir(), ERROR, ("folder.tif",)),
    Case(
        "input_missing",
        ERROR,
        argv=("run", PANCREATIC, "{C}/nothing.tif", "-o", "{C}/out.tif"),
        says=("nothing.tif", "not found"),
    ),
    run_on(
        "weights_file_as_image",
        "model.tif",
        lambda p: p.write_bytes(
            (Path(__file__).resolve().parents[2] / "bundles" / "unet-pancreatic" / "model.h5").read_bytes()[
                :100000
            ]
        ),
        ERROR,
        ("model.tif",),
    ),
    run_on("zero_size_axis", "empty.npy", npy(np.zeros((0, 16), np.float32)), ERROR, ("at least 1 pixel",)),
    run_on("six_dimensions", "6d.npy", npy(np.zeros((1, 1, 1, 1, 8, 8), np.float32)), ERROR, ("axes",)),
    run_on(
        "image_axes_wrong_length",
        "img.npy",
        npy(np.zeros((8, 8), np.float32)),
        ERROR,
        ("axes",),
        ("--axes", "zyx"),
    ),
    run_on(
        "image_axes_unknown_letter",
        "img.npy",
        npy(np.zeros((8, 8), np.float32)),
        ERROR,
        ("axes",),
        ("--axes", "yq"),
    ),
    run_on("rgb_into_grey_model", "rgb.npy", npy(np.zeros((32, 32, 3), np.float32)), ERROR, ("channel",)),
    run_on(
        "halo_larger_than_image",
        "tiny.npy",
        npy(np.random.default_rng(3).random((16, 16)).astype(np.float32)),
        OK,
        ("halo", "larger than the image"),
    ),
    run_on("one_pixel_image", "one.npy", npy(np.ones((1, 1), np.float32)), OK),
    run_on("bool_image", "bool.npy", npy(np.eye(32, dtype=bool)), OK),
    run_on("int64_image", "int64.npy", npy(np.arange(32 * 32, dtype=np.int64).reshape(32, 32)), OK),
    run_on(
        "float16_image", "half.npy", npy(np.random.default_rng(4).random((32, 32)).astype(np.float16)), OK
    ),
    Case(
        "python_complex_array",
        ERROR,
        python=(
            "import numpy as np, deepimagej\n"
            "deepimagej.run('{M}/inputs/pancreatic', np.ones((32, 32), np.complex128))\n"
        ),
        says=("complex",),
    ),
    Case(
        "python_nan_policy_unknown",
        ERROR,
        python=(
            "import numpy as np, deepimagej\n"
            "deepimagej.run('{M}/inputs/pancreatic', np.ones((32, 32), np.float32), nan='median')\n"
        ),
        says=("nan=",),
    ),
    Case(
        "python_nan_zero_warns",
        OK,
        python=(
            "import warnings, numpy as np, deepimagej\n"
            "x = np.ones((32, 32), np.float32); x[3, 4] = np.nan\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    out = deepimagej.run('{M}/inputs/pancreatic', x, nan='zero')\n"
            "assert np.isnan(x[3, 4]), 'the caller array was modified'\n"
            "assert np.all(np.isfinite(out))\n"
            "print([str(w.message) for w in seen])\n"
        ),
        says=("1 NaN/infinite pixel",),
    ),
]
