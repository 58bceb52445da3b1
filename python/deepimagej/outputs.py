"""Where results go: checked before a run, written atomically, never over an input.

Every file deepimagej writes (images, descriptors, bundles' files) goes through
:func:`atomic_file`: the data is written to a hidden temporary file in the target folder,
which replaces the target only when complete, so a crash, a full disk or Ctrl-C never leaves
a half-written result under the real name nor destroys the previous one. :func:`check_output_path`
runs before the (possibly long) computation, so that a result that cannot be written is
refused in a second rather than after an hour, and an output that is one of the inputs is
refused outright.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from deepimagej.errors import OutputError

#: Image formats chosen by the output's extension.
IMAGE_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".png": "png", ".npy": "npy"}
#: Formats users may type that deepimagej does not write yet, with what to do instead.
NOT_YET = {
    ".ome.zarr": "an OME-Zarr store is written by a streamed run, not as one image",
    ".zarr": "a zarr store is written by a streamed run, not as one image",
}  # longest suffix first
#: Free space kept in reserve on the target file system beyond the file itself.
SPACE_MARGIN = 16 * 2**20
#: Longest name the temporary file borrows from the target's name (it adds about 14 characters).
_TMP_STEM = 64


def image_format(path: str | Path) -> str:
    """The image format written for ``path``, from its extension: ``tiff``, ``png`` or ``npy``.

    Raises:
        OutputError: an extension deepimagej does not write (one line with the supported ones).
    """
    path = Path(path)
    name = path.name.lower()
    for suffix, why in NOT_YET.items():
        if name.endswith(suffix):
            raise OutputError(
                f"{path}: {why} (deepimagej run ... -o {path.name}, or predict(..., out=...)); "
                "or write .tif (ImageJ TIFF) or .npy"
            )
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        shown = path.suffix or "no extension"
        raise OutputError(
            f"{path}: cannot write an image as '{shown}'; use .tif/.tiff (ImageJ TIFF), .png (2D 8/16-bit) or .npy"
        )
    return fmt


def check_output_path(path: str | Path, *, inputs: Iterable[str | Path] = (), image: bool = True) -> Path:
    """Refuse, before any work, an output that cannot be written or would destroy an input.

    Args:
        path: the output file.
        inputs: files the run reads (the image, the bundle's files); a folder stands for every
            file in it. The output may not be one of them (also through links or ``..``).
        image: check that the extension is an image format deepimagej writes.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: one line naming the path and what to do.
    """
    path = Path(path).expanduser()
    if image:
        image_format(path)
    _check_name_length(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name, e.g. {path / 'result.tif'}")
    resolved = path.resolve()
    for item in inputs:
        item = Path(item).expanduser()
        if _same_file(path, item) or (item.is_dir() and path.exists() and _inside(resolved, item.resolve())):
            raise OutputError(
                f"{path}: is an input of this run ({item}); choose another output name (inputs are never overwritten)"
            )
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is a file, not a folder; choose another output folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write in {folder} (no permission); choose another output folder")
    return path


def check_replaceable_folder(
    folder: str | Path, *, inputs: Iterable[str | Path] = (), markers: Iterable[str] = ()
) -> None:
    """Refuse to replace ``folder`` (an output folder about to be deleted and rewritten) when that would lose data.

    Args:
        folder: the output folder; may not exist.
        inputs: files the command reads: none may be inside ``folder`` (nor ``folder`` inside one).
        markers: names of which at least one must be in a non-empty ``folder`` for it to count as a
            result of this command (e.g. ``rdf.yaml``, ``config.xml`` for a bundle); other folders
            are the user's and are never replaced.

    Raises:
        OutputError: one line naming the folder and what to do.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        return
    if not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder; choose another output folder")
    resolved = folder.resolve()
    for item in inputs:
        item_path = Path(item).expanduser().resolve()
        if _inside(item_path, resolved) or _inside(resolved, item_path):
            raise OutputError(
                f"{folder}: holds an input of this command ({item}); choose another output folder (inputs are never deleted)"
            )
    if Path.cwd().resolve() == resolved or resolved in Path.cwd().resolve().parents:
        raise OutputError(f"{folder}: is the current folder (or holds it); choose another output folder")
    names = set(markers)
    if names and any(folder.iterdir()) and not any((folder / n).exists() for n in names):
        raise OutputError(
            f"{folder}: is not empty and not a previous result ({' or '.join(sorted(names))} missing); "
            "choose a new or empty output folder"
        )


def check_free_space(folder: str | Path, nbytes: int, name: str = "") -> None:
    """Refuse a write of ``nbytes`` into ``folder`` when its file system has not that much free (+ margin)."""
    folder = _existing_ancestor(Path(folder))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: the write itself will tell
    if nbytes + SPACE_MARGIN > free:
        what = f"{name} " if name else ""
        raise OutputError(
            f"{folder}: not enough free disk space to write {what}({human_size(nbytes)} needed, {human_size(free)} free); "
            "free some space or choose another output folder"
        )


@contextmanager
def atomic_file(path: str | Path, *, size_hint: int = 0) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path next to ``path``, rename it at the end.

    On any failure (exception, Ctrl-C, SystemExit) the temporary file is removed and ``path``
    is left as it was. OS errors while writing become one-line :class:`OutputError` s.

    Args:
        path: the final file.
        size_hint: bytes about to be written; refused up front when the disk lacks the space.
    """
    path = Path(path)
    make_folder(path.parent, for_file=path)
    if size_hint:
        check_free_space(path.parent, size_hint, path.name)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:_TMP_STEM]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the user's usual mode
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def replace_path(source: str | Path, target: str | Path) -> None:
    """Move a finished result (a folder or file written next to ``target``) onto ``target``.

    An older ``target`` is first renamed aside and deleted only once ``source`` is in place: at
    every moment ``target`` is either the old result or the new one, never missing nor mixed.
    ``source`` must be on the same file system (write it in ``target``'s folder).

    Raises:
        OSError: the rename failed (the old ``target`` is back in place).
    """
    source, target = Path(source), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.replace(source, target)
        return
    trash = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, trash)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(trash, target)
        raise
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)


def make_folder(folder: str | Path, *, for_file: Path | None = None) -> None:
    """Create ``folder`` (and parents); failures become one-line :class:`OutputError` s."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(
            f"{for_file or folder}: {folder} is a file, not a folder; choose another output folder"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            blocker = _existing_ancestor(folder)
            raise OutputError(
                f"{for_file or folder}: {blocker} is a file, not a folder; choose another output folder"
            ) from None
        raise write_error(for_file or folder, exc) from None


def write_error(path: str | Path, exc: OSError) -> OutputError:
    """A one-line :class:`OutputError` for an OS error met while writing ``path``."""
    path = Path(path)
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        why = f"the disk is full in {path.parent}; free some space or choose another output folder"
    elif code == errno.EFBIG:
        why = "the file is larger than this file system or process allows (file size limit)"
    elif code == errno.EROFS:
        why = f"{path.parent} is on a read-only file system; choose another output folder"
    elif code in (errno.EACCES, errno.EPERM):
        why = f"no permission to write in {path.parent}; choose another output folder"
    elif code == errno.ENAMETOOLONG:
        why = "the file name is too long for this file system; choose a shorter name"
    elif code == errno.ENOTDIR:
        why = f"{_existing_ancestor(path.parent)} is a file, not a folder; choose another output folder"
    elif code == errno.EISDIR:
        why = "is a folder; give a file name"
    else:  # e.g. numpy's "414720 requested and 65448 written" (no errno) on a full disk
        reason = (exc.strerror or str(exc) or type(exc).__name__).strip().splitlines()[0]
        free = _free_text(path.parent)
        why = f"could not be written ({reason}){free}"
    return OutputError(f"{path}: {why}")


# --------------------------------------------------------------------------- helpers


def _check_name_length(path: Path) -> None:
    folder = _existing_ancestor(path.parent)
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
        path_max = os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # Windows has no pathconf
        name_max, path_max = 255, 4096
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise OutputError(
                f"{part[:40]}...: name of {len(os.fsencode(part))} bytes, longer than this file system allows "
                f"({name_max}); choose a shorter name"
            )
    if len(os.fsencode(str(path.absolute()))) >= path_max:
        raise OutputError(
            f"{str(path)[:60]}...: path longer than this system allows ({path_max}); choose a shorter one"
        )


def _existing_ancestor(folder: Path) -> Path:
    """The deepest existing ancestor of ``folder`` (itself when it exists), resolved."""
    folder = Path(folder).absolute()
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.resolve()
    return Path(folder.anchor)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def human_size(nbytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def _free_text(folder: Path) -> str:
    try:
        return f"; {human_size(shutil.disk_usage(_existing_ancestor(folder)).free)} free in {folder}"
    except OSError:
        return ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
