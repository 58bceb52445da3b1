"""Zip archives from bundles, opened as if hostile: checked before a single byte is extracted.

A bundle's zip (DeepImageJ's ``tensorflow_saved_model_bundle.zip``, a downloaded bundle) may
hold entries that escape the target folder (``../x``, ``/etc/x``), links, or a few kilobytes
that expand to gigabytes. :func:`check_zip` refuses all of these from the archive's directory;
:func:`extract_zip` then extracts into a temporary folder next to the target, counting the
bytes it really writes (a lying header is caught too), and renames it into place only when
complete; on any failure nothing is left behind. :func:`read_member` reads one entry into
memory under the same limits.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deepimagej.errors import BundleError, first_line
from deepimagej.outputs import check_free_space, human_size, make_folder, replace_path, write_error


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may hold.

    Attributes:
        max_entries: number of entries.
        max_total: total uncompressed bytes.
        max_ratio: total uncompressed bytes per byte of archive (beyond ``ratio_floor``).
        ratio_floor: archives expanding to less than this are never refused for their ratio.
    """

    max_entries: int = 10_000
    max_total: int = 8 * 2**30
    max_ratio: float = 100.0
    ratio_floor: int = 64 * 2**20


DEFAULT_LIMITS = ZipLimits()
_CHUNK = 1 << 20


def check_zip(path: str | Path, limits: ZipLimits = DEFAULT_LIMITS) -> list[zipfile.ZipInfo]:
    """Check a zip archive's directory: safe names, no links, sizes within ``limits``.

    Returns:
        The entries (files and folders) in archive order.

    Raises:
        BundleError: not a zip, an entry outside the archive's folder (absolute, ``..``, drive),
            a link or device, an encrypted or duplicated entry, too many entries, or more
            uncompressed bytes than the limits allow (a "zip bomb").
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise BundleError(
            f"{path}: not a valid zip file ({first_line(exc)}); re-create or re-download it"
        ) from None
    if len(infos) > limits.max_entries:
        raise BundleError(
            f"{path}: {len(infos)} entries, more than the {limits.max_entries} a bundle zip may hold"
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = safe_member_name(path, info.filename)
        mode = info.external_attr >> 16
        if info.create_system == 3 and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise BundleError(
                f"{path}: entry '{info.filename}' is {kind}; bundle zips hold only files and folders"
            )
        if info.flag_bits & 0x1:
            raise BundleError(
                f"{path}: entry '{info.filename}' is encrypted; deepimagej opens unencrypted zips only"
            )
        key = name.lower()
        if key in seen:
            raise BundleError(f"{path}: entry '{info.filename}' appears twice; re-create the zip")
        seen.add(key)
        total += info.file_size
    size = path.stat().st_size
    if total > limits.max_total or (total > limits.ratio_floor and total > limits.max_ratio * max(size, 1)):
        raise BundleError(
            f"{path}: would expand to {human_size(total)} from {human_size(size)} (more than {limits.max_ratio:g} times, "
            f"or over {human_size(limits.max_total)}); refused as a zip bomb"
        )
    return infos


def safe_member_name(archive: Path, name: str) -> str:
    """The entry name as a relative POSIX path, or :class:`BundleError` if it could land outside."""
    text = name.replace("\\", "/")
    pure = PurePosixPath(text)
    if (
        not text
        or "\x00" in text
        or pure.is_absolute()
        or ".." in pure.parts
        or (len(text) > 1 and text[1] == ":")  # a Windows drive, C:/x
    ):
        raise BundleError(f"{archive}: entry '{name}' would be extracted outside the bundle folder; refused")
    return str(pure)


def extract_zip(
    path: str | Path, target: str | Path, limits: ZipLimits = DEFAULT_LIMITS, *, replace: bool = False
) -> Path:
    """Extract a checked zip into the folder ``target``, atomically.

    When ``target`` exists (e.g. another process extracted the same archive meanwhile) it is
    kept as it is, unless ``replace``.

    Raises:
        BundleError: the archive fails :func:`check_zip`, an entry holds more bytes than it
            declares, or the archive is damaged. Nothing is left behind on failure.
        OutputError: not enough disk space, no permission.
    """
    path, target = Path(path), Path(target)
    infos = check_zip(path, limits)
    make_folder(target.parent)
    check_free_space(target.parent, sum(i.file_size for i in infos), path.name)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        with zipfile.ZipFile(path) as zf:
            for info in infos:
                dest = work / safe_member_name(path, info.filename)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    _copy_limited(src, out, info.file_size, path, info.filename)
        if target.exists() and replace:
            replace_path(work, target)
        elif not target.exists():
            try:
                os.replace(work, target)
            except OSError as exc:  # another process renamed its copy into place first
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise BundleError(
            f"{path}: damaged zip file ({first_line(exc)}); re-create or re-download it"
        ) from None
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def read_member(path: str | Path, name: str, max_bytes: int, limits: ZipLimits = DEFAULT_LIMITS) -> bytes:
    """Read one entry of a checked zip into memory (at most ``max_bytes``).

    Raises:
        BundleError: the archive fails :func:`check_zip`, the entry is missing, or it is larger
            than ``max_bytes``.
    """
    path = Path(path)
    infos = {i.filename: i for i in check_zip(path, limits)}
    info = infos.get(name)
    if info is None:
        raise BundleError(f"{path}: no entry '{name}'")
    if info.file_size > max_bytes:
        raise BundleError(
            f"{path}: entry '{name}' is {human_size(info.file_size)}, more than the {human_size(max_bytes)} allowed"
        )
    try:
        with zipfile.ZipFile(path) as zf, zf.open(info) as src:
            data = src.read(max_bytes + 1)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, OSError) as exc:
        raise BundleError(
            f"{path}: damaged zip file ({first_line(exc)}); re-create or re-download it"
        ) from None
    if len(data) > max_bytes or len(data) != info.file_size:
        raise BundleError(
            f"{path}: entry '{name}' does not hold the {info.file_size} bytes it declares; damaged zip"
        )
    return data


def _copy_limited(src, out, declared: int, archive: Path, name: str) -> None:
    written = 0
    while True:
        block = src.read(_CHUNK)
        if not block:
            break
        written += len(block)
        if written > declared:
            raise BundleError(
                f"{archive}: entry '{name}' holds more bytes than it declares ({declared}); damaged zip"
            )
        out.write(block)
